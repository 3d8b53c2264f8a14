"""HTTP layer: blueprints, request hooks and error mapping."""

from __future__ import annotations

import logging
import time

from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import request

from authz import metrics
from authz.api import context
from authz.api.errors import problem
from authz.api.errors import register_error_handlers
from authz.context import request_id_var

access_log = logging.getLogger("authz.access")
# Blueprints whose routes are JSON API routes: each must be in the OpenAPI document.
JSON_BLUEPRINTS = frozenset({"health", "keys", "openapi", "jpki", "oauth", "decisions", "me",
                             "audit", "history", "registration"})


def _before() -> Response | None:
    g.started = time.perf_counter()
    context.assign_request_id()
    return _refuse_nul()


def _refuse_nul() -> Response | None:
    """NUL never belongs in a URL or a form, and PostgreSQL cannot even compare it: refuse it
    at the edge, before any query, in the error format of the endpoint family."""
    values = [request.path, *request.args.values()]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values.extend(request.form.values())
    if not any("\x00" in value for value in values):
        return None
    if request.blueprint in PAGES:
        from authz.web import nul_refused

        return nul_refused()
    if request.path.startswith("/oauth/"):
        response = jsonify(error="invalid_request", error_description="NUL in a parameter")
        response.status_code = 400
        response.headers["Cache-Control"] = "no-store"
        return response
    return problem(400, "invalid_request", "NUL characters are not allowed.")


PAGES = frozenset({"web", "portal", "auditor", "demo", "i18n"})  # server-rendered pages


def _after(response: Response) -> Response:
    response.headers["X-Request-ID"] = context.request_id()
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    elapsed = seconds * 1000
    endpoint = request.endpoint or "unrouted"
    metrics.REQUESTS.labels(endpoint=endpoint, method=request.method,
                            status=str(response.status_code)).inc()
    metrics.LATENCY.labels(endpoint=endpoint).observe(seconds)
    # The path only: query strings can carry hints or codes that do not belong in logs.
    access_log.info("request", extra={
        "method": request.method, "path": request.path, "status": response.status_code,
        "duration_ms": round(elapsed, 2), "remote_addr": request.remote_addr})
    return response


def _teardown(_error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def register_api(app: Flask) -> None:
    from authz.api import audit
    from authz.api import decisions
    from authz.api import health
    from authz.api import history
    from authz.api import jpki
    from authz.api import keys
    from authz.api import me
    from authz.api import oauth
    from authz.api import openapi
    from authz.api import registration
    from authz.api import telemetry

    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    app.register_blueprint(health.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(jpki.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(registration.bp)
    app.register_blueprint(keys.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(telemetry.bp)
    app.register_blueprint(decisions.bp)
    app.register_blueprint(me.bp)
    register_error_handlers(app)
