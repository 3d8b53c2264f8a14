"""Every module that registers periodic jobs; import this to see them all (``authz jobs``)."""

from __future__ import annotations

import authz.jobs.audit  # noqa: F401 - audit.seal
import authz.jobs.builtin  # noqa: F401 - keys.retire
import authz.oauth.purge  # noqa: F401 - oauth.purge_tokens
import authz.oauth.replay  # noqa: F401 - oauth.purge_replay
