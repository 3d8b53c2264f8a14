"""The patient portal (``/portal``): the page twin of the patient API (``authz.api.me``).

Server-rendered and usable without JavaScript. Every change goes form -> confirmation page
(stating exactly what changes) -> final POST. The confirmation carries the change as one signed
``proposal`` field bound to the account and the CSRF token, so a tampered hidden field is
detected, not applied. Refused changes show a clear page, change nothing and are audited as
``portal.refused`` with identifiers only.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from functools import wraps
from typing import Any
from typing import TypeVar
from typing import cast
from zoneinfo import ZoneInfo

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import flash
from flask import json
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_babel import gettext as _
from itsdangerous import BadSignature
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from authz import audit
from authz.api.context import request_id
from authz.api.me import consent_view
from authz.consent import fhir
from authz.consent import receipts
from authz.consent import service
from authz.consent.capture import FRESH_LOGIN
from authz.consent.models import PERMIT
from authz.consent.models import Consent
from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.consent.vocabulary import SENSITIVE
from authz.database import utcnow
from authz.database import write
from authz.errors import AuthzError
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.extensions import db
from authz.identity import sessions as logins
from authz.identity.crypto import IdentityKeys
from authz.identity.models import LoginSession
from authz.oauth import store as oauth_store
from authz.oauth.models import Grant
from authz.policy import grantable
from authz.policy import store as policy_store
from authz.registry.models import Client
from authz.registry.models import Institution
from authz.web import csrf_token
from authz.web import form_refusal
from authz.web import page_errors
from authz.web import secure_page
from authz.web.i18n import TIMEZONE
from authz.web.pages import current_login

log = logging.getLogger("authz.web.portal")
bp = Blueprint("portal", __name__, url_prefix="/portal")
bp.after_request(secure_page)

PROPOSAL_SALT = "authz.portal.proposal"
PROPOSAL_AGE = 30 * 60  # seconds a confirmation page stays valid
MAX_FIELD = 100
INSTITUTION_TYPES: dict[str, tuple[str, str]] = {
    "hospital": ("病院", "Hospital"), "clinic": ("診療所", "Clinic"),
    "pharmacy": ("薬局", "Pharmacy"), "care_provider": ("介護事業者", "Care provider"),
    "municipality": ("市区町村", "Municipality"), "research": ("研究機関", "Research body"),
    "resource_server": ("記録サーバ", "Record server"),
}
STATUS_TEXT: dict[str, tuple[str, str]] = {
    "active": ("有効", "Active"), "expired": ("期限切れ", "Expired"),
    "revoked": ("撤回済み", "Revoked"),
}
ACTIONS = ("grant", "narrow", "extend", "revoke")
View = TypeVar("View", bound=Callable[..., Any])


class Refused(Exception):
    """A change the portal refuses: shown on a page, audited, nothing changed."""

    def __init__(self, reason: str, message: str, status: int = 400, *,
                 consent_id: str | None = None, login_again: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.message, self.status = reason, message, status
        self.consent_id, self.login_again = consent_id, login_again


def _login() -> LoginSession:
    row = current_login()
    if row is None:
        raise _LoginNeeded()
    return row


class _LoginNeeded(Exception):
    pass


def patient_page(view: View) -> View:
    """Log in first (the card login page, back here afterwards); refusals become pages."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except _LoginNeeded:
            if request.method == "GET":
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            # A form from a login that has ended: nobody to attribute it to, so it is logged
            # (DESIGN 6: unauthenticated noise stays out of the audit log).
            log.info("portal form without a login", extra={"code": "login_required"})
            return _error_page(_("Your login has ended, so nothing was changed. Log in with "
                                 "your card again."), 401, login_again=True)
        except Refused as refused:
            _audit_refusal(refused)
            return _error_page(refused.message, refused.status,
                               login_again=refused.login_again)

    return cast(View, wrapper)


def _error_page(message: str, status: int, *, login_again: bool = False) -> tuple[str, int]:
    login_url = url_for("web.login", next=url_for("portal.index"), fresh="1") \
        if login_again else None
    return render_template("portal/error.html", message=message, login_url=login_url), status


page_errors(bp, _error_page)


def _audit_refusal(refused: Refused) -> None:
    row = current_login()
    if row is None:
        return
    session = db.session()
    session.rollback()  # nothing of the refused change survives
    detail: dict[str, Any] = {"endpoint": request.endpoint or "-"}
    if refused.consent_id and len(refused.consent_id) <= 64 \
            and refused.consent_id.replace("_", "").isalnum():
        detail["consent_id"] = refused.consent_id
    with write(session):
        audit.record(session, audit.Event(
            type="portal.refused", actor=f"patient:{row.account_id}", outcome="failure",
            patient=row.account_id, reason=refused.reason, request_id=request_id(),
            detail=detail))


# -- input ---------------------------------------------------------------------------------------

def _check_csrf() -> None:
    """Every portal form: this origin and the session's token, else refused and audited."""
    problem = form_refusal()
    if problem is not None:
        raise Refused(*problem)


def _field(name: str, *, required: bool = True) -> str:
    value = request.form.get(name, "")
    if len(value) > MAX_FIELD or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise Refused("bad_input", _("A field holds text that is too long or contains control "
                                     "characters; nothing was changed."))
    if required and not value:
        raise Refused("bad_input", _("Please fill in every field."))
    return value


def _categories(allowed: list[str] | None = None) -> list[str]:
    raw = request.form.getlist("category")
    if len(raw) > len(CATEGORIES) or any(len(c) > MAX_FIELD for c in raw):
        raise Refused("bad_input", _("Unknown record category; nothing was changed."))
    chosen = list(dict.fromkeys(raw))
    if any(c not in (allowed if allowed is not None else CATEGORIES) for c in chosen):
        raise Refused("bad_input", _("Unknown record category; nothing was changed."))
    if not chosen:
        raise Refused("bad_input", _("Choose at least one category of records."))
    return chosen


def _end_of_day(raw: str) -> datetime:
    """``YYYY-MM-DD`` means up to the end of that day in Japan time."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise Refused("bad_input", _("Enter the end date as YYYY-MM-DD.")) from None
    start_next = datetime.combine(day + timedelta(days=1), time(), ZoneInfo(TIMEZONE))
    return start_next.astimezone(UTC)


def _fresh(login: LoginSession, now: datetime) -> bool:
    return now - login.auth_time <= FRESH_LOGIN


def _require_fresh(login: LoginSession, now: datetime) -> None:
    if not _fresh(login, now):
        raise Refused("stale_login", _("Granting or extending a consent needs a card login "
                                       "within the last 10 minutes. Nothing was changed: log "
                                       "in with your card again."), 403, login_again=True)


def _own(consent_id: str, login: LoginSession) -> Consent:
    consent = db.session().get(Consent, consent_id) if len(consent_id) <= 64 else None
    if consent is None or consent.patient_id != login.account_id:
        raise Refused("not_found", _("There is no such consent; nothing was changed."), 404,
                      consent_id=consent_id)
    return consent


def _institutions() -> list[Institution]:
    """Institutions a patient can consent to (a record server is not one)."""
    return list(db.session().execute(
        select(Institution).where(Institution.type != "resource_server")
        .order_by(Institution.name)).scalars())


# -- proposals -----------------------------------------------------------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=PROPOSAL_SALT)


def _propose(login: LoginSession, change: dict[str, Any]) -> str:
    return _serializer().dumps({**change, "account": login.account_id, "csrf": csrf_token()})


def _proposal(login: LoginSession) -> dict[str, Any]:
    try:
        change = _serializer().loads(request.form.get("proposal", ""), max_age=PROPOSAL_AGE)
    except SignatureExpired:
        raise Refused("expired_confirmation", _("This confirmation page has expired; nothing "
                                                "was changed. Please start again.")) from None
    except BadSignature:
        raise Refused("tampered", _("The confirmed change was altered; nothing was changed."),
                      consent_id=request.form.get("consent")) from None
    if not isinstance(change, dict) or change.get("account") != login.account_id \
            or change.get("csrf") != csrf_token() or change.get("action") not in ACTIONS:
        raise Refused("tampered", _("The confirmed change was altered; nothing was changed."))
    return change


# -- pages ---------------------------------------------------------------------------------------

@bp.get("")
@bp.get("/")
@patient_page
def index() -> str:
    login = _login()
    session = db.session()
    now = utcnow()
    consents = service.patient_consents(session, login.account_id)
    institutions = {i.id: i for i in session.execute(select(Institution).where(
        Institution.id.in_({c.institution_id for c in consents if c.institution_id})))
        .scalars()}
    groups: dict[str, dict[str, Any]] = {}
    for consent in consents:
        institution = institutions.get(consent.institution_id or "")
        key = institution.id if institution else ""
        group = groups.setdefault(key, {"institution": institution, "consents": []})
        view = consent_view(consent, institution, now)
        view.update(start_at=consent.start, end_at=consent.end)
        group["consents"].append(view)
    ordered = sorted(groups.values(),
                     key=lambda g: (g["institution"] is None,
                                    g["institution"].name if g["institution"] else ""))
    return render_template("portal/index.html", groups=ordered, **_vocabulary())


@bp.get("/grant")
@patient_page
def grant_form() -> Response | str:
    login = _login()
    if not _fresh(login, utcnow()):
        return redirect(url_for("web.login", next=request.path, fresh="1"))  # type: ignore[return-value]
    return render_template("portal/grant.html", institutions=_institutions(),
                           consentable=sorted(service.CONSENTABLE, key=list(PURPOSES).index),
                           min_end=_today_jst() + timedelta(days=1), **_vocabulary())


@bp.post("/grant")
@patient_page
def grant_confirm() -> str:
    login = _login()
    _check_csrf()
    now = utcnow()
    _require_fresh(login, now)
    institution_id = _field("institution")
    purpose = _field("purpose")
    raw_end = _field("end", required=purpose != "treatment_visit")
    institution = db.session().get(Institution, institution_id)
    if institution is None or institution.type == "resource_server":
        raise Refused("bad_input", _("Choose an institution from the list; nothing was "
                                     "changed."))
    if purpose not in service.CONSENTABLE:
        raise Refused("bad_input", _("Choose a purpose from the list; nothing was changed."))
    categories = _categories()
    end = _end_of_day(raw_end) if raw_end else None
    if end is not None and end <= now:
        raise Refused("bad_input", _("The end date must be in the future."))
    if end is not None and end - now > service.MAX_PERIOD:
        raise Refused("bad_input", _("A consent may last at most ten years."))
    refused = grantable.refused(policy_store.current(db.session()), institution, purpose,
                                categories)
    if refused:
        raise Refused("not_grantable", _(
            "This institution may never see these records for this purpose, so they cannot be "
            "granted: %(names)s", names=", ".join(_label(CATEGORIES[c]) for c in refused)))
    change = {"action": "grant", "institution": institution.id, "purpose": purpose,
              "categories": categories, "end": end.isoformat() if end else None}
    return render_template(
        "portal/confirm.html", action="grant", proposal=_propose(login, change),
        institution=institution, purpose=purpose, categories=categories, end=end,
        visit_end=now + service.VISIT_LIFETIME, **_vocabulary())


@bp.get("/consents/<consent_id>/narrow")
@patient_page
def narrow_form(consent_id: str) -> str:
    consent = _live(consent_id, _login())
    return render_template("portal/narrow.html", consent=consent,
                           institution=_institution_of(consent), **_vocabulary())


@bp.post("/consents/<consent_id>/narrow")
@patient_page
def narrow_confirm(consent_id: str) -> str:
    login = _login()
    _check_csrf()
    consent = _live(consent_id, login)
    kept = _categories(list(consent.categories))
    if set(kept) == set(consent.categories):
        raise Refused("bad_input", _("Untick at least one category to narrow this consent; "
                                     "nothing was changed."), consent_id=consent.id)
    change = {"action": "narrow", "consent": consent.id, "version": consent.version,
              "categories": kept}
    removed = [c for c in consent.categories if c not in kept]
    return render_template("portal/confirm.html", action="narrow",
                           proposal=_propose(login, change), consent=consent,
                           institution=_institution_of(consent), kept=kept, removed=removed,
                           **_vocabulary())


@bp.get("/consents/<consent_id>/extend")
@patient_page
def extend_form(consent_id: str) -> Response | str:
    login = _login()
    consent = _live(consent_id, login)
    if not _fresh(login, utcnow()):
        return redirect(url_for("web.login", next=request.path, fresh="1"))  # type: ignore[return-value]
    return render_template("portal/extend.html", consent=consent,
                           institution=_institution_of(consent),
                           min_end=_today_jst() + timedelta(days=1), **_vocabulary())


@bp.post("/consents/<consent_id>/extend")
@patient_page
def extend_confirm(consent_id: str) -> str:
    login = _login()
    _check_csrf()
    now = utcnow()
    consent = _live(consent_id, login)
    _require_fresh(login, now)
    end = _end_of_day(_field("end"))
    if consent.end is not None and end <= consent.end:
        raise Refused("bad_input", _("The new end date must be later than the current one."),
                      consent_id=consent.id)
    if end - now > service.MAX_PERIOD:
        raise Refused("bad_input", _("A consent may last at most ten years."),
                      consent_id=consent.id)
    change = {"action": "extend", "consent": consent.id, "version": consent.version,
              "end": end.isoformat()}
    return render_template("portal/confirm.html", action="extend",
                           proposal=_propose(login, change), consent=consent,
                           institution=_institution_of(consent), end=end, **_vocabulary())


@bp.get("/consents/<consent_id>/revoke")
@patient_page
def revoke_confirm(consent_id: str) -> str:
    login = _login()
    consent = _own(consent_id, login)
    if consent.status == "revoked":
        raise Refused("conflict", _("This consent is already revoked."), 409,
                      consent_id=consent.id)
    change = {"action": "revoke", "consent": consent.id, "version": consent.version}
    return render_template("portal/confirm.html", action="revoke",
                           proposal=_propose(login, change), consent=consent,
                           institution=_institution_of(consent), **_vocabulary())


@bp.post("/apply")
@patient_page
def apply() -> Response:
    """The final POST of every change: the signed proposal from the confirmation page."""
    login = _login()
    _check_csrf()
    change = _proposal(login)
    session = db.session()
    now = utcnow()
    action = change["action"]
    consent_id = change.get("consent")
    if consent_id is not None:
        consent = _own(str(consent_id), login)
        if consent.version != change.get("version"):
            raise Refused("conflict", _("This consent changed after the confirmation page was "
                                        "shown; nothing was changed. Please look again."), 409,
                          consent_id=consent.id)
    try:
        if action == "grant":
            _require_fresh(login, now)
            institution_id = str(change["institution"])
            consent = service.grant(
                session, patient_id=login.account_id, institution_id=institution_id,
                purpose=str(change["purpose"]), categories=list(change["categories"]),
                end=datetime.fromisoformat(change["end"]) if change.get("end") else None,
                capture=service.Capture(
                    method="card_portal", acr=login.acr, auth_time=login.auth_time,
                    provenance={"source": "portal", "session": login.id,
                                "request_id": request_id()}),
                now=now, request_id=request_id(),
                pairwise=IdentityKeys.from_kek(current_app.config["AUTHZ_KEK_BYTES"])
                .pairwise_sub(login.account_id, institution_id))
            flash(_("Consent granted."))
        elif action == "narrow":
            service.narrow(session, str(consent_id), patient_id=login.account_id,
                           categories=list(change["categories"]), now=now,
                           request_id=request_id())
            flash(_("Consent narrowed."))
        elif action == "extend":
            _require_fresh(login, now)
            service.extend(session, str(consent_id), patient_id=login.account_id,
                           end=datetime.fromisoformat(change["end"]), now=now,
                           request_id=request_id())
            flash(_("Consent extended."))
        else:
            service.revoke(session, str(consent_id), patient_id=login.account_id, now=now,
                           request_id=request_id())
            flash(_("Consent revoked. From now on it permits nothing."))
    except (InvalidInput, NotFound) as error:
        raise Refused("bad_input", error.description,
                      consent_id=str(consent_id) if consent_id else None) from None
    except AuthzError as error:  # a concurrent change won (compare-and-set on the version)
        raise Refused(error.code, _("This consent changed after the confirmation page was "
                                    "shown; nothing was changed. Please look again."),
                      error.status, consent_id=str(consent_id) if consent_id else None) from None
    return redirect(url_for("portal.index"), 303)  # type: ignore[return-value]


@bp.get("/consents/<consent_id>")
@patient_page
def consent_page(consent_id: str) -> str:
    """One consent with its version history; a receipt for each version."""
    consent = _own(consent_id, _login())
    institution = _institution_of(consent)
    view = consent_view(consent, institution, utcnow())
    view.update(start_at=consent.start, end_at=consent.end)
    return render_template("portal/consent.html", consent=view, institution=institution,
                           versions=service.versions(db.session(), consent.id),
                           **_vocabulary())


@bp.get("/consents/<consent_id>/receipt.jws")
@patient_page
def receipt(consent_id: str) -> Response:
    """The signed receipt of the current version, or of ``?version=N``."""
    consent = _own(consent_id, _login())
    session = db.session()
    wanted = request.args.get("version", str(consent.version))
    found = [v for v in service.versions(session, consent.id)
             if wanted.isdigit() and len(wanted) <= 6 and v.version == int(wanted)]
    if not found:
        raise Refused("not_found", _("There is no such version of this consent."), 404,
                      consent_id=consent.id)
    token = receipts.sign(session, current_app.config["AUTHZ_KEK_BYTES"], found[0])
    session.rollback()
    return _download(token, "application/jose", f"{consent.id}-v{found[0].version}.jws")


@bp.get("/consents/<consent_id>/fhir.json")
@patient_page
def fhir_consent(consent_id: str) -> Response:
    consent = _own(consent_id, _login())
    resource = fhir.to_fhir(consent, _institution_of(consent),
                            issuer=current_app.config["AUTHZ_ISSUER"],
                            status=service.status_at(consent, utcnow()))
    return _download(json.dumps(resource, ensure_ascii=False, indent=2),
                     "application/fhir+json", f"{consent.id}-v{consent.version}.json")


@bp.get("/devices")
@patient_page
def devices() -> str:
    login = _login()
    session = db.session()
    apps = session.execute(
        select(Grant.id, Grant.created_at, Client.name)
        .join(Client, Client.client_id == Grant.client_id)
        .where(Grant.account_id == login.account_id, Grant.revoked_at.is_(None))
        .order_by(Grant.created_at.desc())).all()
    return render_template("portal/devices.html", login=login, apps=apps,
                           sessions=logins.active(session, login.account_id))


@bp.post("/sessions/<session_id>/end")
@patient_page
def end_session(session_id: str) -> Response:
    login = _login()
    _check_csrf()
    try:
        logins.end(db.session(), login.account_id, session_id[:64], request_id=request_id())
    except NotFound:
        raise Refused("not_found", _("There is no such session; nothing was changed."),
                      404) from None
    flash(_("The session was ended."))
    target = "portal.devices" if session_id != login.id else "web.login"
    return redirect(url_for(target), 303)  # type: ignore[return-value]


@bp.post("/apps/<grant_id>/end")
@patient_page
def end_app(grant_id: str) -> Response:
    login = _login()
    _check_csrf()
    session = db.session()
    with write(session):
        grant = session.get(Grant, grant_id[:64])
        if grant is None or grant.account_id != login.account_id \
                or grant.revoked_at is not None:
            raise Refused("not_found", _("There is no such app access; nothing was changed."),
                          404)
        oauth_store.revoke_grant(session, grant, "revoked_by_patient", utcnow())
    flash(_("The app's access was ended."))
    return redirect(url_for("portal.devices"), 303)  # type: ignore[return-value]


@bp.get("/history")
@patient_page
def history_page() -> str:
    from authz.audit import history

    login = _login()
    session = db.session()
    args: dict[str, str] = {}
    since, until = request.args.get("since", ""), request.args.get("until", "")
    institution = request.args.get("institution", "")
    before = request.args.get("before", "")
    try:
        if since:
            args["since"] = date.fromisoformat(since[:10]).isoformat()
        if until:
            args["until"] = (date.fromisoformat(until[:10]) + timedelta(days=1)).isoformat()
        if institution:
            args["institution"] = institution
        if before:
            args["before"] = before
        query = history.parse_query(args)
    except (ValueError, InvalidInput):
        raise Refused("bad_input", _("Check the filter: dates as YYYY-MM-DD and an "
                                     "institution from the list.")) from None
    entries, cursor = history.history(session, login.account_id, query)
    with write(session):
        audit.record(session, audit.Event(
            type="audit.history_read", actor=f"patient:{login.account_id}",
            patient=login.account_id, request_id=request_id(),
            detail={"count": len(entries), "source": "portal"}))
    for entry in entries:
        entry["at"] = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    filters = {"since": since[:10], "until": until[:10], "institution": institution}
    return render_template("portal/history.html", entries=entries, cursor=cursor,
                           filters=filters, institutions=_institutions(), **_vocabulary())


# -- helpers -------------------------------------------------------------------------------------

def _live(consent_id: str, login: LoginSession) -> Consent:
    consent = _own(consent_id, login)
    if service.status_at(consent, utcnow()) != "active":
        raise Refused("conflict", _("Only an active consent can be changed; grant a new one "
                                    "instead."), 409, consent_id=consent.id)
    return consent


def _institution_of(consent: Consent) -> Institution | None:
    return db.session().get(Institution, consent.institution_id) \
        if consent.institution_id else None


def _today_jst() -> date:
    return utcnow().astimezone(ZoneInfo(TIMEZONE)).date()


def _label(pair: tuple[str, str]) -> str:
    from authz.web.i18n import label

    return label(pair)


def _vocabulary() -> dict[str, Any]:
    return {"CATEGORIES": CATEGORIES, "PURPOSES": PURPOSES, "SENSITIVE": SENSITIVE,
            "INSTITUTION_TYPES": INSTITUTION_TYPES, "STATUS_TEXT": STATUS_TEXT,
            "PERMIT": PERMIT}


def _download(body: str, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
