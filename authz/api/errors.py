"""Map every error to RFC 9457 problem details, in one place.

``type`` is a stable URI per error code under the issuer; the public ``detail`` comes from the
error itself, never from ``str()`` of an unexpected exception, which is only logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask
from flask import Response
from flask import current_app
from flask import json
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed

from authz import metrics
from authz.api.context import request_id
from authz.errors import AuthzError

log = logging.getLogger("authz.api")
PROBLEM_JSON = "application/problem+json"


def problem_type(code: str) -> str:
    """The stable ``type`` URI of an error code."""
    return f"{current_app.config['AUTHZ_ISSUER']}/problems/{code}"


def problem(status: int, code: str, title: str, detail: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """An ``application/problem+json`` response carrying this request's id."""
    body: dict[str, Any] = {"type": problem_type(code), "title": title, "status": status}
    if detail and detail != title:
        body["detail"] = detail
    body["request_id"] = request_id()
    body.update(extra)
    if 400 <= status < 500:
        # Client errors are counted, not audited: floods of bad requests stay out of the log.
        metrics.REFUSED.labels(code=code).inc()
    response = Response(json.dumps(body, ensure_ascii=False), status=status,
                        mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _authz_error(error: AuthzError) -> Response:
    if error.status >= 500:
        # A server-side description is written for operators (ConfigError names settings and
        # files): log it and send the class's public description instead.
        log.error("service error: %s", error.description, extra={"code": error.code})
        return problem(error.status, error.code, type(error).description)
    return problem(error.status, error.code, error.description,
                   headers=getattr(error, "headers", None), **error.extra)


def _rate_limited(error: RateLimitExceeded) -> Response:
    # Flask-Limiter adds Retry-After and the RateLimit-* headers to this response itself.
    log.info("rate limited", extra={"code": "rate_limited"})
    return problem(429, "rate_limited", "Too many requests.")


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 500:
        # abort(500), or Flask's InternalServerError wrapping a failure outside the view: the
        # same generic problem as an unexpected exception in a view.
        log.error("internal server error", extra={"code": "server_error"})
        return _server_error()
    # "Method Not Allowed" -> "method_not_allowed"; "I'm a teapot" -> "i_m_a_teapot".
    code = re.sub(r"[^a-z0-9]+", "_", (error.name or "error").lower()).strip("_") or "error"
    headers = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        # RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return problem(status, code, error.name or "Error", headers=headers)


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return _http_error(error)
    log.exception("unhandled error")
    return _server_error()


def _server_error() -> Response:
    return problem(500, "server_error", "Internal error.",
                   "The request failed; quote the request id when reporting it.")


def register_error_handlers(app: Flask) -> None:
    """Render every error as problem+json (OAuth endpoints will keep their RFC 6749 bodies)."""
    app.register_error_handler(AuthzError, _authz_error)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
