"""Auditors: people the operator registers by their card; only they may hold the ``audit`` scope.

An auditor is known by the person link of their card (the same stable per-service id the
login resolves), so registering works before their first login and survives card renewal.
Every API call checks the table again: disabling an auditor stops their tokens at once.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz import audit
from authz.audit.models import Auditor
from authz.database import utcnow
from authz.database import write
from authz.errors import Conflict
from authz.errors import NotFound
from authz.errors import PermissionDenied
from authz.identity.models import Account

AUDIT_SCOPE = "audit"


def add(session: Session, person_link_id: str, *, actor: str) -> Auditor:
    """Register (or re-enable) the person behind a card as an auditor."""
    with write(session):
        existing = session.execute(select(Auditor).where(
            Auditor.person_link_id == person_link_id)).scalar_one_or_none()
        if existing is not None and existing.status == "enabled":
            raise Conflict(f"this card's holder is already auditor {existing.id}")
        if existing is not None:
            existing.status, existing.disabled_at = "enabled", None
            auditor = existing
        else:
            auditor = Auditor(id=f"aud_{secrets.token_hex(8)}", person_link_id=person_link_id,
                              status="enabled", created_at=utcnow())
            session.add(auditor)
        session.flush()
        audit.record(session, audit.Event(type="audit.auditor_added", actor=actor,
                                          detail={"auditor": auditor.id}))
        return auditor


def listing(session: Session) -> list[Auditor]:
    return list(session.execute(select(Auditor).order_by(Auditor.created_at, Auditor.id))
                .scalars())


def disable(session: Session, auditor_id: str, *, actor: str) -> Auditor:
    with write(session):
        auditor = session.get(Auditor, auditor_id)
        if auditor is None:
            raise NotFound(f"no auditor {auditor_id}")
        if auditor.status != "disabled":
            auditor.status, auditor.disabled_at = "disabled", utcnow()
            session.flush()
            audit.record(session, audit.Event(type="audit.auditor_disabled", actor=actor,
                                              detail={"auditor": auditor.id}))
        return auditor


def of_account(session: Session, account_id: str | None) -> Auditor | None:
    """The enabled auditor this account is, if any."""
    if account_id is None:
        return None
    return session.execute(
        select(Auditor).join(Account, Account.person_link_id == Auditor.person_link_id)
        .where(Account.id == account_id, Auditor.status == "enabled")).scalar_one_or_none()


def require(session: Session, account_id: str | None) -> Auditor:
    """The enabled auditor behind a token, or :class:`PermissionDenied` (fail closed)."""
    auditor = of_account(session, account_id)
    if auditor is None:
        raise PermissionDenied("Only a registered auditor may read the audit log.")
    return auditor


def restrict_scope(session: Session, account_id: str, scope: str) -> str:
    """``scope`` without ``audit`` unless the account is an enabled auditor (RFC 6749 §3.3:
    the server may grant less than asked)."""
    requested = scope.split()
    if AUDIT_SCOPE not in requested or of_account(session, account_id) is not None:
        return scope
    return " ".join(s for s in requested if s != AUDIT_SCOPE)
