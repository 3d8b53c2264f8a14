"""The patient API: my consents, my institutions, my receipts (DESIGN section 8).

A ``consents``-scoped token of the patient's own app. Granting or extending needs a card login
within the last ten minutes (the token's ``auth_time``); narrowing and revoking do not, so a
patient can always withdraw. Another patient's consent is "not found".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from sqlalchemy import select

from authz.api.auth import Caller
from authz.api.auth import require_token
from authz.api.bodies import json_object
from authz.api.context import request_id
from authz.consent import fhir
from authz.consent import receipts
from authz.consent import service
from authz.consent.models import DENY
from authz.consent.models import PERMIT
from authz.consent.models import Consent
from authz.database import utcnow
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.errors import PermissionDenied
from authz.extensions import db
from authz.identity.crypto import IdentityKeys
from authz.oauth.models import Grant
from authz.policy import grantable
from authz.policy import store
from authz.registry.models import Client
from authz.registry.models import Institution

bp = Blueprint("me", __name__)
RECENT_LOGIN = timedelta(minutes=10)
MAX_BODY = 16 * 1024
GRANT_FIELDS = frozenset({"institution", "purpose", "categories", "end", "decision"})


class LoginRequired(PermissionDenied):
    code = "login_required"
    description = "Log in with your card again: this change needs a login within 10 minutes."


def _patient() -> Caller:
    caller = require_token("consents")
    if caller.account_id is None:
        raise PermissionDenied("This call needs a patient's own token.")
    return caller


def _recent_login(caller: Caller, now: datetime) -> None:
    auth_time = caller.claims.get("auth_time")
    if not isinstance(auth_time, int) or now.timestamp() - auth_time > \
            RECENT_LOGIN.total_seconds():
        raise LoginRequired()


def _body(allowed: frozenset[str]) -> dict[str, Any]:
    body = json_object(MAX_BODY)
    unknown = set(body) - allowed
    if unknown:
        raise InvalidInput("unknown member: " + ", ".join(sorted(str(u)[:40] for u in unknown)))
    return body


def consent_view(consent: Consent, institution: Institution | None,
                 now: datetime) -> dict[str, Any]:
    """The DESIGN section 8 shape of one consent."""
    return {
        "id": consent.id,
        "institution": {"id": institution.id, "name": institution.name,
                        "type": institution.type} if institution else None,
        "decision": consent.decision, "purpose": consent.purpose,
        "categories": list(consent.categories), "status": service.status_at(consent, now),
        "start": _stamp(consent.start), "end": _stamp(consent.end) if consent.end else None,
        "version": consent.version, "method": consent.method,
    }


@bp.get("/v1/me/consents")
def list_consents() -> Response:
    caller = _patient()
    session = db.session()
    now = utcnow()
    consents = service.patient_consents(session, str(caller.account_id))
    institutions = _institutions(session, {c.institution_id for c in consents})
    return jsonify({"consents": [consent_view(c, institutions.get(c.institution_id or ""), now)
                                 for c in consents]})


@bp.post("/v1/me/consents")
def grant_consent() -> tuple[Response, int]:
    caller = _patient()
    session = db.session()
    now = utcnow()
    _recent_login(caller, now)
    body = _body(GRANT_FIELDS)
    decision = body.get("decision", PERMIT)
    institution_id = body.get("institution")
    if institution_id is not None and not isinstance(institution_id, str):
        raise InvalidInput("institution must be an institution id")
    purpose = body.get("purpose", service.ANY_PURPOSE if decision == DENY else None)
    if not isinstance(purpose, str):
        raise InvalidInput("purpose is required")
    categories = service.check_categories(body.get("categories"))
    end = service.parse_time(body["end"], "end") if body.get("end") is not None else None
    if decision == PERMIT and isinstance(institution_id, str):
        institution = session.get(Institution, institution_id)
        if institution is not None and purpose in service.CONSENTABLE:
            refused = grantable.refused(store.current(session), institution, purpose,
                                        categories)
            if refused:
                raise InvalidInput("no role of this institution may see these categories for "
                                   "this purpose: " + ", ".join(refused), not_grantable=refused)
    consent = service.grant(
        session, patient_id=str(caller.account_id), institution_id=institution_id,
        purpose=purpose, categories=categories, end=end, decision=decision,
        capture=service.Capture(
            method="card_patient_api", acr=_str(caller.claims.get("acr")),
            auth_time=_time(caller.claims.get("auth_time")),
            provenance={"source": "patient_api", "client": caller.client_id,
                        "request_id": request_id()}),
        now=now, request_id=request_id(),
        pairwise=_pairwise(str(caller.account_id), institution_id))
    return jsonify(consent_view(consent, _grantee(session, consent), now)), 201


def _pairwise(account_id: str, institution_id: str | None) -> str | None:
    if institution_id is None:
        return None
    keys = IdentityKeys.from_kek(current_app.config["AUTHZ_KEK_BYTES"])
    return keys.pairwise_sub(account_id, institution_id)


@bp.get("/v1/me/consents/<consent_id>")
def show_consent(consent_id: str) -> Response:
    caller = _patient()
    session = db.session()
    consent = _own(session, caller, consent_id)
    body = consent_view(consent, _grantee(session, consent), utcnow())
    body["versions"] = [{"version": v.version, "change": v.change,
                         "recorded_at": _stamp(v.created_at)}
                        for v in service.versions(session, consent.id)]
    return jsonify(body)


@bp.post("/v1/me/consents/<consent_id>/revoke")
def revoke_consent(consent_id: str) -> Response:
    caller = _patient()
    session = db.session()
    now = utcnow()
    consent = service.revoke(session, consent_id, patient_id=str(caller.account_id), now=now,
                             request_id=request_id())
    return _view(session, consent, now)


@bp.post("/v1/me/consents/<consent_id>/narrow")
def narrow_consent(consent_id: str) -> Response:
    caller = _patient()
    session = db.session()
    now = utcnow()
    body = _body(frozenset({"categories"}))
    consent = service.narrow(session, consent_id, patient_id=str(caller.account_id),
                             categories=body.get("categories"),  # type: ignore[arg-type]
                             now=now, request_id=request_id())
    return _view(session, consent, now)


@bp.post("/v1/me/consents/<consent_id>/extend")
def extend_consent(consent_id: str) -> Response:
    caller = _patient()
    session = db.session()
    now = utcnow()
    _recent_login(caller, now)
    body = _body(frozenset({"end"}))
    end = service.parse_time(body.get("end"), "end")
    consent = service.extend(session, consent_id, patient_id=str(caller.account_id), end=end,
                             now=now, request_id=request_id())
    return _view(session, consent, now)


@bp.get("/v1/me/consents/<consent_id>/receipt")
def consent_receipt(consent_id: str) -> Response:
    """The signed receipt of the current version (``?version=N`` for an earlier one)."""
    caller = _patient()
    session = db.session()
    consent = _own(session, caller, consent_id)
    wanted = request.args.get("version", str(consent.version))
    # isdigit alone admits "²", which int() refuses; ASCII digits only
    if not (wanted.isascii() and wanted.isdigit()) or len(wanted) > 6:
        raise InvalidInput("version must be a whole number")
    found = [v for v in service.versions(session, consent.id) if v.version == int(wanted)]
    if not found:
        raise NotFound("no such version")
    token = receipts.sign(session, current_app.config["AUTHZ_KEK_BYTES"], found[0])
    session.rollback()
    return jsonify({"consent_id": consent.id, "version": found[0].version,
                    "receipt": token, "verify_with": "/jwks/history.json"})


@bp.get("/v1/me/consents/<consent_id>/fhir")
def consent_fhir(consent_id: str) -> Response:
    caller = _patient()
    session = db.session()
    consent = _own(session, caller, consent_id)
    resource = fhir.to_fhir(consent, _grantee(session, consent),
                            issuer=current_app.config["AUTHZ_ISSUER"],
                            status=service.status_at(consent, utcnow()))
    response = jsonify(resource)
    response.mimetype = "application/fhir+json"
    return response


@bp.get("/v1/me/receipts")
def list_receipts() -> Response:
    """A receipt for the current version of every consent."""
    caller = _patient()
    session = db.session()
    kek = current_app.config["AUTHZ_KEK_BYTES"]
    body = []
    for consent in service.patient_consents(session, str(caller.account_id)):
        version = service.versions(session, consent.id)[-1]
        body.append({"consent_id": consent.id, "version": version.version,
                     "receipt": receipts.sign(session, kek, version)})
    session.rollback()
    return jsonify({"receipts": body, "verify_with": "/jwks/history.json"})


@bp.get("/v1/me/institutions")
def my_institutions() -> Response:
    """Institutions holding my consents or tokens I approved, with what they hold."""
    caller = _patient()
    session = db.session()
    now = utcnow()
    consents = service.patient_consents(session, str(caller.account_id))
    apps = session.execute(
        select(Client.institution_id, Client.client_id, Client.name)
        .join(Grant, Grant.client_id == Client.client_id)
        .where(Grant.account_id == caller.account_id, Grant.revoked_at.is_(None))).all()
    ids = {c.institution_id for c in consents if c.institution_id} | {a[0] for a in apps}
    institutions = _institutions(session, ids)
    body = []
    for institution_id in sorted(ids):
        institution = institutions[institution_id]
        mine = [c for c in consents if c.institution_id == institution_id]
        body.append({
            "id": institution.id, "name": institution.name, "type": institution.type,
            "active_consents": sum(service.status_at(c, now) == "active" for c in mine),
            "consents": [c.id for c in mine],
            "apps": sorted({name for inst, _, name in apps if inst == institution_id})})
    return jsonify({"institutions": body})


def _own(session: Any, caller: Caller, consent_id: str) -> Consent:
    consent = session.get(Consent, consent_id)
    if consent is None or consent.patient_id != caller.account_id:
        raise NotFound("no such consent")
    return consent  # type: ignore[no-any-return]


def _view(session: Any, consent: Consent, now: datetime) -> Response:
    return jsonify(consent_view(consent, _grantee(session, consent), now))


def _grantee(session: Any, consent: Consent) -> Institution | None:
    """The consent's institution (None for a deny directive naming every institution)."""
    return session.get(Institution, consent.institution_id) if consent.institution_id else None


def _institutions(session: Any, ids: Iterable[str | None]) -> dict[str, Institution]:
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    rows = session.execute(select(Institution).where(Institution.id.in_(wanted))).scalars()
    return {row.id: row for row in rows}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    from datetime import UTC
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None
