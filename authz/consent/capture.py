"""Consent captured on the authorization page (the card-reader consent of the programme).

The page shows each requested ``health_record_access`` detail item by item; categories that no
registered role of the requesting institution may see for the purpose are refused up front and
shown as such. Approving records one consent per detail (the ticked, grantable categories),
in the same transaction as the grant, and only after a fresh card login.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from authz.consent import service
from authz.policy import grantable
from authz.policy import store
from authz.registry.models import Institution

FRESH_LOGIN = timedelta(minutes=10)


def refused_by_rules(session: Session, institution_id: str,
                     details: list[dict[str, Any]]) -> list[set[str]]:
    """Per detail, the categories the rules would never let this institution see."""
    institution = session.get(Institution, institution_id)
    if institution is None:
        return [set(d["categories"]) for d in details]
    policy = store.current(session)
    return [set(grantable.refused(policy, institution, d["purpose"], d["categories"]))
            for d in details]


def needs_fresh_login(details: list[dict[str, Any]], auth_time: datetime,
                      now: datetime) -> bool:
    return bool(details) and now - auth_time > FRESH_LOGIN


def record(session: Session, *, account_id: str, institution_id: str,
           granted: list[dict[str, Any]], acr: str | None, auth_time: datetime | None,
           client_id: str, grant_id: str, pairwise: str, now: datetime,
           request_id: str | None) -> list[str]:
    """One consent per approved detail; returns their ids (inside the caller's transaction)."""
    ids = []
    for detail in granted:
        end = detail.get("period", {}).get("end")
        consent = service.grant(
            session, patient_id=account_id, institution_id=institution_id,
            purpose=detail["purpose"], categories=list(detail["categories"]),
            end=service.parse_time(end, "period.end") if end else None,
            capture=service.Capture(
                method="card_consent_page", acr=acr, auth_time=auth_time,
                provenance={"source": "consent_page", "client": client_id, "grant": grant_id,
                            "request_id": request_id or "-"}),
            now=now, request_id=request_id, pairwise=pairwise)
        ids.append(consent.id)
    return ids
