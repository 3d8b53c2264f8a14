"""Pushed authorization requests (RFC 9126): store, look up, and retire ``request_uri``s."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from datetime import timedelta

from sqlalchemy.orm import Session

from authz.database import write
from authz.oauth.models import PushedRequest

PREFIX = "urn:ietf:params:oauth:request_uri:"
LIFETIME = timedelta(seconds=300)  # §2.2: short; long enough for a card login in between
MAX_PARAMS = 40
MAX_VALUE = 4096


def _hash(request_uri: str) -> str:
    return hashlib.sha256(request_uri.encode()).hexdigest()


def push(session: Session, client_id: str, params: Iterable[tuple[str, str]],
         now: datetime) -> str:
    """Store the request; return its ``request_uri`` (shown once, stored as a hash)."""
    kept = [[k, v] for k, v in params if k not in ("request_uri", "client_assertion",
                                                  "client_assertion_type")]
    request_uri = PREFIX + secrets.token_urlsafe(32)
    with write(session):
        session.add(PushedRequest(handle_hash=_hash(request_uri), client_id=client_id,
                                  params=kept, expires_at=now + LIFETIME))
    return request_uri


def find(session: Session, request_uri: str, client_id: str,
         now: datetime) -> list[tuple[str, str]] | None:
    """The pushed parameters, if ``request_uri`` is this client's, unexpired and unused."""
    if not request_uri.startswith(PREFIX) or len(request_uri) > 200:
        return None
    row = session.get(PushedRequest, _hash(request_uri))
    if row is None or row.client_id != client_id or row.used_at is not None \
            or row.expires_at <= now:
        return None
    return [(str(k), str(v)) for k, v in row.params]


def retire(session: Session, request_uri: str, now: datetime) -> None:
    """The authorization under this request completed: it can never be used again."""
    row = session.get(PushedRequest, _hash(request_uri))
    if row is not None and row.used_at is None:
        row.used_at = now
        session.flush()
