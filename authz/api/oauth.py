"""OAuth 2.0 / OIDC endpoints that clients call directly: discovery and the token endpoint."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2.signals import client_authenticated
from authlib.oauth2 import OAuth2Error
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from werkzeug.datastructures import MultiDict

from authz import audit
from authz.api.context import request_id
from authz.database import utcnow
from authz.database import write
from authz.extensions import db
from authz.extensions import limiter
from authz.identity.crypto import IdentityKeys
from authz.oauth import dpop
from authz.oauth import inspection
from authz.oauth import par
from authz.oauth import rar
from authz.oauth.server import assertion_claimed
from authz.oauth.server import auth_server
from authz.oauth.server import check_resources
from authz.oauth.server import claim_assertion
from authz.oauth.server import is_echo_failure
from authz.oauth.server import one_transaction_assertion
from authz.registry.rules import SCOPES

bp = Blueprint("oauth", __name__)
ACR_VALUES = ["urn:mdx:acr:jpki-auth", "urn:mdx:acr:jpki-auth-phone"]
VERIFIED_CLAIMS = ["name", "family_name", "given_name", "birthdate", "gender", "address"]


class DPoPProofRequired(OAuth2Error):  # type: ignore[misc]
    """RFC 9449 §5.2: a ``dpop_bound_access_tokens`` client asked for tokens without a proof."""

    error = "invalid_dpop_proof"


def _require_dpop_for_bound_clients(_sender: Any, client: Any = None, **_kw: Any) -> None:
    """Token endpoint, once the client is authenticated: its per-client DPoP requirement."""
    if client is not None and client.row.dpop_bound and not g.get("authz_dpop_jkt"):
        raise DPoPProofRequired("this client gets tokens only with a DPoP proof (RFC 9449)")


client_authenticated.connect(_require_dpop_for_bound_clients)


def _nonce_secret() -> bytes | None:
    """The key of the stateless DPoP server nonces (RFC 9449 §8), None when they are off.

    Derived inside :func:`dpop.new_nonce` from the key-encryption key, which every instance
    shares, so a nonce one instance gave out is good at all of them.
    """
    config = current_app.config
    return bytes(config["AUTHZ_KEK_BYTES"]) if config["AUTHZ_DPOP_NONCE"] else None


def _checked_proof(proofs: list[str], *, method: str, url: str,
                   access_token: str | None = None) -> dpop.DPoPProof:
    """One DPoP proof for this request: verified, with a current server nonce, remembered.

    :raise dpop.DPoPError: ``invalid_dpop_proof`` or ``use_dpop_nonce``.
    """
    if len(proofs) != 1:
        raise dpop.DPoPError(dpop.INVALID_DPOP_PROOF, "exactly one DPoP proof is needed")
    now = utcnow()
    proof = dpop.verify_proof(proofs[0], method=method, url=url, now=now,
                              access_token=access_token)
    secret = _nonce_secret()
    if secret is not None:
        dpop.require_server_nonce(proof, secret, now)
    session = db.session()
    with write(session):
        dpop.remember_proof(session, proof, now)
    return proof


def _give_nonce(response: Response) -> Response:
    """RFC 9449 §8.2: a fresh nonce with every answer to a DPoP request, error or not."""
    secret = _nonce_secret()
    if secret is not None:
        response.headers["DPoP-Nonce"] = dpop.new_nonce(secret, utcnow())
    return response


def _client_key() -> str:
    """Rate-limit key: the client the request names (before authentication), else the address."""
    return f"client:{request.form.get('client_id') or request.remote_addr}"


def metadata() -> dict[str, Any]:
    """RFC 8414 and OpenID Connect Discovery 1.0 metadata, plus OIDC4IDA fields."""
    issuer = current_app.config["AUTHZ_ISSUER"]
    framework = (current_app.config["AUTHZ_JPKI_TRUST_FRAMEWORK"]
                 or f"{issuer}/trust-frameworks/jpki-sim")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "pushed_authorization_request_endpoint": f"{issuer}/oauth/par",
        "require_pushed_authorization_requests": bool(
            current_app.config["AUTHZ_REQUIRE_PAR"]),
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        # RFC 7591: needs an initial access token from the operator
        "registration_endpoint": f"{issuer}/oauth/register",
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "jwks_uri": f"{issuer}/jwks.json",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "dpop_signing_alg_values_supported": ["ES256"],
        "authorization_details_types_supported": ["health_record_access"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "acr_values_supported": ACR_VALUES,
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr",
                             "amr", "verified_claims", *VERIFIED_CLAIMS],
        "ui_locales_supported": ["ja", "en"],
        "trust_frameworks_supported": [framework],
        "evidence_supported": ["electronic_signature"],
        "claims_in_verified_claims_supported": VERIFIED_CLAIMS,
        "service_documentation": f"{issuer}/openapi.json",
    }


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    response = jsonify(metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata() -> Response:
    response = jsonify(metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _authenticated(methods: list[str], endpoint: str) -> tuple[Any, Any]:
    """(client, None) or (None, the RFC 6749 error response)."""
    oauth_request = auth_server.create_oauth2_request(None)
    try:
        return auth_server.authenticate_client(oauth_request, methods, endpoint), None
    except OAuth2Error as error:
        return None, auth_server.handle_error_response(oauth_request, error)


def _oauth_error(status: int, error: str, description: str) -> tuple[Response, int]:
    response = jsonify(error=error, error_description=description)
    response.headers["Cache-Control"] = "no-store"
    return response, status


@bp.post("/oauth/introspect")
@limiter.limit("600 per minute", key_func=_client_key)
@one_transaction_assertion()
def introspect() -> Any:
    """RFC 7662 for resource servers: a token is active only for its own audience.

    One write transaction: the caller's assertion ``jti`` and the audit event.
    """
    client, failed = _authenticated(["private_key_jwt"], "introspection")
    if failed is not None:
        return failed
    if "introspect" not in client.row.scopes or not client.row.resource_uri:
        session = db.session()
        with write(session):
            audit.record(session, audit.Event(
                type="oauth.introspection", actor=f"client:{client.get_client_id()}",
                outcome="failure", reason="insufficient_scope", client=client.get_client_id(),
                institution=client.institution_id, request_id=request_id()))
        return _oauth_error(403, "insufficient_scope",
                            "introspection needs a resource server with the introspect scope")
    token = request.form.get("token", "")
    if not token:
        return _oauth_error(400, "invalid_request", "token is required")
    now = utcnow()
    body = inspection.introspect(
        db.session(), token, resource=client.row.resource_uri, issuer=_issuer(),
        caller=client.get_client_id(), institution=client.institution_id, now=now,
        request_id=request_id(), claim=lambda session: claim_assertion(session, now))
    assertion_claimed()
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/oauth/par")
@limiter.limit("60 per minute", key_func=_client_key)
def pushed_authorization_request() -> Any:
    """RFC 9126 §2: validate the authorization request now, hand back a ``request_uri``."""
    client, failed = _authenticated(["private_key_jwt", "none"], "par")
    if failed is not None:
        return failed
    form = request.form
    if "request_uri" in form:
        return _oauth_error(400, "invalid_request", "request_uri is not allowed here")
    if "request" in form:
        return _oauth_error(400, "request_not_supported", "request objects are not supported")
    if form.get("client_id", client.get_client_id()) != client.get_client_id():
        return _oauth_error(400, "invalid_request", "client_id does not match the client")
    repeated = [k for k in form if len(form.getlist(k)) > 1 and k != "resource"]
    if repeated or len(form) > par.MAX_PARAMS or any(
            len(v) > par.MAX_VALUE for v in form.values()):
        return _oauth_error(400, "invalid_request", "repeated or oversized parameters")
    params = MultiDict([(k, v) for k, v in form.items(multi=True)
                        if k not in ("client_assertion", "client_assertion_type")])
    params["client_id"] = client.get_client_id()
    proofs = request.headers.getlist("DPoP")
    if proofs:
        # RFC 9449 §10.1: a proof at PAR binds the code to its key, like dpop_jkt does.
        try:
            proof = _checked_proof(proofs, method="POST", url=f"{_issuer()}/oauth/par")
        except dpop.DPoPError as error:
            return _give_nonce(_oauth_error(400, error.error, error.description)[0]), 400
        if params.get("dpop_jkt", proof.jkt) != proof.jkt:
            return _give_nonce(_oauth_error(
                400, "invalid_dpop_proof", "dpop_jkt does not match the DPoP proof key")[0]), 400
        params["dpop_jkt"] = proof.jkt
    if "dpop_jkt" in params and not dpop.is_thumbprint(params["dpop_jkt"]):
        return _oauth_error(400, "invalid_request", "dpop_jkt must be a SHA-256 JWK thumbprint")
    checked = MultiDict([(k, v) for k, v in params.items(multi=True) if k != "prompt"])
    g.authz_pushed_params = checked
    try:
        auth_server.get_consent_grant(end_user=None)
        check_resources(params.getlist("resource"))
        rar.parse(params.get("authorization_details"), institution=client.institution_id)
    except rar.InvalidDetails as invalid:
        return _oauth_error(400, "invalid_authorization_details", str(invalid))
    except OAuth2Error as error:
        return _oauth_error(400, error.error, error.description or error.error)
    except ValueError as error:
        if not is_echo_failure(error):
            raise
        return _oauth_error(400, "invalid_request", "malformed parameter")
    finally:
        g.pop("authz_pushed_params", None)
    request_uri = par.push(db.session(), client.get_client_id(), params.items(multi=True),
                           utcnow())
    response = jsonify(request_uri=request_uri, expires_in=int(par.LIFETIME.total_seconds()))
    response.headers["Cache-Control"] = "no-store"
    if proofs:
        _give_nonce(response)
    return response, 201


@bp.post("/oauth/revoke")
@limiter.limit("60 per minute", key_func=_client_key)
def revoke() -> Any:
    """RFC 7009: 200 for every authenticated request, known token or not (§2.2)."""
    client, failed = _authenticated(["private_key_jwt", "none"], "revocation")
    if failed is not None:
        return failed
    token = request.form.get("token", "")
    if not token:
        return _oauth_error(400, "invalid_request", "token is required")
    inspection.revoke(db.session(), token, client_id=client.get_client_id(), issuer=_issuer(),
                      now=utcnow(), request_id=request_id())
    response = Response("", status=200)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@limiter.limit("120 per minute")
def userinfo_endpoint() -> Any:
    """OIDC Core §5.3 with a Bearer access token (RFC 6750 §2.1 header only)."""
    from authz.oauth import userinfo

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "dpop") or not token:
        return _bearer_challenge(None, "a Bearer or DPoP access token is required")
    config = current_app.config
    now = utcnow()
    presented_jkt = None
    if scheme.lower() == "dpop":
        try:
            # RFC 9449 §9: UserInfo is a resource; it demands its nonce like the token endpoint
            proof = _checked_proof(request.headers.getlist("DPoP"), method=request.method,
                                   url=f"{_issuer()}/oauth/userinfo", access_token=token)
        except dpop.DPoPError as error:
            response, status = _bearer_challenge(error.error, error.description)
            return _give_nonce(response), status
        presented_jkt = proof.jkt
    keys = IdentityKeys.from_kek(config["AUTHZ_KEK_BYTES"])
    try:
        body = userinfo.userinfo(
            db.session(), token, issuer=_issuer(), keys=keys,
            trust_framework=config["AUTHZ_JPKI_TRUST_FRAMEWORK"]
            or f"{_issuer()}/trust-frameworks/jpki-sim", now=now,
            presented_jkt=presented_jkt)
    except userinfo.TokenRejected:
        rejected, status = _bearer_challenge("invalid_token", "the access token is not valid here")
        return (_give_nonce(rejected) if presented_jkt else rejected), status
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return _give_nonce(response) if presented_jkt else response


def _bearer_challenge(error: str | None, description: str) -> tuple[Response, int]:
    """RFC 6750 §3: 401 with a challenge; no error code when no token was sent (§3.1)."""
    response = jsonify(error=error or "invalid_request", error_description=description)
    # RFC 9449 §7.1: both schemes are offered; ES256 is the only DPoP algorithm.
    challenge = f'error="{error}"' if error else ""
    response.headers["WWW-Authenticate"] = ", ".join(
        f"{scheme} {challenge}".strip() + (' algs="ES256"' if scheme == "DPoP" else "")
        for scheme in ("Bearer", "DPoP"))
    response.headers["Cache-Control"] = "no-store"
    return response, 401


def _issuer() -> str:
    return str(current_app.config["AUTHZ_ISSUER"])


@bp.post("/oauth/token")
@limiter.limit("60 per minute", key_func=_client_key)
@one_transaction_assertion(lambda: request.form.get("grant_type") == "client_credentials")
def token() -> Any:
    """RFC 6749 §3.2; errors are RFC 6749 §5.2 bodies from Authlib.

    Client credentials: the assertion ``jti`` is recorded in the write transaction that
    records the token (``save_token``); the other grants write before that (the code or
    refresh token is consumed), so their ``jti`` is recorded first, on its own.
    """
    if any(len(request.form.getlist(k)) > 1 for k in request.form if k != "resource"):
        return _oauth_error(400, "invalid_request", "parameters must not repeat (RFC 6749 §3.2)")
    proofs = request.headers.getlist("DPoP")
    if proofs:
        try:
            # RFC 9449 §4.3: htu is our own token endpoint URL, never the Host header's.
            proof = _checked_proof(proofs, method="POST", url=f"{_issuer()}/oauth/token")
        except dpop.DPoPError as error:
            return _give_nonce(_oauth_error(400, error.error, error.description)[0]), 400
        g.authz_dpop_jkt = proof.jkt
    response: Response = auth_server.create_token_response()
    return _give_nonce(response) if proofs else response
