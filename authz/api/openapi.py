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


# -- dynamic client registration (RFC 7591 / RFC 7592) --------------------------------------------
CLIENT_METADATA_PROPERTIES: dict[str, Any] = {
    "client_name": {"type": "string"}, "redirect_uris": {"type": "array", "items": {
        "type": "string"}},
    "token_endpoint_auth_method": {"enum": ["private_key_jwt", "none"]},
    "grant_types": {"type": "array", "items": {"enum": [
        "authorization_code", "refresh_token", "client_credentials"]}},
    "response_types": {"type": "array", "items": {"const": "code"}},
    "scope": {"type": "string"}, "jwks": {"type": "object"},
    "token_endpoint_auth_signing_alg": {"const": "ES256"},
    "require_pushed_authorization_requests": {"type": "boolean"},
    "dpop_bound_access_tokens": {"type": "boolean"},
    "resource_uri": {"type": "string"}}
CLIENT_METADATA = {"type": "object", "properties": CLIENT_METADATA_PROPERTIES}
REGISTERED = _ok({"type": "object", "required": [
    "client_id", "client_id_issued_at", "registration_access_token", "registration_client_uri",
    "client_name", "token_endpoint_auth_method", "redirect_uris", "grant_types",
    "response_types", "scope"], "properties": {
    **CLIENT_METADATA_PROPERTIES, "client_id": {"type": "string"},
    "client_id_issued_at": {"type": "integer"},
    "registration_access_token": {"type": "string"},
    "registration_client_uri": {"type": "string"}}})
BEARER_CHALLENGE = {**OAUTH_ERROR, "description": "RFC 6750 §3: no token, or a bad one",
                    "headers": {**REQUEST_ID_HEADER, "WWW-Authenticate": {
                        "required": True, "schema": {"type": "string", "minLength": 1},
                        "description": "RFC 6750 §3 Bearer challenge"}}}
METADATA_BODY = {"required": True, "content": {"application/json": {"schema": CLIENT_METADATA}}}
CLIENT_ID_PARAMETER = {"name": "client_id", "in": "path", "required": True,
                       "schema": {"type": "string"}}
REGISTRATION_ERRORS = {"400": {**OAUTH_ERROR, "description": "RFC 7591 §3.2.2 error"},
                       "401": BEARER_CHALLENGE, "429": _problem("Too many requests")}
PATHS.update({
    "/oauth/register": {"post": {
        "operationId": "registerClient", "tags": ["oauth"], "security": [{"bearer": []}],
        "summary": "RFC 7591: register a client of the institution of the initial access token",
        "requestBody": METADATA_BODY,
        "responses": {"201": {**REGISTERED, "description": "Registered"},
                      **REGISTRATION_ERRORS}}},
    "/oauth/register/{client_id}": {
        "get": {"operationId": "readClientRegistration", "tags": ["oauth"],
                "security": [{"bearer": []}], "parameters": [CLIENT_ID_PARAMETER],
                "summary": "RFC 7592: the registered metadata (registration access token)",
                "responses": {"200": REGISTERED, **REGISTRATION_ERRORS}},
        "put": {"operationId": "replaceClientRegistration", "tags": ["oauth"],
                "security": [{"bearer": []}], "parameters": [CLIENT_ID_PARAMETER],
                "summary": "RFC 7592: replace all of the client's metadata",
                "requestBody": METADATA_BODY,
                "responses": {"200": REGISTERED, **REGISTRATION_ERRORS}},
        "delete": {"operationId": "deleteClientRegistration", "tags": ["oauth"],
                   "security": [{"bearer": []}], "parameters": [CLIENT_ID_PARAMETER],
                   "summary": "RFC 7592: disable the client and revoke all it holds",
                   "responses": {"204": {"description": "Deregistered",
                                         "headers": REQUEST_ID_HEADER},
                                 **REGISTRATION_ERRORS}}},
})


# -- consent: the decision API and the patient API (DESIGN section 8) --------------------------
from authz.consent.service import ANY_PURPOSE  # noqa: E402 - kept with the block that uses it
from authz.consent.vocabulary import CATEGORIES  # noqa: E402
from authz.consent.vocabulary import PURPOSES  # noqa: E402
from authz.policy.decide import EMERGENCY_REASONS  # noqa: E402
from authz.policy.engine import PATIENT_ROLE  # noqa: E402
from authz.registry.rules import ROLES  # noqa: E402

# Every operation needs an access token: ``decisions`` for institutions, ``consents`` for a
# patient's own app. A NUL anywhere in the path or query is refused with 400 before routing
# (``authz.api._refuse_nul``), so every operation documents 400.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
WWW_AUTHENTICATE = {"WWW-Authenticate": {
    "required": True, "schema": {"type": "string", "minLength": 1},
    "description": "RFC 6750 §3 / RFC 9449 §7.1 challenge (Bearer and DPoP)."}}
SCOPE_CHALLENGE = {"WWW-Authenticate": {
    "required": False, "schema": {"type": "string"},
    "description": "Present when the token lacks a scope (RFC 6750 §3.1 insufficient_scope)."}}
TOKEN_ERRORS = {
    "400": _problem("Malformed request"),
    "401": _problem("No access token, or one that is invalid, expired, revoked, bound to"
                    " another key, or of a disabled client", WWW_AUTHENTICATE),
    "403": _problem("The token lacks the scope, or is not a patient's own token",
                    SCOPE_CHALLENGE),
}
CONSENT_ID = {"name": "consent_id", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": 64}}
CATEGORY_LIST = {"type": "array", "minItems": 1, "items": {"enum": list(CATEGORIES)}}
DECISION_REQUEST = {
    "type": "object", "required": ["patient", "categories", "action", "purpose", "role",
                                   "practitioner"],
    "additionalProperties": False, "properties": {
        "patient": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$",
                    "description": "The institution's pairwise sub for the patient"},
        "categories": CATEGORY_LIST, "action": {"const": "read"},
        "purpose": {"enum": list(PURPOSES)},
        "role": {"type": "string", "maxLength": 64, "examples": [*ROLES, PATIENT_ROLE],
                 "description": "A role the institution registered (patient: self view"
                                " through the patient's own token)"},
        "practitioner": {"type": "string", "pattern": "^[A-Za-z0-9._:@-]{1,64}$"},
        "reason": {"enum": list(EMERGENCY_REASONS),
                   "description": "Required with the emergency purpose, refused otherwise"}}}
DECISION = {
    "type": "object", "required": ["decision_id", "policy_version", "results"], "properties": {
        "decision_id": {"type": "string"}, "policy_version": {"type": "string"},
        "results": {"type": "array", "items": {
            "type": "object", "required": ["category", "decision", "reason", "rule",
                                           "consent_ids", "obligations"],
            "properties": {
                "category": {"type": "string"}, "decision": {"enum": ["permit", "deny"]},
                "reason": {"type": "string"}, "rule": {"type": "string"},
                "consent_ids": {"type": "array", "items": {"type": "string"}},
                "obligations": {"type": "object",
                                "additionalProperties": {"type": "integer"}},
                "explanation": {"type": "object", "description": "With ?explain=1: the matched"
                                " rule line, the consent state found, the mode, the consents",
                                "additionalProperties": {"type": "string"}}}}},
        "emergency_access": {"type": "object", "required": ["id", "expires_at"],
                             "properties": {"id": {"type": "string"},
                                            "expires_at": TIMESTAMP}}}}
CONSENT_VIEW: dict[str, Any] = {
    "type": "object", "required": ["id", "institution", "decision", "purpose", "categories",
                                   "status", "start", "end", "version", "method"],
    "properties": {
        "id": {"type": "string"},
        "institution": {"oneOf": [
            {"type": "null"},
            {"type": "object", "required": ["id", "name", "type"], "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "type": {"type": "string"}}}]},
        "decision": {"enum": ["permit", "deny"]}, "purpose": {"type": "string"},
        "categories": {"type": "array", "items": {"type": "string"}},
        "status": {"enum": ["active", "revoked", "expired"]},
        "start": TIMESTAMP, "end": OPTIONAL_TIMESTAMP,
        "version": {"type": "integer", "minimum": 1}, "method": {"type": "string"}}}
RECEIPT = {"type": "object", "required": ["consent_id", "version", "receipt"], "properties": {
    "consent_id": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
    "receipt": {"type": "string", "description": "Compact JWS (ES256) over the canonical"
                                                 " record of the version"},
    "verify_with": {"const": "/jwks/history.json"}}}


def _consent_change(operation_id: str, summary: str, body: dict[str, Any] | None,
                    extra: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id, "tags": ["consents"], "summary": summary,
        "security": BEARER, "parameters": [CONSENT_ID],
        "responses": {"200": _ok(CONSENT_VIEW, description="The new version"), **TOKEN_ERRORS,
                      "404": _problem("No such consent of this patient"), **extra}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": body}}}
    return operation


PATHS.update({
    "/v1/decisions": {"post": {
        "operationId": "decide", "tags": ["decisions"], "security": BEARER,
        "parameters": [{"name": "explain", "in": "query", "required": False,
                        "schema": {"type": "string", "maxLength": 8},
                        "description": "1 or true: add each result's explanation"}],
        "summary": "May this institution read these categories of this patient, for this"
                   " purpose? One request, or a batch {\"requests\": [...]}",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [DECISION_REQUEST, {
                "type": "object", "required": ["requests"], "additionalProperties": False,
                "properties": {"requests": {"type": "array", "minItems": 1, "maxItems": 50,
                                            "items": DECISION_REQUEST}}}]}}}},
        "responses": {
            "200": _ok({"oneOf": [DECISION, {
                "type": "object", "required": ["decisions"],
                "properties": {"decisions": {"type": "array", "items": DECISION}}}]}),
            **TOKEN_ERRORS,
            "403": _problem("The token lacks the decisions scope, or the role is not one the"
                            " institution registered", SCOPE_CHALLENGE),
            "404": _problem("The institution knows no patient by that id"),
            "429": _problem("Too many requests from this client")}}},
    "/v1/me/consents": {
        "get": {
            "operationId": "listMyConsents", "tags": ["consents"], "security": BEARER,
            "summary": "The patient's consents and deny directives",
            "responses": {"200": _ok({"type": "object", "required": ["consents"],
                                      "properties": {"consents": {"type": "array",
                                                                  "items": CONSENT_VIEW}}}),
                          **TOKEN_ERRORS}},
        "post": {
            "operationId": "grantConsent", "tags": ["consents"], "security": BEARER,
            "summary": "Grant a consent (or record a deny directive); needs a card login"
                       " within 10 minutes",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["categories"],
                "additionalProperties": False, "properties": {
                    "institution": {"type": "string"},
                    "purpose": {"enum": [*PURPOSES, ANY_PURPOSE],
                                "description": "A consentable purpose; a deny directive may"
                                               " name any purpose, or any (the default)"},
                    "categories": CATEGORY_LIST, "end": {"type": "string",
                                                         "format": "date-time"},
                    "decision": {"enum": ["permit", "deny"]}}}}}},
            "responses": {"201": _ok(CONSENT_VIEW, description="Granted"), **TOKEN_ERRORS,
                          "403": _problem("Not a patient's own token, a missing scope, or"
                                          " no card login within 10 minutes",
                                          SCOPE_CHALLENGE)}}},
    "/v1/me/consents/{consent_id}": {"get": {
        "operationId": "showMyConsent", "tags": ["consents"], "security": BEARER,
        "summary": "One consent with its version history", "parameters": [CONSENT_ID],
        "responses": {"200": _ok({**CONSENT_VIEW, "required": [*CONSENT_VIEW["required"],
                                                                "versions"],
                                  "properties": {**CONSENT_VIEW["properties"], "versions": {
                                      "type": "array", "items": {
                                          "type": "object",
                                          "required": ["version", "change", "recorded_at"],
                                          "properties": {
                                              "version": {"type": "integer"},
                                              "change": {"enum": ["grant", "narrow", "extend",
                                                                  "revoke"]},
                                              "recorded_at": TIMESTAMP}}}}}),
                      **TOKEN_ERRORS, "404": _problem("No such consent of this patient")}}},
    "/v1/me/consents/{consent_id}/revoke": {"post": _consent_change(
        "revokeConsent", "Revoke a consent; every decision after this call returns denies",
        None, {"409": _problem("Already revoked, or changed meanwhile")})},
    "/v1/me/consents/{consent_id}/narrow": {"post": _consent_change(
        "narrowConsent", "Keep a strict subset of the categories",
        {"type": "object", "required": ["categories"], "additionalProperties": False,
         "properties": {"categories": CATEGORY_LIST}},
        {"409": _problem("The consent is not active, or changed meanwhile")})},
    "/v1/me/consents/{consent_id}/extend": {"post": _consent_change(
        "extendConsent", "Move the end of the period later; needs a card login within 10"
                         " minutes",
        {"type": "object", "required": ["end"], "additionalProperties": False,
         "properties": {"end": {"type": "string", "format": "date-time"}}},
        {"403": _problem("Not a patient's own token, a missing scope, or no card login"
                         " within 10 minutes", SCOPE_CHALLENGE),
         "409": _problem("The consent is not active, or changed meanwhile")})},
    "/v1/me/consents/{consent_id}/receipt": {"get": {
        "operationId": "consentReceipt", "tags": ["consents"], "security": BEARER,
        "summary": "The signed receipt of the current (or ?version=N) version",
        "parameters": [CONSENT_ID, {"name": "version", "in": "query", "required": False,
                                    "schema": {"type": "string", "pattern": "^[0-9]{1,6}$"}}],
        "responses": {"200": _ok(RECEIPT), **TOKEN_ERRORS,
                      "404": _problem("No such consent of this patient, or no such version")}}},
    "/v1/me/consents/{consent_id}/fhir": {"get": {
        "operationId": "consentFhir", "tags": ["consents"], "security": BEARER,
        "summary": "The consent as an HL7 FHIR R4 Consent resource", "parameters": [CONSENT_ID],
        "responses": {"200": _ok({"type": "object", "required": ["resourceType", "status"],
                                  "properties": {"resourceType": {"const": "Consent"},
                                                 "status": {"enum": ["active", "inactive"]}}},
                                 media="application/fhir+json"),
                      **TOKEN_ERRORS, "404": _problem("No such consent of this patient")}}},
    "/v1/me/receipts": {"get": {
        "operationId": "myReceipts", "tags": ["consents"], "security": BEARER,
        "summary": "A receipt for the current version of every consent",
        "responses": {"200": _ok({"type": "object", "required": ["receipts", "verify_with"],
                                  "properties": {"receipts": {"type": "array",
                                                              "items": RECEIPT},
                                                 "verify_with": {"type": "string"}}}),
                      **TOKEN_ERRORS}}},
    "/v1/me/institutions": {"get": {
        "operationId": "myInstitutions", "tags": ["consents"], "security": BEARER,
        "summary": "Institutions holding my consents or tokens I approved",
        "responses": {"200": _ok({"type": "object", "required": ["institutions"],
                                  "properties": {"institutions": {"type": "array", "items": {
                                      "type": "object",
                                      "required": ["id", "name", "type", "active_consents",
                                                   "consents", "apps"],
                                      "properties": {
                                          "id": {"type": "string"},
                                          "name": {"type": "string"},
                                          "type": {"type": "string"},
                                          "active_consents": {"type": "integer"},
                                          "consents": {"type": "array",
                                                       "items": {"type": "string"}},
                                          "apps": {"type": "array",
                                                   "items": {"type": "string"}}}}}}}),
                      **TOKEN_ERRORS}}},
})


# -- audit: the auditor API and the patient's access history (DESIGN sections 6 and 8) ---------
# Auditor operations need an ``audit``-scoped token of a registered auditor; every read is
# itself audited.
HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
CHECKPOINT = {"type": "object", "required": ["tree_size", "root_hash", "head_hash", "time",
                                             "kid", "signature"], "properties": {
    "tree_size": {"type": "integer", "minimum": 1}, "root_hash": HEX32, "head_hash": HEX32,
    "time": TIMESTAMP, "kid": {"type": "string"},
    "signature": {"type": "string", "description": "Compact JWS (ES256, typ"
                  " authz-audit-checkpoint+jwt) over tree_size, root_hash, head_hash, time;"
                  " verify with /jwks/history.json"}}}
PROOF = {"type": "array", "items": HEX32}
AUDIT_ERRORS = {**TOKEN_ERRORS,
                "403": _problem("The token lacks the audit scope, or its holder is not a"
                                " registered, enabled auditor", SCOPE_CHALLENGE)}
AUDIT_EVENT = {"type": "object", "required": ["seq", "time", "type", "outcome", "actor",
                                              "hash"], "properties": {
    "seq": {"type": "integer"}, "time": TIMESTAMP, "type": {"type": "string"},
    "outcome": {"enum": ["success", "failure", "permit", "deny"]},
    "actor": {"type": "string"}, "institution": {"type": ["string", "null"]},
    "patient": {"type": ["string", "null"]}, "client": {"type": ["string", "null"]},
    "reason": {"type": ["string", "null"]}, "request_id": {"type": ["string", "null"]},
    "policy_version": {"type": ["string", "null"]}, "detail": {"type": "object"},
    "hash": HEX32}}
REVIEW = {"type": "object", "required": ["id", "patient", "institution", "practitioner",
                                         "reason", "started_at", "expires_at", "reviewed_at",
                                         "reviewer", "outcome"], "properties": {
    "id": {"type": "string"}, "patient": {"type": "string"},
    "institution": {"type": "string"}, "practitioner": {"type": "string"},
    "reason": {"type": "string"}, "started_at": TIMESTAMP, "expires_at": TIMESTAMP,
    "reviewed_at": OPTIONAL_TIMESTAMP, "reviewer": {"type": ["string", "null"]},
    "outcome": {"enum": ["justified", "unjustified", None]}}}


def _query(name: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


SEQ = {"type": "integer", "minimum": 1, "maximum": 2**53 - 1}
CURSOR = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
IDENTIFIER = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
EVENT_TYPE = {"type": "string", "maxLength": 64,
              "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*(\\.\\*)?$"}
HISTORY_ENTRY_VIEW = {"type": "object", "required": [
    "seq", "time", "kind", "type", "outcome", "institution", "purpose", "categories",
    "permitted", "denied", "emergency", "role"], "properties": {
    "seq": {"type": "integer"}, "time": TIMESTAMP,
    "kind": {"enum": ["access", "consent", "login"]}, "type": {"type": "string"},
    "outcome": {"type": "string"},
    "institution": {"oneOf": [{"type": "null"}, {
        "type": "object", "required": ["id", "name", "type"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "type": {"type": "string"}}}]},
    "purpose": {"type": ["string", "null"]},
    "categories": {"type": "array", "items": {"type": "string"}},
    "permitted": {"type": "array", "items": {"type": "string"}},
    "denied": {"type": "array", "items": {"type": "string"}},
    "emergency": {"type": "boolean"}, "role": {"type": ["string", "null"]},
    "consent_id": {"type": ["string", "null"]}}}
PATHS.update({
    "/v1/audit/checkpoints": {"get": {
        "operationId": "listCheckpoints", "tags": ["audit"], "security": BEARER,
        "summary": "Signed Merkle checkpoints (tree heads), oldest first, and the latest",
        "parameters": [_query("after", CURSOR, "Only checkpoints of a larger tree size"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                              "Page size (default 100)")],
        "responses": {"200": _ok({"type": "object", "required": ["checkpoints", "latest"],
                                  "properties": {
                                      "checkpoints": {"type": "array", "items": CHECKPOINT},
                                      "latest": {"oneOf": [{"type": "null"}, CHECKPOINT]},
                                      "next_after": {"type": ["integer", "null"]}}}),
                      **AUDIT_ERRORS}}},
    "/v1/audit/checkpoints/{size}": {"get": {
        "operationId": "getCheckpoint", "tags": ["audit"], "security": BEARER,
        "summary": "The checkpoint of one tree size",
        "parameters": [{"name": "size", "in": "path", "required": True,
                        "schema": CURSOR}],
        "responses": {"200": _ok(CHECKPOINT), **AUDIT_ERRORS,
                      "404": _problem("No checkpoint of that tree size")}}},
    "/v1/audit/proofs/inclusion": {"get": {
        "operationId": "inclusionProof", "tags": ["audit"], "security": BEARER,
        "summary": "RFC 9162 §2.1.3 inclusion proof of entry seq in a checkpoint",
        "parameters": [_query("seq", SEQ, "The entry", True),
                       _query("tree_size", SEQ, "A checkpoint's tree size (default latest)")],
        "responses": {"200": _ok({"type": "object", "required": [
            "seq", "leaf_index", "tree_size", "leaf_hash", "proof", "checkpoint"],
            "properties": {"seq": SEQ, "leaf_index": {"type": "integer"},
                           "tree_size": SEQ, "leaf_hash": HEX32, "proof": PROOF,
                           "checkpoint": CHECKPOINT}}), **AUDIT_ERRORS,
            "404": _problem("No such checkpoint, or the entry is not in it"),
            "409": _problem("The stored tree does not verify (see authz audit verify)")}}},
    "/v1/audit/proofs/consistency": {"get": {
        "operationId": "consistencyProof", "tags": ["audit"], "security": BEARER,
        "summary": "RFC 9162 §2.1.4 proof that checkpoint first is a prefix of second",
        "parameters": [_query("first", SEQ, "The earlier checkpoint's tree size", True),
                       _query("second", SEQ, "The later one (default latest)")],
        "responses": {"200": _ok({"type": "object", "required": [
            "first", "second", "proof", "first_checkpoint", "second_checkpoint"],
            "properties": {"first": SEQ, "second": SEQ, "proof": PROOF,
                           "first_checkpoint": CHECKPOINT,
                           "second_checkpoint": CHECKPOINT}}), **AUDIT_ERRORS,
            "404": _problem("No checkpoint of one of the sizes"),
            "409": _problem("The stored tree does not verify (see authz audit verify)")}}},
    "/v1/audit/events": {"get": {
        "operationId": "searchAuditEvents", "tags": ["audit"], "security": BEARER,
        "summary": "Search events in sequence order; pages by seq stay stable while events"
                   " arrive; JSON, JSON Lines, CSV or FHIR R4 AuditEvent (NDJSON)",
        "parameters": [
            _query("since", {"type": "string", "format": "date-time"}, "From this time"),
            _query("until", {"type": "string", "format": "date-time"}, "Before this time"),
            _query("institution", IDENTIFIER, "Institution id"),
            _query("patient", IDENTIFIER, "Patient internal id"),
            _query("type", EVENT_TYPE, "Event type, or a family such as consent.*"),
            _query("outcome", {"enum": ["success", "failure", "permit", "deny"]}, "Outcome"),
            _query("after", CURSOR, "Cursor: events after this seq (next_after of the"
                   " previous page)"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size"),
            _query("format", {"enum": ["json", "jsonl", "csv", "fhir"]}, "Output format")],
        "responses": {"200": {
            "description": "One page; other formats carry a Link rel=next header",
            "headers": REQUEST_ID_HEADER, "content": {
                "application/json": {"schema": {
                    "type": "object", "required": ["events", "next_after"], "properties": {
                        "events": {"type": "array", "items": AUDIT_EVENT},
                        "next_after": {"type": ["integer", "null"]},
                        "next": {"type": ["string", "null"]}}}},
                "application/jsonl": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/fhir+ndjson": {"schema": {"type": "string"}}}},
            **AUDIT_ERRORS}}},
    "/v1/audit/emergency-reviews": {"get": {
        "operationId": "emergencyReviews", "tags": ["audit"], "security": BEARER,
        "summary": "The review queue of emergency accesses",
        "parameters": [_query("status", {"enum": ["pending", "all"]}, "Default pending"),
                       _query("after", {"type": "string", "pattern": "^[A-Za-z0-9_]{1,32}$"},
                              "Cursor"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                              "Page size")],
        "responses": {"200": _ok({"type": "object", "required": ["reviews", "next_after"],
                                  "properties": {"reviews": {"type": "array", "items": REVIEW},
                                                 "next_after": {"type": ["string", "null"]}}}),
                      **AUDIT_ERRORS}}},
    "/v1/audit/emergency-reviews/{access_id}": {"post": {
        "operationId": "reviewEmergency", "tags": ["audit"], "security": BEARER,
        "summary": "Record the review of one emergency access",
        "parameters": [{"name": "access_id", "in": "path", "required": True,
                        "schema": {"type": "string", "maxLength": 32}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["outcome"], "additionalProperties": False,
            "properties": {"outcome": {"enum": ["justified", "unjustified"]}}}}}},
        "responses": {"200": _ok(REVIEW), **AUDIT_ERRORS,
                      "404": _problem("No such emergency access"),
                      "409": _problem("Already reviewed")}}},
    "/v1/me/access-history": {"get": {
        "operationId": "myAccessHistory", "tags": ["consents"], "security": BEARER,
        "summary": "Who accessed the patient's records and why, consent changes and logins,"
                   " newest first",
        "parameters": [
            _query("since", {"type": "string", "format": "date-time"}, "From this time"),
            _query("until", {"type": "string", "format": "date-time"}, "Before this time"),
            _query("institution", {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"},
                   "Institution id"),
            _query("kind", {"enum": ["access", "consent", "login"]}, "Only this kind"),
            _query("before", SEQ, "Cursor: entries before this seq (next_before)"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size")],
        "responses": {"200": _ok({"type": "object", "required": ["entries", "next_before"],
                                  "properties": {
                                      "entries": {"type": "array",
                                                  "items": HISTORY_ENTRY_VIEW},
                                      "next_before": {"type": ["integer", "null"]},
                                      "next": {"type": ["string", "null"]}}}),
                      **TOKEN_ERRORS}}},
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
