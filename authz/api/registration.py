"""RFC 7591 registration and RFC 7592 management endpoints: parse, call one service, render.

Errors are RFC 7591 §3.2.2 JSON bodies; a missing or bad token is an RFC 6750 §3 challenge.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from authz.api.context import request_id
from authz.database import utcnow
from authz.extensions import db
from authz.extensions import limiter
from authz.oauth import registration
from authz.oauth.registration import InvalidToken
from authz.oauth.registration import RegistrationError
from authz.registry.models import Client

bp = Blueprint("registration", __name__)
# RFC 6750 §2.1 b64token
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@bp.errorhandler(RegistrationError)
def _refused(error: RegistrationError) -> tuple[Response, int]:
    response = jsonify(error=error.error, error_description=error.description)
    response.headers["Cache-Control"] = "no-store"
    if isinstance(error, InvalidToken):
        response.headers["WWW-Authenticate"] = "Bearer" if error.missing else (
            f'Bearer error="invalid_token", error_description="{error.description}"')
    return response, error.status


def _bearer() -> str:
    """The RFC 6750 §2.1 Authorization header token; the other ways to send one are refused."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("a Bearer token is required", missing=True)
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken("the token is malformed")
    return token


def _body() -> bytes | None:
    """At most one byte more than the service accepts, so that it can say the body is too big;
    None when the body is not JSON."""
    if request.mimetype != "application/json":
        return None
    return request.stream.read(registration.MAX_BODY + 1)


def _render(client: Client, token: str, status: int) -> tuple[Response, int]:
    issuer = current_app.config["AUTHZ_ISSUER"]
    response = jsonify({
        **registration.metadata_view(client), "registration_access_token": token,
        "registration_client_uri": f"{issuer}/oauth/register/{client.client_id}"})
    response.headers["Cache-Control"] = "no-store"
    return response, status


@bp.post("/oauth/register")
@limiter.limit("20 per minute")
def register() -> Any:
    """RFC 7591 §3.1, with an initial access token from the operator (§3)."""
    token = _bearer()
    done = registration.register(db.session(), token, _body(), request_id=request_id(),
                                 now=utcnow())
    return _render(done.client, done.registration_access_token, 201)


@bp.get("/oauth/register/<client_id>")
@limiter.limit("60 per minute")
def read(client_id: str) -> Any:
    """RFC 7592 §2.1."""
    token = _bearer()
    return _render(registration.authenticate(db.session(), client_id, token), token, 200)


@bp.put("/oauth/register/<client_id>")
@limiter.limit("60 per minute")
def replace(client_id: str) -> Any:
    """RFC 7592 §2.2: full replacement; the registration access token stays the same."""
    token = _bearer()
    client = registration.replace(db.session(), client_id, token, _body(),
                                  request_id=request_id())
    return _render(client, token, 200)


@bp.delete("/oauth/register/<client_id>")
@limiter.limit("60 per minute")
def deregister(client_id: str) -> Any:
    """RFC 7592 §2.3."""
    registration.deregister(db.session(), client_id, _bearer(), request_id=request_id(),
                           now=utcnow())
    response = Response(status=204)
    response.headers["Cache-Control"] = "no-store"
    return response
