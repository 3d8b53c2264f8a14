"""Server-side login sessions: the cookie holds a random token, the database its hash.

A fresh token at every login prevents session fixation; a patient can list their sessions
and end any of them; idle and absolute limits end the rest.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from authz import audit
from authz.database import utcnow
from authz.database import write
from authz.errors import NotFound
from authz.identity.models import LoginSession

ABSOLUTE = timedelta(hours=8)
IDLE = timedelta(minutes=30)
TOUCH_EVERY = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, *, account_id: str, acr: str, amr: list[str], auth_time: datetime,
          user_agent: str | None, request_id: str | None = None,
          now: datetime | None = None) -> tuple[str, LoginSession]:
    """Create a login session; returns the cookie token (shown once) and the row."""
    moment = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = LoginSession(id=f"ses_{secrets.token_hex(8)}", token_hash=_hash(token),
                       account_id=account_id, acr=acr, amr=amr, auth_time=auth_time,
                       created_at=moment, last_seen_at=moment, expires_at=moment + ABSOLUTE,
                       user_agent=(user_agent or "")[:200] or None)
    with write(session):
        session.add(row)
        session.flush()
        audit.record(session, audit.Event(
            type="identity.session_started", actor=f"patient:{account_id}", patient=account_id,
            request_id=request_id, detail={"session": row.id, "acr": acr}), now=moment)
    return token, row


def current(session: Session, token: str | None,
            now: datetime | None = None) -> LoginSession | None:
    """The live session for a cookie token, touched at most once a minute; None if ended."""
    if not token:
        return None
    moment = now or utcnow()
    row = session.execute(
        select(LoginSession).where(LoginSession.token_hash == _hash(token))
    ).scalar_one_or_none()
    if row is None or row.ended_at is not None or moment >= row.expires_at \
            or moment >= row.last_seen_at + IDLE:
        return None
    if moment >= row.last_seen_at + TOUCH_EVERY:
        row_id = row.id
        with write(session):  # a write needs the write lock from its start (authz.database)
            session.execute(update(LoginSession).where(LoginSession.id == row_id)
                            .values(last_seen_at=moment))
        row = session.get(LoginSession, row_id) or row
    return row


def end(session: Session, account_id: str, session_id: str, *, request_id: str | None = None,
        now: datetime | None = None) -> None:
    """End one of the account's own sessions."""
    moment = now or utcnow()
    with write(session):
        row = session.get(LoginSession, session_id)
        if row is None or row.account_id != account_id:
            raise NotFound("no such session")
        if row.ended_at is None:
            row.ended_at = moment
            session.flush()
            audit.record(session, audit.Event(
                type="identity.session_ended", actor=f"patient:{account_id}",
                patient=account_id, request_id=request_id, detail={"session": session_id}),
                now=moment)


def active(session: Session, account_id: str,
           now: datetime | None = None) -> list[LoginSession]:
    moment = now or utcnow()
    rows = session.execute(
        select(LoginSession).where(LoginSession.account_id == account_id,
                                   LoginSession.ended_at.is_(None),
                                   LoginSession.expires_at > moment)
        .order_by(LoginSession.created_at.desc())).scalars()
    return [r for r in rows if moment < r.last_seen_at + IDLE]
