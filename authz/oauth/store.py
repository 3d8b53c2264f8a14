"""Grant-wide operations shared by the token endpoint, revocation and (later) consent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from authz import audit
from authz.oauth.models import AccessToken
from authz.oauth.models import Grant
from authz.oauth.models import RefreshToken


def revoke_grant(session: Session, grant: Grant, reason: str, now: datetime) -> None:
    """Revoke a grant and every token it issued; one audit event (inside the caller's write)."""
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_reason = now, reason
    session.execute(update(RefreshToken).where(RefreshToken.grant_id == grant.id,
                                               RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    session.execute(update(AccessToken).where(AccessToken.grant_id == grant.id,
                                              AccessToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    session.flush()
    audit.record(session, audit.Event(
        type="oauth.grant_revoked", actor="system:oauth", outcome="success", reason=reason,
        client=grant.client_id, patient=grant.account_id, detail={"grant": grant.id}))
