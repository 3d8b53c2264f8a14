"""The OpenAPI 3.1 description of the JSON API, served at ``/openapi.json``.

``tests/api/test_openapi.py`` keeps it true: the document validates against the OpenAPI 3.1
meta-schema, every route of a blueprint in ``authz.api.JSON_BLUEPRINTS`` is documented with each
of its methods and every documented operation exists, and schemathesis fuzzes every operation
against the WSGI app (no 500s; status codes, media types, headers and bodies as documented).

Each capability adds its paths to ``PATHS`` and its blueprint to ``JSON_BLUEPRINTS``; nothing else
is needed for its operations to join the fuzzing. Document every status an operation can answer
with (``_problem`` for errors). Operations that need a token will declare a ``security``
requirement here and, once OAuth exists, the fuzz test will get tokens from fixtures (a
schemathesis auth provider) so that the authenticated paths are exercised, not only their 401s.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import json

bp = Blueprint("openapi", __name__)

# Every response carries it (``authz.api._after``), errors included.
REQUEST_ID_HEADER = {"X-Request-ID": {
    "required": True, "schema": {"type": "string", "minLength": 1},
    "description": "Echoes a well-formed incoming X-Request-ID, otherwise a new id."}}
RETRY_AFTER_HEADER = {"Retry-After": {
    "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "description": "Seconds to wait before trying again."}}


def _ok(schema: dict[str, Any], media: str = "application/json",
        description: str = "OK") -> dict[str, Any]:
    return {"description": description, "headers": REQUEST_ID_HEADER,
            "content": {media: {"schema": schema}}}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An RFC 9457 problem response."""
    return {"description": description, "headers": {**REQUEST_ID_HEADER, **(headers or {})},
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}}


TIMESTAMP = {"type": "string", "format": "date-time"}
OPTIONAL_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
JWK = {"type": "object", "required": ["kty", "kid"], "properties": {
    "kty": {"type": "string"}, "crv": {"type": "string"}, "x": {"type": "string"},
    "y": {"type": "string"}, "kid": {"type": "string"}, "use": {"type": "string"},
    "alg": {"type": "string"}}}
HISTORY_ENTRY = {"type": "object", "required": [
    "kid", "alg", "state", "created_at", "activated_at", "retiring_at", "retired_at",
    "public_jwk"], "properties": {
    "kid": {"type": "string"},
    "alg": {"type": "string"},
    "state": {"enum": ["next", "active", "retiring", "retired"]},
    "created_at": TIMESTAMP,
    "activated_at": OPTIONAL_TIMESTAMP,
    "retiring_at": OPTIONAL_TIMESTAMP,
    "retired_at": OPTIONAL_TIMESTAMP,
    "public_jwk": {"$ref": "#/components/schemas/JWK"}}}

PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "operationId": "healthz", "summary": "Liveness", "tags": ["operations"],
        "responses": {"200": _ok({"type": "object", "required": ["status"],
                                  "properties": {"status": {"const": "ok"}}})}}},
    "/readyz": {"get": {
        "operationId": "readyz", "summary": "Readiness: the database answers",
        "tags": ["operations"],
        "responses": {"200": _ok({"type": "object", "required": ["status"],
                                  "properties": {"status": {"const": "ready"}}}),
                      "503": _problem("The database is not reachable", RETRY_AFTER_HEADER)}}},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["operations"],
        "responses": {"200": _ok({"type": "object", "required": ["openapi", "info", "paths"]})}}},
    "/jwks.json": {"get": {
        "operationId": "jwks", "summary": "Public keys that can verify live tokens",
        "tags": ["keys"],
        "responses": {"200": _ok({"type": "object", "required": ["keys"], "properties": {
            "keys": {"type": "array", "items": {"$ref": "#/components/schemas/JWK"}}}},
            media="application/jwk-set+json")}}},
    "/jwks/history.json": {"get": {
        "operationId": "keyHistory", "summary": "Every signing key, retired ones included",
        "tags": ["keys"],
        "responses": {"200": _ok({"type": "object", "required": ["keys"], "properties": {
            "keys": {"type": "array",
                     "items": {"$ref": "#/components/schemas/KeyHistoryEntry"}}}})}}},
}

TXN_ID = {"name": "txn_id", "in": "path", "required": True, "schema": {"type": "string"}}
CODE = {"name": "code", "in": "query", "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{6}$"},
        "description": "The short code from the card link."}
CARD_ERRORS = {
    "400": _problem("Malformed request, or a card response that was refused (generic message;"
                    " the reason is in the audit log)"),
    "404": _problem("No such transaction, or a wrong code"),
    "410": _problem("The transaction is expired, used or closed"),
    "429": _problem("Too many requests for this transaction"),
    "503": _problem("Card login is not configured"),
}
PATHS.update({
    "/jpki/transactions": {"post": {
        "operationId": "createCardTransaction", "tags": ["identity"],
        "summary": "Start a card login for this browser session (same-origin only)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"purpose": {"enum": ["login", "proofing"]}}}}}},
        "responses": {
            "201": _ok({"type": "object", "required": ["id", "link", "short_code", "expires_at"],
                        "properties": {"id": {"type": "string"},
                                       "link": {"type": "string", "format": "uri"},
                                       "short_code": {"type": "string"},
                                       "expires_at": TIMESTAMP}}, description="Created"),
            "400": _problem("Not a JSON object, or an unknown purpose"),
            "403": _problem("A cross-origin request"),
            "429": _problem("Too many transactions from this client"),
            "503": _problem("Card login is not configured")}}},
    "/jpki/transactions/{txn_id}": {"get": {
        "operationId": "cardTransactionStatus", "tags": ["identity"],
        "summary": "Status of this browser's transaction", "parameters": [TXN_ID],
        "responses": {
            "200": _ok({"type": "object", "required": ["id", "status", "step", "expires_at"],
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"enum": ["pending", "accepted", "rejected", "expired"]},
                            "step": {"enum": ["login", "proofing"]},
                            "expires_at": TIMESTAMP}}),
            "404": _problem("No such transaction for this browser session")}}},
    "/jpki/transactions/{txn_id}/card": {
        "get": {
            "operationId": "cardTransactionView", "tags": ["identity"],
            "summary": "What the card app shows and signs", "parameters": [TXN_ID, CODE],
            "responses": {"200": _ok({"type": "object", "required": [
                "service", "audience", "transaction", "short_code", "step", "tbs",
                "expires_at"], "properties": {
                "service": {"type": "string"}, "audience": {"type": "string"},
                "transaction": {"type": "string"}, "short_code": {"type": "string"},
                "step": {"enum": ["login", "proofing"]}, "tbs": {"type": "string"},
                "expires_at": TIMESTAMP}}),
                **{k: v for k, v in CARD_ERRORS.items() if k != "503"}}},
        "post": {
            "operationId": "cardTransactionRespond", "tags": ["identity"],
            "summary": "The card's signed answer to the current step",
            "parameters": [TXN_ID, CODE],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [
                    {"type": "object", "required": ["cert", "signature", "tbs", "token"],
                     "properties": {"cert": {"type": "string"}, "signature": {"type": "string"},
                                    "tbs": {"type": "string"},
                                    "token": {"enum": ["JPKIAPICCTOKEN", "JPKIAPGPSETOKEN"]},
                                    "uv": {"enum": ["pin", "face", "fpt"]}}},
                    {"type": "object", "required": ["decline"],
                     "properties": {"decline": {"const": "no_signature_certificate"}}}]}}}},
            "responses": {"200": _ok({"type": "object", "required": ["status"], "properties": {
                "status": {"enum": ["accepted", "proofing_required"]},
                "step": {"const": "proofing"}, "tbs": {"type": "string"}}}),
                **CARD_ERRORS}}},
})


OAUTH_ERROR = {"description": "RFC 6749 §5.2 error", "headers": REQUEST_ID_HEADER,
               "content": {"application/json": {"schema": {
                   "$ref": "#/components/schemas/OAuthError"}}}}
METADATA = _ok({"type": "object", "required": [
    "issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
    "response_types_supported", "subject_types_supported",
    "id_token_signing_alg_values_supported"]})
PATHS.update({
    "/.well-known/openid-configuration": {"get": {
        "operationId": "openidConfiguration", "tags": ["oauth"],
        "summary": "OpenID Connect Discovery 1.0 metadata", "responses": {"200": METADATA}}},
    "/.well-known/oauth-authorization-server": {"get": {
        "operationId": "authorizationServerMetadata", "tags": ["oauth"],
        "summary": "RFC 8414 metadata", "responses": {"200": METADATA}}},
    "/oauth/userinfo": {method: {
        "operationId": f"userinfo_{method}", "tags": ["oauth"],
        "summary": "OIDC UserInfo: pairwise sub; verified_claims with the profile scope",
        "security": [{"bearer": []}],
        "responses": {
            "200": _ok({"type": "object", "required": ["sub"], "properties": {
                "sub": {"type": "string"}, "verified_claims": {"type": "object"}}}),
            "400": OAUTH_ERROR, "401": OAUTH_ERROR,
            "429": _problem("Too many requests")}} for method in ("get", "post")},
    "/oauth/par": {"post": {
        "operationId": "pushedAuthorizationRequest", "tags": ["oauth"],
        "summary": "RFC 9126: push an authorization request, get a request_uri",
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["response_type", "client_id"], "properties": {
                    "response_type": {"const": "code"}, "client_id": {"type": "string"},
                    "redirect_uri": {"type": "string"}, "scope": {"type": "string"},
                    "state": {"type": "string"}, "nonce": {"type": "string"},
                    "code_challenge": {"type": "string"},
                    "code_challenge_method": {"const": "S256"},
                    "resource": {"type": "string"},
                    "client_assertion_type": {"type": "string"},
                    "client_assertion": {"type": "string"}}}}}},
        "responses": {
            "201": _ok({"type": "object", "required": ["request_uri", "expires_in"],
                        "properties": {"request_uri": {"type": "string"},
                                       "expires_in": {"type": "integer"}}},
                       description="Created"),
            "400": OAUTH_ERROR, "401": OAUTH_ERROR,
            "429": _problem("Too many requests from this client")}}},
    "/oauth/introspect": {"post": {
        "operationId": "introspect", "tags": ["oauth"],
        "summary": "RFC 7662 for resource servers (private_key_jwt, introspect scope)",
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["token"], "properties": {
                    "token": {"type": "string"}, "token_type_hint": {"type": "string"},
                    "client_assertion_type": {"type": "string"},
                    "client_assertion": {"type": "string"}}}}}},
        "responses": {
            "200": _ok({"type": "object", "required": ["active"], "properties": {
                "active": {"type": "boolean"}, "scope": {"type": "string"},
                "client_id": {"type": "string"}, "sub": {"type": "string"},
                "exp": {"type": "integer"}, "iat": {"type": "integer"},
                "jti": {"type": "string"}, "iss": {"type": "string"},
                "token_type": {"type": "string"}}}),
            "400": OAUTH_ERROR, "401": OAUTH_ERROR, "403": OAUTH_ERROR,
            "429": _problem("Too many requests from this client")}}},
    "/oauth/revoke": {"post": {
        "operationId": "revoke", "tags": ["oauth"],
        "summary": "RFC 7009: revoke a refresh token (its whole grant) or an access token",
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["token"], "properties": {
                    "token": {"type": "string"}, "token_type_hint": {"type": "string"},
                    "client_id": {"type": "string"},
                    "client_assertion_type": {"type": "string"},
                    "client_assertion": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "Revoked, or nothing to revoke",
                    "headers": REQUEST_ID_HEADER},
            "400": OAUTH_ERROR, "401": OAUTH_ERROR,
            "429": _problem("Too many requests from this client")}}},
    "/oauth/token": {"post": {
        "operationId": "token", "tags": ["oauth"],
        "summary": "Token endpoint: authorization_code (PKCE), refresh_token,"
                   " client_credentials; private_key_jwt or none",
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["grant_type"], "properties": {
                    "grant_type": {"enum": ["authorization_code", "refresh_token",
                                            "client_credentials"]},
                    "code": {"type": "string"},
                    "redirect_uri": {"type": "string"}, "code_verifier": {"type": "string"},
                    "refresh_token": {"type": "string"}, "scope": {"type": "string"},
                    "client_id": {"type": "string"},
                    "client_assertion_type": {"type": "string"},
                    "client_assertion": {"type": "string"}}}}}},
        "responses": {
            "200": _ok({"type": "object", "required": ["access_token", "token_type",
                                                       "expires_in"], "properties": {
                "access_token": {"type": "string"}, "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer", "maximum": 300},
                "refresh_token": {"type": "string"}, "id_token": {"type": "string"},
                "scope": {"type": "string"}}}),
            "400": OAUTH_ERROR, "401": OAUTH_ERROR,
            "429": _problem("Too many requests from this client")}}},
})


def document(issuer: str) -> dict[str, Any]:
    """The whole document, with ``issuer`` as its server."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "authz", "version": "1",
                 "description": "Consent and access-control authorization service."},
        "servers": [{"url": issuer}],
        "paths": PATHS,
        "components": {"securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}, "schemas": {
            "Problem": {"type": "object", "required": ["type", "title", "status", "request_id"],
                        "properties": {"type": {"type": "string", "format": "uri"},
                                       "title": {"type": "string"},
                                       "status": {"type": "integer"},
                                       "detail": {"type": "string"},
                                       "request_id": {"type": "string"}}},
            "JWK": JWK,
            "OAuthError": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "error_description": {"type": "string"},
                "error_uri": {"type": "string"}}},
            "KeyHistoryEntry": HISTORY_ENTRY,
        }},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the document."""
    body = json.dumps(document(current_app.config["AUTHZ_ISSUER"]))
    return Response(body, mimetype="application/json")
