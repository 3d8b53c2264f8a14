"""The authorization endpoint: card login when needed, then the consent page (DESIGN 4, 8)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError
from authlib.oidc.core.errors import LoginRequiredError
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.datastructures import MultiDict

from authz import audit
from authz.api.context import request_id
from authz.audit import auditors
from authz.consent import capture as consent_capture
from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.consent.vocabulary import SENSITIVE
from authz.database import utcnow
from authz.database import write
from authz.extensions import db
from authz.extensions import limiter
from authz.identity.models import Account
from authz.identity.models import LoginSession
from authz.identity.transactions import ACR
from authz.oauth import dpop
from authz.oauth import par
from authz.oauth import rar
from authz.oauth import userinfo
from authz.oauth.models import Grant
from authz.oauth.server import OAuthClient
from authz.oauth.server import auth_server
from authz.oauth.server import check_resources
from authz.oauth.server import is_echo_failure
from authz.oauth.server import pairwise_sub
from authz.registry.models import Client
from authz.registry.models import Institution
from authz.web import require_csrf
from authz.web import secure_page
from authz.web.pages import current_login
from authz.web.pages import ui_lang

bp = Blueprint("authorize", __name__)
bp.after_request(secure_page)

SCOPE_TEXT = {
    "openid": ("ログインしたことを伝えます", "Confirm that you logged in"),
    "profile": ("確認済みの氏名などを伝えます", "Share your verified name and details"),
    "offline_access": ("あなたがいないときも利用を続けます", "Keep access while you are away"),
    "consents": ("あなたの同意の一覧と変更", "See and change your consents"),
    "decisions": ("記録へのアクセスの判定を求めます", "Ask for access decisions on records"),
    "introspect": ("トークンを確認します", "Check tokens"),
    "audit": ("アクセス記録を閲覧します", "Read the access log"),
}
TYPE_TEXT = {"hospital": "病院 / hospital", "clinic": "診療所 / clinic",
             "pharmacy": "薬局 / pharmacy", "care_provider": "介護事業者 / care provider",
             "municipality": "市区町村 / municipality", "research": "研究機関 / research body",
             "resource_server": "記録サーバ / record server"}


def _params() -> MultiDict[str, str]:
    """The authorization request: a pushed one (RFC 9126) or the query string."""
    pushed = g.get("authz_pushed_params")
    return pushed if pushed is not None else request.args


def _requires_par(client_id: str | None) -> bool:
    """RFC 9126 §6: ``require_pushed_authorization_requests``, globally or for this client."""
    if current_app.config["AUTHZ_REQUIRE_PAR"]:
        return True
    if not client_id or len(client_id) > 64:
        return False  # no such client: Authlib refuses the request without a redirect
    row = db.session().get(Client, client_id)
    return row is not None and row.require_par


def _load_pushed() -> tuple[str, str] | None:
    """Resolve ``request_uri``; (error, description) when it cannot be used."""
    request_uri = request.args.get("request_uri")
    if request_uri is None:
        if _requires_par(request.args.get("client_id")):
            return "invalid_request", "this client must push its authorization requests (PAR)"
        return None
    client_id = request.args.get("client_id", "")
    params = par.find(db.session(), request_uri, client_id, utcnow())
    if params is None:
        return "invalid_request_uri", "the request_uri is unknown, expired or used"
    g.authz_pushed_params = MultiDict(params)
    return None


def _error(error: OAuth2Error) -> Response | tuple[str, int]:
    """RFC 6749 §4.1.2.1: redirect only to a validated redirect URI; otherwise explain here."""
    if error.redirect_uri:
        error.state = _params().get("state")
        _status, _body, headers = error()
        location = dict(headers)["Location"]
        # RFC 9207 §2: iss in every authorization response, error responses included.
        return redirect(add_params_to_uri(location, {"iss": current_app.config["AUTHZ_ISSUER"]}))  # type: ignore[return-value]
    return render_template("oauth_error.html", error=error.error, lang=_lang(),
                           description=error.description or ""), 400


def _lang() -> str:
    """OIDC Core §3.1.2.1 ``ui_locales``: the language shown first (ja or en)."""
    return ui_lang(_params().get("ui_locales"))


def _fresh(login: LoginSession) -> bool:
    """The login was answered after this authorization asked for one (prompt, max_age, ...)."""
    started = session.get("authn_requested_at")
    return isinstance(started, (int, float)) and login.auth_time.timestamp() > started


def wanted_acr(claims: dict[str, Any] | None) -> tuple[list[str], bool]:
    """``acr_values`` (voluntary) and ``claims.id_token.acr`` (essential when it says so)."""
    values, essential = userinfo.requested_acr(claims)
    values = list(dict.fromkeys(_params().get("acr_values", "").split()[:8] + values))
    return values, essential


def _needs_login(login: LoginSession | None, client: OAuthClient,
                 acr: list[str]) -> bool:
    """OIDC Core §3.1.2.1: ``prompt=login``, ``max_age``, ``acr_values`` and ``login_hint``
    against the current login session; a login answered moments ago satisfies them all."""
    if login is None:
        return True
    if _fresh(login):
        return False
    if "login" in _params().get("prompt", "").split():
        return True
    max_age = _params().get("max_age")
    if max_age is not None and max_age.isdigit():
        if utcnow() - login.auth_time > timedelta(seconds=int(max_age)):
            return True
    if acr and login.acr not in acr and set(acr) & set(ACR.values()):
        return True  # another login (card or phone) can meet what is asked
    hint = _params().get("login_hint")
    # login_hint is the pairwise sub this client knows: another account is logged in here.
    if not hint:
        return False
    return not hmac.compare_digest(
        hint.encode(), pairwise_sub(login.account_id, client.institution_id).encode())


class UnmetAuthenticationRequirementsError(OAuth2Error):  # type: ignore[misc]
    """OpenID Connect Core Unmet Authentication Requirements 1.0: an essential ``acr``."""

    error = "unmet_authentication_requirements"


def error_text(text: str) -> str:
    """RFC 6749 §4.1.2.1: error_description may hold only %x20-21 / %x23-5B / %x5D-7E."""
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')[:200]


class RequestNotSupportedError(OAuth2Error):  # type: ignore[misc]
    error = "request_not_supported"


class InvalidDetailsError(OAuth2Error):  # type: ignore[misc]
    error = "invalid_authorization_details"  # RFC 9396 §5


def _details_view(details: list[dict[str, Any]],
                  refused: list[set[str]]) -> list[dict[str, Any]]:
    """Each requested detail, item by item, in plain words (sensitive ones flagged, unticked;
    those the rules refuse this institution shown as refused, without a box)."""
    shown = []
    for index, detail in enumerate(details):
        ticked = set(rar.preselected(detail, refused[index]))
        shown.append({
            "purpose": PURPOSES[detail["purpose"]],
            "end": detail.get("period", {}).get("end"),
            "items": [{"value": f"{index}:{c}", "label": CATEGORIES[c], "checked": c in ticked,
                       "sensitive": c in SENSITIVE, "refused": c in refused[index]}
                      for c in detail["categories"]]})
    return shown


def _view(client: OAuthClient, scope: str) -> dict[str, Any]:
    institution = db.session().get(Institution, client.institution_id)
    return {"client": client.row, "institution": institution, "lang": _lang(),
            "institution_type": TYPE_TEXT.get(institution.type, institution.type)
            if institution else "",
            "scopes": [(s, *SCOPE_TEXT.get(s, (s, s))) for s in scope.split()]}


def _audit_request(client: OAuthClient, account_id: str, scope: str,
                   details: list[dict[str, Any]]) -> None:
    """The request reached a logged-in patient (the consent page): identifiers only.

    Requests that never reach a patient are not audited one by one (floods go to the logs
    and metrics, not the audit chain).
    """
    db_session = db.session()
    with write(db_session):
        audit.record(db_session, audit.Event(
            type="oauth.authorization_requested", actor=f"patient:{account_id}",
            outcome="success", client=client.get_client_id(),
            institution=client.institution_id, patient=account_id, request_id=request_id(),
            detail={"scope": scope, "pushed": int(request.args.get("request_uri") is not None),
                    "details": len(details)}))


@bp.route("/oauth/authorize", methods=["GET", "POST"])
@limiter.limit("60 per minute")
def authorize() -> Any:
    if request.method == "POST" and "decision" not in request.form:
        # OIDC Core §3.1.2.1: an authorization request may be POSTed (form serialization);
        # it continues as the equivalent GET, so only the consent form ever POSTs here.
        query = MultiDict(request.args)
        query.update(request.form)
        return redirect(f"{request.path}?{urlencode(list(query.items(multi=True)))}", 303)
    refused = _load_pushed()
    _lang()  # ui_locales (pushed or not) sets the language of every page below
    if refused is not None:
        return render_template("oauth_error.html", error=refused[0], description=refused[1],
                               lang=_lang()), 400
    login = current_login()
    account = db.session().get(Account, login.account_id) if login else None
    if "openid" in _params().get("scope", "").split() and not _params().get("redirect_uri"):
        # OIDC Core §3.1.2.1: redirect_uri is REQUIRED; without one nothing is redirected.
        return render_template("oauth_error.html", error="invalid_request",
                               description="redirect_uri is required"), 400
    try:
        grant = auth_server.get_consent_grant(end_user=account)
    except OAuth2Error as error:
        return _error(error)
    except ValueError as error:
        if not is_echo_failure(error):
            raise
        return render_template("oauth_error.html", error="invalid_request",
                               description="malformed parameter"), 400
    redirect_uri = grant.request.payload.redirect_uri or grant.client.get_default_redirect_uri()
    if "request" in _params():
        # OIDC Core §6.1: request objects are not supported (discovery says so).
        return _error(RequestNotSupportedError(redirect_uri=redirect_uri))
    try:
        claims = userinfo.parse_claims_request(_params().get("claims"))
    except userinfo.InvalidClaimsRequest as invalid:
        return _error(OAuth2Error(error_text(str(invalid)), redirect_uri=redirect_uri,
                                  error="invalid_request"))
    if _params().get("response_mode", "query") != "query":
        return _error(OAuth2Error("response_mode must be query", redirect_uri=redirect_uri,
                                  error="invalid_request"))
    dpop_jkt = _params().get("dpop_jkt")
    if dpop_jkt is not None and not dpop.is_thumbprint(dpop_jkt):
        return _error(OAuth2Error("dpop_jkt must be a SHA-256 JWK thumbprint (RFC 9449 10)",
                                  redirect_uri=redirect_uri, error="invalid_request"))
    client: OAuthClient = grant.client
    acr, acr_essential = wanted_acr(claims)
    unmet = UnmetAuthenticationRequirementsError(
        "the login does not meet the essential acr", redirect_uri=redirect_uri)
    if "none" in _params().get("prompt", "").split():
        # OIDC Core §3.1.2.1: no user interface at all; consent is always asked here.
        if _needs_login(login, client, acr):
            return _error(LoginRequiredError(redirect_uri=redirect_uri))
        if acr_essential and login is not None and login.acr not in acr:
            return _error(unmet)
        return _error(ConsentRequiredError(redirect_uri=redirect_uri))
    if request.method == "GET" and _needs_login(login, client, acr):
        session["authn_requested_at"] = utcnow().timestamp()
        # fresh=1: a session exists but this request wants a new card login (prompt, max_age)
        return redirect(url_for("web.login", next=request.full_path,
                                fresh="1" if login is not None else None,
                                lang=_lang() if _params().get("ui_locales") else None))
    if acr_essential and login is not None and login.acr not in acr:
        # OIDC Core §5.5.1.1: an essential acr that even a new login did not meet
        return _error(unmet)
    scope = client.get_allowed_scope(grant.request.payload.scope or "")
    if account is not None:  # `audit` only for registered auditors (authz.audit.auditors)
        scope = auditors.restrict_scope(db.session(), account.id, scope)
    try:
        resources = check_resources(_params().getlist("resource"))
        details = rar.parse(_params().get("authorization_details"),
                            institution=client.institution_id)
    except OAuth2Error as error:
        error.redirect_uri = redirect_uri
        return _error(error)
    except rar.InvalidDetails as invalid:
        return _error(InvalidDetailsError(error_text(str(invalid)), redirect_uri=redirect_uri))
    if login is not None and consent_capture.needs_fresh_login(details, login.auth_time,
                                                               utcnow()):
        # Consent records need a card login moments ago (the card-reader consent).
        return redirect(url_for("web.login", next=request.full_path, fresh="1"))
    refused_details = consent_capture.refused_by_rules(db.session(), client.institution_id,
                                                       details)
    if request.method == "GET":
        if account is not None:
            _audit_request(client, account.id, scope, details)
        return render_template("consent.html", action=request.full_path,
                               details=_details_view(details, refused_details),
                               **_view(client, scope))
    require_csrf()
    if login is None or account is None:
        return redirect(url_for("web.login", next=request.full_path))
    approved = request.form.get("decision") == "approve"
    db_session = db.session()
    with write(db_session):
        event: dict[str, Any] = {"client": client.get_client_id(),
                                 "institution": client.institution_id, "patient": account.id,
                                 "request_id": request_id()}
        if not approved:
            audit.record(db_session, audit.Event(
                type="oauth.consent", actor=f"patient:{account.id}", outcome="failure",
                reason="denied", **event))
            response = auth_server.create_authorization_response(grant=grant, grant_user=None)
            if request.args.get("request_uri"):
                par.retire(db_session, request.args["request_uri"], utcnow())
            return response
        if "details_form" in request.form:  # a browser sends exactly the ticked boxes
            chosen = set(request.form.getlist("detail"))
        else:  # DESIGN 8: a bare approve approves what the page pre-selected
            chosen = {f"{i}:{c}" for i, d in enumerate(details)
                      for c in rar.preselected(d, refused_details[i])}
        granted = rar.approve(details, chosen, refused_details)
        row = Grant(id=f"grt_{secrets.token_hex(8)}", client_id=client.get_client_id(),
                    account_id=account.id, scope=scope, resource=resources,
                    authorization_details=granted or None, acr=login.acr,
                    amr=list(login.amr), auth_time=login.auth_time,
                    login_session_id=login.id, claims_request=claims)
        db_session.add(row)
        db_session.flush()
        # -- APPROVED: the grant (`row`) and the approved health_record_access details
        # (`granted`) are known here, in the same transaction as the consent audit event.
        consent_ids = consent_capture.record(
            db_session, account_id=account.id, institution_id=client.institution_id,
            granted=granted, acr=login.acr, auth_time=login.auth_time,
            client_id=client.get_client_id(), grant_id=row.id,
            pairwise=pairwise_sub(account.id, client.institution_id), now=utcnow(),
            request_id=request_id())
        audit.record(db_session, audit.Event(
            type="oauth.consent", actor=f"patient:{account.id}", outcome="success",
            detail={"grant": row.id, "scope": scope,
                    "authorization_details": [
                        {"purpose": d["purpose"], "categories": d["categories"]}
                        for d in granted], "consents": consent_ids}, **event))
        grant.request.authz_grant_id = row.id
        grant.request.authz_scope = scope
        grant.request.authz_dpop_jkt = dpop_jkt  # RFC 9449 §10: stored with the code
        response = auth_server.create_authorization_response(grant=grant, grant_user=account)
        if request.args.get("request_uri"):
            par.retire(db_session, request.args["request_uri"], utcnow())
    session.pop("authn_requested_at", None)
    return response
