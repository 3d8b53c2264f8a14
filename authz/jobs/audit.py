"""``audit.seal``: a signed Merkle checkpoint over new audit events, every few seconds."""

from __future__ import annotations

from datetime import timedelta

from authz.audit import checkpoints
from authz.jobs.runner import Job
from authz.jobs.runner import JobContext
from authz.jobs.runner import register

SEAL_INTERVAL = timedelta(seconds=5)


def seal(ctx: JobContext) -> int:
    """Seal what was appended since the last checkpoint; return the new tree size (0: none)."""
    made = checkpoints.seal(ctx.session, ctx.settings["AUTHZ_KEK_BYTES"], now=ctx.now,
                            checkpoint_file=ctx.settings["AUTHZ_AUDIT_CHECKPOINT_FILE"])
    return made.tree_size if made else 0


register(Job("audit.seal", SEAL_INTERVAL, seal, lease=timedelta(minutes=2)))
