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
from datetime import datetime
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


def states(session: Session, *, patient_id: str, institution_id: str, purpose: str,
           categories: Iterable[str], now: datetime) -> States:
    rows = session.execute(LOOKUP, {"patient": patient_id, "institution": institution_id}).all()
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    expired: set[str] = set()
    for category in categories:
        bit = BIT[category]
        denies, permits = [], []
        for row in rows:
            if not row.category_mask & bit or row.start > now:
                continue
            live = row.end is None or row.end > now
            if row.decision == DENY:
                if live and row.purpose in (purpose, ANY_PURPOSE):
                    denies.append(row.id)
            elif row.purpose == purpose:
                if live:
                    permits.append(row.id)
                else:
                    expired.add(category)
        if denies:
            found[category] = ("deny", tuple(sorted(denies)))
        elif permits:
            found[category] = ("permit", tuple(sorted(permits)))
    return States(found, frozenset(expired))
