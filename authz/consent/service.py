"""The consent lifecycle: grant, narrow, extend, revoke; every change a new version.

Each change runs in one write transaction with its audit event and a compare-and-set on the
version, so two concurrent changes cannot both win and a revoke is durable (and visible to every
decision on every instance) before the call returns. Only the patient changes their consents:
the caller passes the authenticated patient's account id and another patient's consent is
"not found".
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from authz import audit
from authz.audit import canonical
from authz.consent.models import ACTIVE
from authz.consent.models import DENY
from authz.consent.models import EXPIRED
from authz.consent.models import PERMIT
from authz.consent.models import REVOKED
from authz.consent.models import Consent
from authz.consent.models import ConsentVersion
from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.database import write
from authz.errors import Conflict
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.oauth.store import remember_pairwise
from authz.registry.models import Institution

CONSENTS = cast(Table, Consent.__table__)
BIT = {category: 1 << index for index, category in enumerate(CATEGORIES)}
ANY_PURPOSE = "any"  # deny directives only
# Purposes a patient consents to. Emergency and disaster access need no consent; self view is
# the patient's own.
CONSENTABLE = frozenset(PURPOSES) - {"emergency", "disaster", "self_view"}
VISIT_LIFETIME = timedelta(hours=24)  # オン資: card-reader consent is valid for 24 hours
MAX_PERIOD = timedelta(days=3653)
METHODS = frozenset({"card_consent_page", "card_patient_api", "card_portal", "demo"})


def mask(categories: Iterable[str]) -> int:
    value = 0
    for category in categories:
        value |= BIT[category]
    return value


def check_categories(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or len(raw) > len(CATEGORIES):
        raise InvalidInput("categories must be a non-empty list of category codes")
    unknown = [c for c in raw if not isinstance(c, str) or c not in CATEGORIES]
    if unknown:
        raise InvalidInput("unknown category: " + ", ".join(str(c)[:40] for c in unknown[:3]))
    return list(dict.fromkeys(raw))


def parse_time(raw: Any, what: str) -> datetime:
    """An RFC 3339 time with a zone, e.g. ``2027-01-31T00:00:00Z``."""
    if not isinstance(raw, str) or len(raw) > 40:
        raise InvalidInput(f"{what} must be an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{what} must be an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{what} needs a time zone")
    return moment


@dataclass(frozen=True)
class Capture:
    """How a consent was captured: method, the login's assurance, and where it came from."""

    method: str
    acr: str | None
    auth_time: datetime | None
    provenance: Mapping[str, str]


def grant(session: Session, *, patient_id: str, institution_id: str | None, purpose: str,
          categories: list[str], end: datetime | None, capture: Capture, now: datetime,
          decision: str = PERMIT, request_id: str | None = None,
          pairwise: str | None = None) -> Consent:
    """Record a new consent (or, with ``decision=deny``, an explicit deny directive).

    ``pairwise`` is the grantee institution's ``sub`` for the patient: recorded so that the
    institution can name the patient in decision requests.
    """
    if decision not in (PERMIT, DENY):
        raise InvalidInput("decision must be permit or deny")
    categories = check_categories(categories)
    if decision == PERMIT:
        if purpose not in CONSENTABLE:
            raise InvalidInput("purpose must be one of: " + ", ".join(sorted(CONSENTABLE)))
        if institution_id is None:
            raise InvalidInput("a consent names exactly one institution (never a wildcard)")
    elif purpose != ANY_PURPOSE and purpose not in PURPOSES:
        raise InvalidInput("unknown purpose")
    if institution_id is not None:
        institution = session.get(Institution, institution_id)
        if institution is None:
            raise InvalidInput("unknown institution")
        if decision == PERMIT and institution.type == "resource_server":
            raise InvalidInput("a resource server holds records; consent goes to institutions")
    if end is None:
        if decision == PERMIT and purpose != "treatment_visit":
            raise InvalidInput("this purpose needs an explicit end of the period")
        end = now + VISIT_LIFETIME if decision == PERMIT else None
    if end is not None:
        if end <= now:
            raise InvalidInput("the period must end after it starts (now)")
        if end - now > MAX_PERIOD:
            raise InvalidInput("the period may last at most ten years")
    consent = Consent(
        id=f"cns_{secrets.token_hex(10)}", patient_id=patient_id, institution_id=institution_id,
        decision=decision, purpose=purpose, categories=categories, category_mask=mask(categories),
        start=now, end=end, status=ACTIVE, version=1, method=capture.method, acr=capture.acr,
        auth_time=capture.auth_time, provenance=dict(capture.provenance), created_at=now,
        updated_at=now)
    with write(session):
        session.add(consent)
        session.flush()
        if pairwise is not None and institution_id is not None:
            # Idempotent (ON CONFLICT DO NOTHING): a token issued at the same moment may
            # record the same pair.
            remember_pairwise(session, institution_id, pairwise, patient_id, now)
        _version(session, consent, "grant", now, request_id)
    return consent


def revoke(session: Session, consent_id: str, *, patient_id: str, now: datetime,
           request_id: str | None = None) -> Consent:
    with write(session):
        consent = _own(session, consent_id, patient_id)
        if consent.status == REVOKED:
            raise Conflict("this consent is already revoked")
        _change(session, consent, now, status=REVOKED, revoked_at=now)
        _version(session, consent, "revoke", now, request_id)
    return consent


def narrow(session: Session, consent_id: str, *, patient_id: str, categories: list[str],
           now: datetime, request_id: str | None = None) -> Consent:
    """Keep only some of the categories (a strict, non-empty subset)."""
    categories = check_categories(categories)
    with write(session):
        consent = _live(session, consent_id, patient_id, now)
        if not set(categories) < set(consent.categories):
            raise InvalidInput("narrowing keeps a strict subset of the consent's categories")
        kept = [c for c in consent.categories if c in categories]
        _change(session, consent, now, categories=kept, category_mask=mask(kept))
        _version(session, consent, "narrow", now, request_id)
    return consent


def extend(session: Session, consent_id: str, *, patient_id: str, end: datetime,
           now: datetime, request_id: str | None = None) -> Consent:
    with write(session):
        consent = _live(session, consent_id, patient_id, now)
        if consent.end is not None and end <= consent.end:
            raise InvalidInput("an extension must end later than the current period")
        if end - now > MAX_PERIOD:
            raise InvalidInput("the period may last at most ten years")
        _change(session, consent, now, end=end)
        _version(session, consent, "extend", now, request_id)
    return consent


def patient_consents(session: Session, patient_id: str) -> list[Consent]:
    return list(session.execute(
        select(Consent).where(Consent.patient_id == patient_id)
        .order_by(Consent.created_at.desc(), Consent.id)).scalars())


def status_at(consent: Consent, now: datetime) -> str:
    if consent.status == ACTIVE and consent.end is not None and consent.end <= now:
        return EXPIRED
    return consent.status


def snapshot(consent: Consent) -> dict[str, Any]:
    """The canonical record of one version (strings and integers only): receipts sign it."""
    body: dict[str, Any] = {
        "consent_id": consent.id, "version": consent.version, "patient": consent.patient_id,
        "decision": consent.decision, "purpose": consent.purpose,
        "categories": list(consent.categories), "status": consent.status,
        "start": _stamp(consent.start), "method": consent.method,
        "provenance": {k: str(v) for k, v in sorted(consent.provenance.items())},
        "recorded_at": _stamp(consent.updated_at)}
    optional = {"institution": consent.institution_id, "acr": consent.acr,
                "end": _stamp(consent.end) if consent.end else None,
                "auth_time": _stamp(consent.auth_time) if consent.auth_time else None,
                "revoked_at": _stamp(consent.revoked_at) if consent.revoked_at else None}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def versions(session: Session, consent_id: str) -> list[ConsentVersion]:
    return list(session.execute(
        select(ConsentVersion).where(ConsentVersion.consent_id == consent_id)
        .order_by(ConsentVersion.version)).scalars())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _own(session: Session, consent_id: str, patient_id: str) -> Consent:
    consent = session.get(Consent, consent_id) if isinstance(consent_id, str) else None
    if consent is None or consent.patient_id != patient_id:
        raise NotFound("no such consent")  # another patient's consent is not even confirmed
    return consent


def _live(session: Session, consent_id: str, patient_id: str, now: datetime) -> Consent:
    consent = _own(session, consent_id, patient_id)
    if status_at(consent, now) != ACTIVE:
        raise Conflict(f"this consent is {status_at(consent, now)}; grant a new one instead")
    return consent


def _change(session: Session, consent: Consent, now: datetime, **values: Any) -> None:
    """Compare-and-set on the version: a concurrent change makes this one fail cleanly."""
    result = session.execute(
        update(CONSENTS).where(CONSENTS.c.id == consent.id,
                               CONSENTS.c.version == consent.version)
        .values(version=consent.version + 1, updated_at=now, **values))
    if getattr(result, "rowcount", 0) != 1:
        raise Conflict("the consent changed meanwhile; reload and try again")
    session.expire(consent)
    session.refresh(consent)


def _version(session: Session, consent: Consent, change: str, now: datetime,
             request_id: str | None) -> None:
    record = canonical.dumps(snapshot(consent))
    session.add(ConsentVersion(consent_id=consent.id, version=consent.version, change=change,
                               record=record, created_at=now))
    session.flush()
    audit.record(session, audit.Event(
        type=f"consent.{_PAST[change]}", actor=f"patient:{consent.patient_id}",
        patient=consent.patient_id, institution=consent.institution_id,
        request_id=request_id,
        detail={"consent_id": consent.id, "version": consent.version,
                "decision": consent.decision, "purpose": consent.purpose,
                "categories": list(consent.categories)}), now=now)


_PAST = {"grant": "granted", "narrow": "narrowed", "extend": "extended", "revoke": "revoked"}
