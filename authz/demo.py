"""Demo data for ``AUTHZ_DEMO=1``: fictitious institutions only, created once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.registry import service as registry
from authz.registry.models import Institution

# Codes are made up in the 10-digit shape of Japan's institution codes; no real institution.
DEMO_INSTITUTIONS = (
    registry.InstitutionSpec("デモ総合病院 (Demo General Hospital)", "hospital", "1399999901",
                             emergency=True),
    registry.InstitutionSpec("デモ内科クリニック (Demo Clinic)", "clinic", "1399999902"),
    registry.InstitutionSpec("デモ薬局 (Demo Pharmacy)", "pharmacy", "1349999903"),
    registry.InstitutionSpec("デモ診療記録サーバ (Demo Record Server)", "resource_server",
                             "DEMO-RS-1"),
)


def seed(session: Session) -> list[str]:
    """Register the demo institutions that are missing; return the codes added."""
    have = set(session.execute(select(Institution.code)).scalars())
    session.rollback()
    added = []
    for spec in DEMO_INSTITUTIONS:
        if spec.code not in have:
            registry.add_institution(session, spec, actor="system:demo")
            added.append(spec.code)
    return added
