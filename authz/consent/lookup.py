"""The consent state of a decision: one indexed lookup, never consent rows in the enforcer.

For one (patient, institution) pair the lookup reads the patient's active consents naming that
institution plus their deny directives naming every institution (index
``ix_consents_patient_institution``), sent straight to the driver: the ORM would cost more
than the whole decision. Periods are checked here against the server's clock at decision time,
never turned into cache lifetimes. The pairwise subject an institution sends is resolved here
too, by primary key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from authz.consent.models import ACTIVE
from authz.consent.models import DENY
from authz.consent.service import ANY_PURPOSE
from authz.consent.service import BIT
from authz.database import SQL
from authz.database import driver
from authz.database import reader

NONE: tuple[str, tuple[str, ...]] = ("none", ())


@dataclass(frozen=True)
class States:
    """Per category: ``permit``, ``deny`` or ``none``, with the consents that decided it."""

    by_category: dict[str, tuple[str, tuple[str, ...]]]
    expired: frozenset[str]  # categories only an expired consent named (for the reason text)

    def of(self, category: str) -> tuple[str, tuple[str, ...]]:
        return self.by_category.get(category, NONE)


# Straight to the driver: on this hot path SQLAlchemy's per-execution bookkeeping costs ten
# times the SQLite lookup itself (measured: ~90 us against ~7 us).
_LOOKUP = SQL('SELECT id, decision, purpose, category_mask, start, "end" FROM consents'
              " WHERE patient_id = ? AND (institution_id = ? OR institution_id IS NULL)"
              " AND status = ?")
_PAIRWISE = SQL("SELECT account_id FROM pairwise_subjects WHERE institution_id = ? AND sub = ?")


def _rows(session: Session, patient_id: str, institution_id: str,
          now: datetime) -> tuple[list[Any], Any]:
    """The candidate rows and ``now`` in the form their times come back in (SQLite: the text
    SQLAlchemy stores, whose order as text is the time order)."""
    db = driver(session)
    rows = db.execute(_LOOKUP, (patient_id, institution_id, ACTIVE)).fetchall()
    return rows, db.time_param(now)


def account_of(session: Session, institution_id: str, sub: str) -> str | None:
    """The account that an institution's pairwise ``sub`` names, or None (one primary-key
    lookup, read on every call: no cache). On SQLite it opens no read transaction on the
    session (:func:`authz.database.reader`)."""
    with reader(session) as db:
        row = db.execute(_PAIRWISE, (institution_id, sub)).fetchone()
    return None if row is None else str(row[0])


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
