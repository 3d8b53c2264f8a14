"""The browser session as the service knows it: a random binding id and same-origin checks."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask import request
from flask import session

from authz.api.bodies import json_object
from authz.errors import PermissionDenied


def browser_id() -> str:
    """This browser's binding id, created on first use and kept in the signed session cookie."""
    value = session.get("browser")
    if not isinstance(value, str):
        value = secrets.token_urlsafe(24)
        session["browser"] = value
    return value


def require_same_origin() -> None:
    """Refuse a state-changing request a browser sent from another site (CSRF, Fetch metadata)."""
    issuer = urlsplit(current_app.config["AUTHZ_ISSUER"])
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if (parts.scheme, parts.netloc) != (issuer.scheme, issuer.netloc):
            raise PermissionDenied("cross-origin request refused")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise PermissionDenied("cross-site request refused")


def json_body() -> dict[str, Any]:
    """A JSON object body; anything else is a clear 400."""
    return json_object()
