"""The consent state of a decision: one indexed lookup, never consent rows in the enforcer.

For one (patient, institution) pair the lookup reads the patient's active consents naming that
institution plus their deny directives naming every institution (index
``ix_consents_patient_institution``), through a table-level statement: the ORM would cost more
than the whole decision. Periods are checked here against the server's clock at decision time,
never turned into cache lifetimes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.consent.models import ACTIVE
from authz.consent.models import DENY
from authz.consent.models import Consent
from authz.consent.service import ANY_PURPOSE
from authz.consent.service import BIT

CONSENTS = cast(Table, Consent.__table__)
LOOKUP = select(CONSENTS.c.id, CONSENTS.c.decision, CONSENTS.c.purpose,
                CONSENTS.c.category_mask, CONSENTS.c.start, CONSENTS.c.end).where(
    CONSENTS.c.patient_id == bindparam("patient"),
    or_(CONSENTS.c.institution_id == bindparam("institution"),
        CONSENTS.c.institution_id.is_(None)),
    CONSENTS.c.status == ACTIVE)
NONE: tuple[str, tuple[str, ...]] = ("none", ())


@dataclass(frozen=True)
class States:
    """Per category: ``permit``, ``deny`` or ``none``, with the consents that decided it."""

    by_category: dict[str, tuple[str, tuple[str, ...]]]
    expired: frozenset[str]  # categories only an expired consent named (for the reason text)

    def of(self, category: str) -> tuple[str, tuple[str, ...]]:
        return self.by_category.get(category, NONE)


# The same statement straight to the driver: on this hot path SQLAlchemy's per-execution
# bookkeeping costs ten times the SQLite lookup itself (measured: ~90 us against ~7 us).
_SQL = ('SELECT id, decision, purpose, category_mask, start, "end" FROM consents'
        ' WHERE patient_id = {p} AND (institution_id = {p} OR institution_id IS NULL)'
        ' AND status = {p}')
_SQLITE = _SQL.format(p="?")
_POSTGRES = _SQL.format(p="%s")
# How SQLAlchemy stores a DateTime in SQLite (naive UTC text, always with microseconds):
# compared as text, in the same format, the order is the time order.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _rows(session: Session, patient_id: str, institution_id: str,
          now: datetime) -> tuple[list[Any], Any]:
    """The candidate rows and ``now`` in the form their times come back in."""
    connection = session.connection()
    name = connection.dialect.name
    raw = connection.connection.driver_connection
    params = (patient_id, institution_id, ACTIVE)
    if name == "sqlite" and raw is not None:
        moment = now.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TIME)
        return raw.execute(_SQLITE, params).fetchall(), moment
    if name == "postgresql" and raw is not None:
        with raw.cursor() as cursor:
            cursor.execute(_POSTGRES, params)
            return list(cursor.fetchall()), now
    result = session.execute(LOOKUP, {"patient": patient_id, "institution": institution_id})
    return [tuple(row) for row in result], now


def states(session: Session, *, patient_id: str, institution_id: str, purpose: str,
           categories: Iterable[str], now: datetime) -> States:
    rows, now = _rows(session, patient_id, institution_id, now)
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    expired: set[str] = set()
    for category in categories:
        bit = BIT[category]
        denies, permits = [], []
        for consent_id, decision, row_purpose, category_mask, start, end in rows:
            if not category_mask & bit or start > now:
                continue
            live = end is None or end > now
            if decision == DENY:
                if live and row_purpose in (purpose, ANY_PURPOSE):
                    denies.append(consent_id)
            elif row_purpose == purpose:
                if live:
                    permits.append(consent_id)
                else:
                    expired.add(category)
        if denies:
            found[category] = ("deny", tuple(sorted(denies)))
        elif permits:
            found[category] = ("permit", tuple(sorted(permits)))
    return States(found, frozenset(expired))


def details_hold(session: Session, *, patient_id: str, details: Iterable[dict[str, Any]],
                 now: datetime) -> bool:
    """Whether every ``health_record_access`` detail of a token is still fully consented.

    Introspection calls this for tokens that carry details: once the patient revokes, narrows
    or lets a consent lapse (or denies a category), the token stops being active at once.
    """
    for detail in details:
        raw = detail.get("categories")
        categories = [str(c) for c in raw if str(c) in BIT] if isinstance(raw, list) else []
        found = states(session, patient_id=patient_id,
                       institution_id=str(detail.get("institution", "")),
                       purpose=str(detail.get("purpose", "")), categories=categories, now=now)
        if not categories or any(found.of(c)[0] != "permit" for c in categories):
            return False
    return True
