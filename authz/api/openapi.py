"""The OpenAPI 3.1 description of the JSON API, served at ``/openapi.json``.

A test keeps it true: every JSON route is documented and every documented route exists; the
suite fuzzes it with schemathesis. Each capability adds its paths to ``PATHS``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import json

bp = Blueprint("openapi", __name__)

PROBLEM = {
    "description": "RFC 9457 problem details",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
REQUEST_ID_HEADER = {"X-Request-ID": {"schema": {"type": "string"},
                                      "description": "Echoes a valid incoming id or a new one."}}


def _ok(schema: dict[str, Any], media: str = "application/json",
        description: str = "OK") -> dict[str, Any]:
    return {"description": description, "headers": REQUEST_ID_HEADER,
            "content": {media: {"schema": schema}}}


JWK = {"type": "object", "required": ["kty", "kid"], "properties": {
    "kty": {"type": "string"}, "crv": {"type": "string"}, "x": {"type": "string"},
    "y": {"type": "string"}, "kid": {"type": "string"}, "use": {"type": "string"},
    "alg": {"type": "string"}}}

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
                      "503": PROBLEM}}},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["operations"],
        "responses": {"200": _ok({"type": "object"})}}},
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
            "keys": {"type": "array", "items": {"type": "object", "required": [
                "kid", "state", "public_jwk"], "properties": {
                "kid": {"type": "string"},
                "state": {"enum": ["next", "active", "retiring", "retired"]},
                "public_jwk": {"$ref": "#/components/schemas/JWK"}}}}}})}}},
}


def document(issuer: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "authz", "version": "1",
                 "description": "Consent and access-control authorization service."},
        "servers": [{"url": issuer}],
        "paths": PATHS,
        "components": {"schemas": {
            "Problem": {"type": "object", "required": ["type", "title", "status"],
                        "properties": {"type": {"type": "string", "format": "uri"},
                                       "title": {"type": "string"},
                                       "status": {"type": "integer"},
                                       "detail": {"type": "string"},
                                       "request_id": {"type": "string"}}},
            "JWK": JWK,
        }},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    body = json.dumps(document(current_app.config["AUTHZ_ISSUER"]))
    return Response(body, mimetype="application/json")
