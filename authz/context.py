"""Per-request facts that domain code and logs may read without importing Flask."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

request_id_var: ContextVar[str | None] = ContextVar("authz_request_id", default=None)


@dataclass(frozen=True)
class RequestContext:
    """Built by the HTTP layer (``authz.api.context``) and handed to services."""

    request_id: str
    remote_addr: str | None = None
    user_agent: str | None = None
