"""The jobs of the foundation; each capability registers its own beside these."""

from __future__ import annotations

from datetime import timedelta

from authz.jobs.runner import Job
from authz.jobs.runner import JobContext
from authz.jobs.runner import register
from authz.keys import service as keys


def retire_keys(ctx: JobContext) -> int:
    retire_after = timedelta(seconds=int(ctx.settings["AUTHZ_KEY_RETIRE_AFTER"]))
    return keys.retire_due(ctx.session, retire_after, now=ctx.now)


register(Job("keys.retire", timedelta(minutes=5), retire_keys))
