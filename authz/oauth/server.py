"""Authlib's AuthorizationServer, hardened (reference oauth-hardening.md sections 2 and 7).

This module is the one place where grants, extensions and client authentication are wired:
PKCE S256 required at the authorization step for every client, nonce required, exact redirect
URIs, ``iss`` in every authorization response (RFC 9207), ES256 JWT access tokens (RFC 9068)
and ID tokens with pairwise subjects, single-use codes whose replay revokes the grant, and
rotating refresh tokens whose reuse revokes the family.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidGrantError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import OAuth2Payload
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.grants.util import create_half_hash
from flask import Flask
from flask import current_app
from flask import g
from flask import request as flask_request
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from authz import audit
from authz.database import utcnow
from authz.database import write
from authz.extensions import db
from authz.identity.crypto import IdentityKeys
from authz.identity.models import Account
from authz.oauth import signing
from authz.oauth import store
from authz.oauth.models import AuthorizationCode
from authz.oauth.models import Grant
from authz.oauth.models import RefreshToken
from authz.oauth.replay import OneTimeValue
from authz.oauth.store import revoke_grant
from authz.registry.models import Client

ACCESS_TOKEN_LIFETIME = 300  # DESIGN 4: at most 5 minutes
ID_TOKEN_LIFETIME = 300
CODE_LIFETIME = timedelta(seconds=60)
MAX_FAILED_EXCHANGES = 3  # then the code is dead (not replayed: nothing is revoked)
REFRESH_LIFETIME = timedelta(days=30)
REFRESH_GRACE = timedelta(seconds=10)
REFRESH_PREFIX = "azrt_"  # noqa: S105 - a token prefix, not a secret
CODE_PREFIX = "azac_"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_REPLAY_SCOPE = "assertion"
# Authlib's own description when no method authenticates the client (the same answer).
CLIENT_AUTH_FAILED = "The client cannot authenticate with methods: ['private_key_jwt']"

class PushedPayload(OAuth2Payload):  # type: ignore[misc]
    """The parameters of a pushed authorization request, standing in for the query string."""

    def __init__(self, params: MultiDict[str, str]) -> None:
        self._params = params

    @property
    def data(self) -> MultiDict[str, str]:
        return self._params

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {key: self._params.getlist(key) for key in self._params}


def is_echo_failure(error: ValueError) -> bool:
    """Authlib builds some error descriptions from request values and then refuses them (RFC
    6749 §5.2 character set) with a ValueError; such a request is invalid, not a server fault."""
    return str(error).startswith("Error description contains forbidden characters")


class Server(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server, reading a pushed request's parameters when ``request_uri`` named one."""

    def create_token_response(self, request: Any = None) -> Any:
        try:
            return super().create_token_response(request)
        except ValueError as error:
            if not is_echo_failure(error):
                raise
            body = {"error": "invalid_request", "error_description": "malformed parameter"}
            return self.handle_response(400, body, [("Cache-Control", "no-store")])

    def create_oauth2_request(self, request: Any) -> Any:
        oauth_request = FlaskOAuth2Request(flask_request)
        pushed = g.get("authz_pushed_params")
        if pushed is not None:
            oauth_request.payload = PushedPayload(pushed)
        return oauth_request


auth_server = Server()


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session() -> Session:
    return db.session()


def _kek() -> bytes:
    return bytes(current_app.config["AUTHZ_KEK_BYTES"])


def _issuer() -> str:
    return str(current_app.config["AUTHZ_ISSUER"])


# -- clients ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientView:
    """A snapshot of a client row: commits in the request must not reload it (or change it)."""

    client_id: str
    institution_id: str
    name: str
    auth_method: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    jwks: dict[str, Any] | None
    resource_uri: str | None
    require_par: bool = False  # RFC 9126 §6
    dpop_bound: bool = False  # RFC 9449 §5.2: tokens only with a DPoP proof

    @classmethod
    def of(cls, row: Client | store.ClientRow) -> ClientView:
        """From the ORM row or from :func:`authz.oauth.store.client_row`."""
        return cls(row.client_id, row.institution_id, row.name, row.auth_method,
                   tuple(row.redirect_uris), tuple(row.scopes), row.jwks, row.resource_uri,
                   bool(row.require_par), bool(row.dpop_bound))


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """A registered client as Authlib sees it; every check is exact and fails closed."""

    def __init__(self, row: Client | store.ClientRow) -> None:
        self.row = ClientView.of(row)
        self.institution_id = row.institution_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 9700 §2.1: with several registered URIs the request must name one exactly.
        return self.row.redirect_uris[0] if len(self.row.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.row.scopes)
        return " ".join(s for s in scope.split() if s in allowed) if scope else ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris  # exact string match, no patterns

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # no shared secrets exist here

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.row.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"  # no implicit or hybrid

    def check_grant_type(self, grant_type: str) -> bool:
        allowed = {"authorization_code", "refresh_token"}
        if self.row.auth_method == "private_key_jwt":
            allowed.add("client_credentials")
        return grant_type in allowed


def query_client(client_id: str) -> OAuthClient | None:
    """The client, read from the database on every request (a disabled client, or changed
    keys, take effect at once); one Core primary-key select, no ORM identity map."""
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        return None
    row = store.client_row(_session(), client_id)
    return OAuthClient(row) if row is not None and row.enabled else None


# -- client assertion replay (RFC 7523 §3 item 7) ------------------------------------------------

_DEFER_REPLAY = "authz_defer_assertion_replay"
_PENDING_REPLAY = "authz_pending_assertion"
_ASSERTION_CLIENT = "authz_assertion_client"


class AssertionReplayed(Exception):
    """Raised inside a write transaction whose deferred client assertion ``jti`` was seen."""


def defer_assertion_replay() -> None:
    """Let the calling view record this request's client-assertion ``jti`` itself.

    The view then calls :func:`claim_assertion` in the write transaction that commits the
    request's effect (one transaction instead of two), and :func:`settle_assertion` once the
    response is built, which records a ``jti`` that no transaction claimed (a refused request)
    so that an assertion is never usable twice, whatever became of its first request.
    """
    g.setdefault(_DEFER_REPLAY, True)


def claim_assertion(session: Session, now: datetime) -> None:
    """Inside the request's write transaction: record the deferred ``jti``.

    :raise AssertionReplayed: when it was seen before (the transaction must roll back).
    """
    pending: OneTimeValue | None = g.get(_PENDING_REPLAY)
    if pending is not None and not pending.claim(session, now):
        raise AssertionReplayed


def assertion_claimed() -> None:
    """The transaction that claimed the deferred ``jti`` has committed."""
    g.pop(_PENDING_REPLAY, None)


def settle_assertion() -> bool:
    """After a view that deferred: record a ``jti`` no committed transaction claimed.

    Returns False when that ``jti`` had been used before (then audited as a failed client
    authentication): the view must answer ``invalid_client`` whatever else went wrong.
    """
    g.pop(_DEFER_REPLAY, None)
    pending: OneTimeValue | None = g.pop(_PENDING_REPLAY, None)
    if pending is None:
        return True
    if pending.claim(_session(), utcnow()):
        return True
    _audit_failure("oauth.client_authentication", g.get(_ASSERTION_CLIENT), "jti_replayed")
    return False


def _replayed_response() -> Any:
    error = InvalidClientError(description=CLIENT_AUTH_FAILED)
    return auth_server.handle_response(*error())


def one_transaction_assertion(
        applies: Callable[[], bool] = lambda: True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view that records its client assertion's ``jti`` in its own write (when
    ``applies()`` for the request; otherwise authentication records it, as everywhere else).

    Inside, :func:`claim_assertion` runs in the view's write transaction; a replay found there
    (``AssertionReplayed``), or by :func:`settle_assertion` afterwards, answers
    ``invalid_client`` (RFC 6749 §5.2), audited as ``jti_replayed``.
    """
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not applies():
                return view(*args, **kwargs)
            return _deferred(view, *args, **kwargs)

        return wrapper

    return decorate


def _deferred(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    defer_assertion_replay()
    try:
        response = view(*args, **kwargs)
    except AssertionReplayed:
        assertion_claimed()  # seen before: nothing to record
        _audit_failure("oauth.client_authentication", g.get(_ASSERTION_CLIENT), "jti_replayed")
        settle_assertion()
        return _replayed_response()
    except BaseException:
        settle_assertion()
        raise
    return response if settle_assertion() else _replayed_response()


def authenticate_private_key_jwt(query: Any, request: Any) -> OAuthClient | None:
    """RFC 7523 §2.2 client authentication; the assertion's precise failure is audited.

    The ``jti`` is recorded in the replay store now, in its own transaction, unless the view
    deferred that to its own write transaction (:func:`defer_assertion_replay`).
    """
    from authz.oauth.assertion import InvalidClientAssertion
    from authz.oauth.assertion import replay_key
    from authz.oauth.assertion import verify_client_assertion

    form = request.form
    if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
        return None
    client_id = str(form.get("client_id") or _unverified_subject(form["client_assertion"]) or "")
    client: OAuthClient | None = query(client_id) if client_id else None
    if client is None or client.row.auth_method != "private_key_jwt" or not client.row.jwks:
        return None
    now = utcnow()
    try:
        checked = verify_client_assertion(form["client_assertion"], client_id=client_id,
                                          jwks=client.row.jwks, issuer=_issuer(), now=now)
        once = OneTimeValue(ASSERTION_REPLAY_SCOPE, replay_key(client_id, checked.jti),
                            checked.replay_until)
        if g.get(_DEFER_REPLAY) and _PENDING_REPLAY not in g:
            g.setdefault(_PENDING_REPLAY, once)
            g.setdefault(_ASSERTION_CLIENT, client)
        elif not once.claim(_session(), now):
            raise InvalidClientAssertion("jti_replayed")
    except InvalidClientAssertion as failure:
        _audit_failure("oauth.client_authentication", client, failure.reason)
        return None
    return client


def _unverified_subject(assertion: str) -> str | None:
    """The ``sub`` of an assertion before verification, only to find the client's keys."""
    import base64
    import json

    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None


def _audit_failure(kind: str, client: OAuthClient | None, reason: str) -> None:
    session = _session()
    with write(session):
        audit.record(session, audit.Event(
            type=kind, actor=f"client:{client.get_client_id()}" if client else "anonymous",
            outcome="failure", reason=reason[:64],
            client=client.get_client_id() if client else None,
            institution=client.institution_id if client else None))


# -- resource indicators (RFC 8707) -------------------------------------------------------------

class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is unknown or not allowed here."""

    error = "invalid_target"


def check_resources(values: list[str]) -> list[str]:
    """Each ``resource`` must be this service (its decision API) or a registered resource server."""
    unique = list(dict.fromkeys(values))
    if len(unique) > 4:
        raise InvalidTargetError("at most 4 resource values")
    issuer = _issuer()
    for value in unique:
        if value == issuer:
            continue
        if not store.resource_server_exists(_session(), value):
            raise InvalidTargetError("unknown resource")
    return unique


def audiences(requested: list[str], granted: list[str]) -> list[str]:
    """The ``aud`` of a new access token: the requested resources, within what was granted."""
    if not requested:
        return granted or [_issuer()]
    checked = check_resources(requested)
    if granted and not set(checked) <= set(granted):
        raise InvalidTargetError("resource outside the grant")
    return checked


# -- token issuance -----------------------------------------------------------------------------

@dataclass
class Issue:
    """What the grant being processed knows, for the token generator (set per request)."""

    grant_id: str | None = None
    account: Account | None = None
    auth: dict[str, Any] = field(default_factory=dict)
    jti: str | None = None
    refresh_generation: int = 0
    granted_resources: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] | None = None
    audience: list[str] = field(default_factory=list)
    subject: str | None = None  # the access token's ``sub``


_issue: ContextVar[Issue | None] = ContextVar("authz_oauth_issue", default=None)


def _current_issue() -> Issue:
    issue = _issue.get()
    if issue is None:
        issue = Issue()
        _issue.set(issue)
    return issue


@functools.lru_cache(maxsize=8)
def _identity_keys(kek: bytes) -> IdentityKeys:
    return IdentityKeys.from_kek(kek)  # three HKDF derivations: once per key, not per token


def pairwise_sub(account_id: str, sector: str) -> str:
    return _identity_keys(_kek()).pairwise_sub(account_id, sector)


def generate_token(grant_type: str, client: OAuthClient, user: Account | None = None,
                   scope: str | None = None, expires_in: int | None = None,
                   include_refresh_token: bool = True) -> dict[str, Any]:
    """RFC 9068 access token (+ an opaque rotating refresh token with ``offline_access``)."""
    issue = _current_issue()
    now = int(utcnow().timestamp())
    issue.jti = secrets.token_urlsafe(18)
    issue.audience = audiences(flask_request.form.getlist("resource"), issue.granted_resources)
    sector = client.institution_id
    subject = pairwise_sub(user.id, sector) if user is not None else client.get_client_id()
    issue.subject = subject
    claims: dict[str, Any] = {
        "iss": _issuer(), "sub": subject,
        "aud": issue.audience[0] if len(issue.audience) == 1 else issue.audience,
        "client_id": client.get_client_id(),
        "iat": now, "exp": now + ACCESS_TOKEN_LIFETIME, "jti": issue.jti,
        "scope": scope or "",
    }
    if user is not None and issue.auth.get("auth_time"):
        claims.update(auth_time=issue.auth["auth_time"], acr=issue.auth.get("acr"))
    if issue.details:
        claims["authorization_details"] = issue.details  # RFC 9396 §9.1
    jkt = g.get("authz_dpop_jkt")
    if jkt:
        claims["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1: sender-constrained
    token: dict[str, Any] = {
        "token_type": "DPoP" if jkt else "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME,
        "scope": scope or "",
        "access_token": signing.sign(_session(), _kek(), claims, "at+jwt"),
    }
    if issue.details:
        token["authorization_details"] = issue.details  # RFC 9396 §7
    if include_refresh_token and user is not None and "offline_access" in (scope or "").split():
        token["refresh_token"] = REFRESH_PREFIX + secrets.token_urlsafe(32)
    return token


def save_token(token: dict[str, Any], request: Any) -> None:
    """Record the access token by jti and the refresh token by hash, with one audit event.

    One write transaction, committed before the response leaves: the client assertion's
    ``jti`` when the view deferred it, the grant (client credentials), the token rows, the
    patient's pairwise subject and the audit event.
    """
    issue = _current_issue()
    jti = issue.jti
    if jti is None:
        raise RuntimeError("save_token without a token from generate_token")
    client: OAuthClient = request.client
    session = _session()
    now = utcnow()
    user = request.user
    client_id = client.get_client_id()
    jkt = g.get("authz_dpop_jkt")
    subject = issue.subject or (pairwise_sub(user.id, client.institution_id) if user
                                else client_id)
    try:
        with write(session):
            claim_assertion(session, now)
            grant_id = issue.grant_id
            if grant_id is None:  # client credentials: the client is its own grant
                grant_id = f"grt_{secrets.token_hex(8)}"
                store.insert_grant(session, grant_id=grant_id, client_id=client_id,
                                   scope=token["scope"], resource=issue.audience, now=now)
            store.insert_access_token(
                session, jti=jti, grant_id=grant_id, client_id=client_id,
                subject=subject, scope=token["scope"], audience=issue.audience, dpop_jkt=jkt,
                issued_at=now, expires_at=now + timedelta(seconds=ACCESS_TOKEN_LIFETIME))
            if "refresh_token" in token:
                store.insert_refresh_token(session, {
                    "token_hash": token_hash(token["refresh_token"]), "grant_id": grant_id,
                    "client_id": client_id, "generation": issue.refresh_generation + 1,
                    "scope": token["scope"], "dpop_jkt": jkt, "issued_at": now,
                    "expires_at": now + REFRESH_LIFETIME})
            if user is not None:
                # The consent engine resolves the pairwise sub an institution sends back.
                store.remember_pairwise(session, client.institution_id, subject, user.id, now)
            audit.record(session, audit.Event(
                type="oauth.token_issued", actor=f"client:{client_id}",
                client=client_id, institution=client.institution_id,
                patient=user.id if user else None,
                detail={"grant_type": request.payload.grant_type or "", "grant": grant_id,
                        "scope": token["scope"], "jti": jti,
                        "refresh": int("refresh_token" in token)}), now=now)
    except AssertionReplayed:
        assertion_claimed()  # seen before: nothing to record
        _audit_failure("oauth.client_authentication", client, "jti_replayed")
        raise InvalidClientError(description=CLIENT_AUTH_FAILED) from None
    assertion_claimed()


# -- grants -------------------------------------------------------------------------------------

class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only, required at the authorization step for every client."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge (PKCE, S256) is required",
                                      redirect_uri=redirect_uri)
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256",
                                      redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")  # for every client
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: Any) -> str:
        return str(authorization_code.row.code_challenge)

    def get_authorization_code_challenge_method(self, authorization_code: Any) -> str:
        return str(authorization_code.row.code_challenge_method)


class CodeRecord:
    """An authorization code row as Authlib's AuthorizationCodeMixin."""

    def __init__(self, row: AuthorizationCode, grant: Grant) -> None:
        self.row, self.grant = row, grant

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int | None:
        return int(self.grant.auth_time.timestamp()) if self.grant.auth_time else None

    def get_acr(self) -> str | None:
        return self.grant.acr

    def get_amr(self) -> list[str] | None:
        return list(self.grant.amr) if self.grant.amr else None


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "none"]
    _authz_code: CodeRecord | None = None  # the code this token request names, once found

    def save_authorization_code(self, code: str, request: Any) -> None:
        session = _session()
        grant_id = getattr(request, "authz_grant_id", None)
        if grant_id is None:
            raise InvalidRequestError("no approved grant for this authorization")
        data = request.payload.data
        session.add(AuthorizationCode(
            code_hash=token_hash(code), grant_id=grant_id, client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=getattr(request, "authz_scope", None) or request.payload.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"], code_challenge_method="S256",
            dpop_jkt=getattr(request, "authz_dpop_jkt", None),
            expires_at=utcnow() + CODE_LIFETIME))
        # committed together with the grant by the authorization view's write()

    def generate_authorization_code(self) -> str:
        return CODE_PREFIX + secrets.token_urlsafe(32)

    def query_authorization_code(self, code: str, client: OAuthClient) -> CodeRecord | None:
        session = _session()
        now = utcnow()
        with write(session):
            row = session.get(AuthorizationCode, token_hash(code))
            if row is None or row.client_id != client.get_client_id():
                return None
            grant = session.get(Grant, row.grant_id)
            if grant is None or grant.revoked_at is not None:
                return None
            if row.used_at is not None:
                # RFC 6749 §4.1.2 / RFC 9700 §4.5: a replayed code revokes what it issued.
                revoke_grant(session, grant, "code_replayed", now)
                return None
            if row.expires_at <= now or row.failed_attempts >= MAX_FAILED_EXCHANGES:
                return None
            # Not consumed yet: validate_token_request consumes it once every check passed,
            # so a failed exchange is no "use" (docs/decisions.md, failed code exchange).
        self._authz_code = CodeRecord(row, grant)
        issue = _current_issue()
        issue.grant_id, issue.granted_resources = grant.id, list(grant.resource or [_issuer()])
        issue.details = grant.authorization_details
        issue.auth = {"auth_time": int(grant.auth_time.timestamp()) if grant.auth_time else None,
                      "acr": grant.acr}
        return self._authz_code

    def validate_token_request(self) -> None:
        """Authlib's checks (redirect URI, PKCE), then the DPoP key of RFC 9449 §10; the code
        is consumed only when all of them passed, and each failure is counted and audited."""
        self._authz_code = None
        try:
            super().validate_token_request()
            record: CodeRecord = self.request.authorization_code
            if record.row.dpop_jkt is not None and \
                    record.row.dpop_jkt != g.get("authz_dpop_jkt"):
                raise InvalidGrantError("the DPoP proof key does not match dpop_jkt")
        except OAuth2Error as error:
            if self._authz_code is not None:
                _failed_exchange(self._authz_code, error)
            raise
        _consume(self.request.authorization_code)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        pass  # consumed in query_authorization_code, kept (hash only) to detect replays

    def authenticate_user(self, authorization_code: CodeRecord) -> Account | None:
        if authorization_code.grant.account_id is None:
            return None
        return _session().get(Account, authorization_code.grant.account_id)


def _failed_exchange(record: CodeRecord, error: OAuth2Error) -> None:
    """Count a failed exchange of a real code (the code dies after a few) and audit it."""
    session = _session()
    code_hash, client_id = record.row.code_hash, record.row.client_id
    grant_id, patient = record.grant.id, record.grant.account_id
    with write(session):
        attempts = session.execute(
            update(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash)
            .values(failed_attempts=AuthorizationCode.failed_attempts + 1)
            .returning(AuthorizationCode.failed_attempts)
            .execution_options(synchronize_session=False)).scalar_one_or_none()
        audit.record(session, audit.Event(
            type="oauth.code_exchange", actor=f"client:{client_id}", outcome="failure",
            reason=str(error.error)[:64], client=client_id, patient=patient,
            detail={"grant": grant_id, "attempt": attempts or 0}))


def _consume(record: CodeRecord) -> None:
    """Single use (RFC 6749 §4.1.2): mark the code used, atomically; losing a concurrent
    exchange of the same code is a replay, and revokes the grant."""
    session = _session()
    now = utcnow()
    with write(session):
        consumed = session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == record.row.code_hash,
                   AuthorizationCode.used_at.is_(None))
            .values(used_at=now))
        if getattr(consumed, "rowcount", 0) != 1:
            grant = session.get(Grant, record.grant.id)
            if grant is not None:
                revoke_grant(session, grant, "code_replayed", now)
    if getattr(consumed, "rowcount", 0) != 1:
        raise InvalidGrantError("Invalid 'code' in request.")


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        session = _session()
        now = utcnow()
        with write(session):
            row = session.get(RefreshToken, token_hash(refresh_token))
            if row is None or row.client_id != self.request.client.get_client_id():
                return None
            grant = session.get(Grant, row.grant_id)
            if grant is None or grant.revoked_at is not None or row.revoked_at is not None \
                    or row.expires_at <= now:
                return None
            if row.dpop_jkt is not None and row.dpop_jkt != g.get("authz_dpop_jkt"):
                return None  # RFC 9449 §5: a bound refresh token needs a proof with its key
            requested = set((self.request.payload.scope or "").split())
            try:
                audiences(flask_request.form.getlist("resource"),
                          list(grant.resource or [_issuer()]))
                widened = not requested <= set(row.scope.split())
            except InvalidTargetError:
                widened = True
            if widened:
                # Refused next (invalid_scope by Authlib, invalid_target when the token is
                # generated); a refused refresh must not burn the token, so nothing is consumed.
                issue = _current_issue()
                issue.granted_resources = list(grant.resource or [_issuer()])
                return RefreshRecord(row, grant)
            consumed = session.execute(
                update(RefreshToken).where(RefreshToken.token_hash == row.token_hash,
                                           RefreshToken.superseded_at.is_(None))
                .values(superseded_at=now))
            if getattr(consumed, "rowcount", 0) != 1:
                session.refresh(row)
                if row.superseded_at is not None and now - row.superseded_at <= REFRESH_GRACE:
                    return None  # a concurrent refresh won the race: refuse, keep the family
                revoke_grant(session, grant, "refresh_token_reused", now)
                return None
        issue = _current_issue()
        issue.grant_id, issue.refresh_generation = grant.id, row.generation
        issue.granted_resources = list(grant.resource or [_issuer()])
        issue.details = grant.authorization_details
        issue.auth = {"auth_time": int(grant.auth_time.timestamp()) if grant.auth_time else None,
                      "acr": grant.acr}
        return RefreshRecord(row, grant)

    def authenticate_user(self, refresh_token: RefreshRecord) -> Account | None:
        if refresh_token.grant.account_id is None:
            return None
        return _session().get(Account, refresh_token.grant.account_id)

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        pass  # superseded atomically in authenticate_refresh_token


class RefreshRecord:
    def __init__(self, row: RefreshToken, grant: Grant) -> None:
        self.row, self.grant = row, grant

    def get_scope(self) -> str:
        return self.row.scope

    def check_client(self, client: OAuthClient) -> bool:
        return self.row.client_id == client.get_client_id()

    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None


class SystemGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]


# -- OpenID Connect -----------------------------------------------------------------------------

class IdToken(OpenIDCode):  # type: ignore[misc]
    """ID tokens: ES256 only, pairwise ``sub`` per institution, nonce required."""

    def __init__(self) -> None:
        super().__init__(require_nonce=True)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        found = _session().execute(
            select(AuthorizationCode.code_hash).where(
                AuthorizationCode.client_id == request.payload.client_id,
                AuthorizationCode.nonce == nonce)).first()
        return found is not None

    def get_client_algorithm(self, client: Any) -> str:
        return "ES256"  # whatever the client asks for, `none` above all

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        client: OAuthClient = request.client
        now = int(utcnow().timestamp())
        code: CodeRecord | None = request.authorization_code
        claims: dict[str, Any] = {
            "iss": _issuer(), "aud": client.get_client_id(), "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "sub": pairwise_sub(request.user.id, client.institution_id),
        }
        if code is not None:
            claims.update({k: v for k, v in {
                "nonce": code.get_nonce(), "auth_time": code.get_auth_time(),
                "acr": code.get_acr(), "amr": code.get_amr()}.items() if v is not None})
        if code is not None and code.grant.claims_request is not None:
            claims.update(_requested_id_token_claims(code, request.user))
        half = create_half_hash(token["access_token"], "ES256")
        if half is not None:
            claims["at_hash"] = half.decode()
        return signing.sign(_session(), _kek(), claims, "JWT")


def _requested_id_token_claims(code: CodeRecord, user: Account) -> dict[str, Any]:
    """OIDC Core §5.5: the person's claims the ``claims`` request asks for in the ID token."""
    from authz.oauth.userinfo import released_claims

    request = (code.grant.claims_request or {}).get("id_token")
    if not isinstance(request, dict):
        return {}
    issuer = _issuer()
    framework = current_app.config["AUTHZ_JPKI_TRUST_FRAMEWORK"] or \
        f"{issuer}/trust-frameworks/jpki-sim"
    return released_claims(_session(), user, IdentityKeys.from_kek(_kek()),
                           scopes=code.get_scope().split(), request=request,
                           trust_framework=framework)


class Issuer(IssuerParameter):  # type: ignore[misc]
    def get_issuer(self) -> str:
        return _issuer()


def init_oauth(app: Flask) -> None:
    """Wire the authorization server; the only place grants and endpoints are registered."""
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {
        "authorization_code": ACCESS_TOKEN_LIFETIME, "refresh_token": ACCESS_TOKEN_LIFETIME,
        "client_credentials": ACCESS_TOKEN_LIFETIME})
    auth_server.init_app(app, query_client=query_client, save_token=save_token)
    auth_server.register_token_generator("default", generate_token)  # init_app resets it
    if not getattr(auth_server, "_authz_wired", False):
        # The server object is process-wide (like every extension); what hangs off it is
        # registered once, not once per app (tests build many apps).
        auth_server.register_client_auth_method("private_key_jwt", authenticate_private_key_jwt)
        auth_server.register_grant(CodeGrant, [S256Challenge(required=True), IdToken()])
        auth_server.register_grant(RefreshGrant)
        auth_server.register_grant(SystemGrant)
        auth_server.register_extension(Issuer())
        auth_server._authz_wired = True
    app.teardown_request(_forget_issue)


def _forget_issue(_error: BaseException | None) -> None:
    _issue.set(None)
