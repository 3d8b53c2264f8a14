"""Delete expired OAuth state in batches (hash-only rows; grants and audit stay)."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.database import write
from authz.jobs.runner import Job
from authz.jobs.runner import JobContext
from authz.jobs.runner import register
from authz.oauth.models import AccessToken
from authz.oauth.models import AuthorizationCode
from authz.oauth.models import PushedRequest
from authz.oauth.models import RefreshToken

BATCH = 5000
# A used code is kept a day past its expiry so a late replay is still recognised (and revokes).
CODE_MEMORY = timedelta(days=1)


def _purge(session: Session, table: Any, key: Any, expires: Any, before: datetime,
           batch: int) -> int:
    removed = 0
    while True:
        with write(session):
            keys = session.execute(
                select(key).where(expires < before).limit(batch)).scalars().all()
            if not keys:
                return removed
            # the DELETE re-checks expiry, so nothing renewed meanwhile is lost
            session.execute(delete(table).where(key.in_(keys), expires < before))
        removed += len(keys)


def purge(session: Session, now: datetime, batch: int = BATCH) -> dict[str, int]:
    """Expired codes, access-token records, refresh tokens and pushed requests."""
    return {
        "codes": _purge(session, AuthorizationCode, AuthorizationCode.code_hash,
                        AuthorizationCode.expires_at, now - CODE_MEMORY, batch),
        "access_tokens": _purge(session, AccessToken, AccessToken.jti, AccessToken.expires_at,
                                now, batch),
        "refresh_tokens": _purge(session, RefreshToken, RefreshToken.token_hash,
                                 RefreshToken.expires_at, now, batch),
        "pushed_requests": _purge(session, PushedRequest, PushedRequest.handle_hash,
                                  PushedRequest.expires_at, now, batch),
    }


def _job(ctx: JobContext) -> dict[str, int]:
    return purge(ctx.session, ctx.now)


register(Job("oauth.purge_tokens", timedelta(minutes=10), _job))
