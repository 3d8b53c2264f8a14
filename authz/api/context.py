"""Request id and request context for the HTTP layer."""

from __future__ import annotations

import re
import secrets

from flask import g
from flask import request

from authz.context import RequestContext
from authz.context import request_id_var

# fullmatch, not match: ``$`` would also accept a trailing newline.
_INCOMING_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def assign_request_id() -> None:
    """Reuse a well-formed X-Request-ID from a proxy, otherwise mint one."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _INCOMING_ID.fullmatch(incoming) else secrets.token_hex(12)
    g.request_id = request_id
    g.request_id_token = request_id_var.set(request_id)


def request_id() -> str:
    """This request's id (``-`` outside a request that went through ``assign_request_id``)."""
    return str(g.get("request_id") or "-")


def current() -> RequestContext:
    """The request facts handed to services."""
    return RequestContext(request_id=request_id(), remote_addr=request.remote_addr,
                          user_agent=request.user_agent.string or None)
