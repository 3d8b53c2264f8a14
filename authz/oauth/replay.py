"""A replay store shared by every instance: "have we seen this one-time value before?"

Used for DPoP proof ``jti`` values (RFC 9449 §11.1) and client assertion ``jti`` values
(RFC 7523 §3 item 7). An entry lives until its ``expires_at``, which the caller sets to the end
of the window in which the value would otherwise still be accepted; after that the value is
refused for other reasons (age), so the entry may go. Only a SHA-256 of the caller's key is
stored: no raw ``jti`` values sit in the database.

Atomicity comes from the primary key and one statement, ``INSERT ... ON CONFLICT DO UPDATE
SET expires_at = ... WHERE expires_at <= now RETURNING``: a new key is inserted, an expired
entry is taken over, an unexpired one is left alone and nothing is returned. On PostgreSQL a
concurrent insert of the same key waits for the first one's transaction and then sees its row;
on SQLite writers are serialised by ``BEGIN IMMEDIATE``. Either way exactly one caller wins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import String
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import Session
from sqlalchemy.orm import mapped_column

from authz.database import SQL
from authz.database import Base
from authz.database import UTCDateTime
from authz.database import driver
from authz.database import write
from authz.jobs.runner import Job
from authz.jobs.runner import JobContext
from authz.jobs.runner import register

SCOPE_MAX = 16
PURGE_BATCH = 5000


class ReplayEntry(Base):
    """One remembered value: ``key`` is the SHA-256 hex of the caller's key within ``scope``."""

    __tablename__ = "replay_entries"

    scope: Mapped[str] = mapped_column(String(SCOPE_MAX), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def digest(key: str) -> str:
    """The stored form of a caller's key (SHA-256, hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


# Straight to the driver (authz.database.Driver): on the token endpoint's hot path SQLAlchemy's
# bookkeeping cost several times the statement. Only an expired entry is taken over.
_REMEMBER = SQL(
    'INSERT INTO replay_entries (scope, "key", expires_at) VALUES (?, ?, ?)'
    ' ON CONFLICT (scope, "key") DO UPDATE SET expires_at = excluded.expires_at'
    ' WHERE replay_entries.expires_at <= ? RETURNING scope')


def remember(session: Session, scope: str, key: str, expires_at: datetime,
             now: datetime) -> bool:
    """Record ``key`` in ``scope`` until ``expires_at``: True the first time, False on a replay.

    Joins the caller's write transaction if one is open (the entry then commits or rolls back
    with the caller's work), else commits its own. An ``expires_at`` not after ``now`` still
    finds a replay (an earlier, longer entry) but protects nothing itself.
    """
    if not 0 < len(scope) <= SCOPE_MAX:
        raise ValueError(f"replay scope must be 1 to {SCOPE_MAX} characters")
    with write(session):
        db = driver(session)
        found = db.execute(_REMEMBER, (scope, digest(key), db.time_param(expires_at),
                                       db.time_param(now))).fetchone()
    return found is not None


@dataclass(frozen=True)
class OneTimeValue:
    """A value verified now whose single use is recorded later, by :meth:`claim`.

    The token endpoint and introspection verify a client assertion before they know whether
    the request will succeed, and record its ``jti`` in the one write transaction that also
    commits the request's effect (docs/decisions.md, "Token endpoint and introspection").
    """

    scope: str
    key: str
    expires_at: datetime

    def claim(self, session: Session, now: datetime) -> bool:
        """:func:`remember` this value: True the first time, False on a replay."""
        return remember(session, self.scope, self.key, self.expires_at, now)


def purge(session: Session, now: datetime, batch: int = PURGE_BATCH) -> int:
    """Delete expired entries, ``batch`` rows per transaction; return how many went."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    total = 0
    while True:
        # Short transactions: each batch commits, so writers wait at most one batch.
        expired = (select(ReplayEntry.scope, ReplayEntry.key)
                   .where(ReplayEntry.expires_at <= now).limit(batch))
        with write(session):
            # The outer condition is re-checked on PostgreSQL against a row that remember()
            # took over meanwhile, so a renewed entry is never deleted.
            result = session.execute(delete(ReplayEntry).where(
                tuple_(ReplayEntry.scope, ReplayEntry.key).in_(expired),
                ReplayEntry.expires_at <= now))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < batch:
            return total


def _purge_job(ctx: JobContext) -> int:
    return purge(ctx.session, ctx.now)


register(Job("oauth.purge_replay", timedelta(minutes=10), _purge_job))
