"""HTTP basics: health, request ids, problem+json errors, access logs and rate limiting."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask import abort
from sqlalchemy.exc import OperationalError

from authz import errors
from authz.extensions import db as flask_db
from authz.extensions import limiter

PROBLEM_JSON = "application/problem+json"
ISSUER = "http://127.0.0.1:8000"  # conftest's base_config
REDIS_URL = os.environ.get("AUTHZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class ServiceDown(errors.AuthzError):
    """A 5xx domain error raised with an operator-facing description."""

    code, description, status = "unavailable", "Temporarily unavailable.", 503


def boom() -> str:
    raise RuntimeError("secret detail")


def forbidden() -> str:
    raise errors.PermissionDenied("You may not read this record.")


def service_down() -> str:
    raise ServiceDown("cannot decrypt signing key k1: AUTHZ_KEY_ENCRYPTION_KEY is wrong")


# Decorated once, at import: Flask-Limiter keeps route limits on its process-wide singleton, keyed
# by the view's qualified name, so each test app below mounts this same function.
@limiter.limit("2 per minute")
def limited() -> str:
    return "ok"


@pytest.fixture
def build_app(app_factory: Callable[..., Flask]) -> Iterator[Callable[..., Flask]]:
    """Build an app with the throwaway routes above; engines are disposed afterwards."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        application = app_factory(**overrides)
        application.add_url_rule("/_test/boom", view_func=boom)
        application.add_url_rule("/_test/forbidden", view_func=forbidden)
        application.add_url_rule("/_test/service-down", view_func=service_down)
        application.add_url_rule("/_test/limited", view_func=limited)
        built.append(application)
        return application

    yield build
    for application in built:
        with application.app_context():
            flask_db.session.remove()
            flask_db.engine.dispose()


@pytest.fixture
def json_log() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Swap the stream of the real stderr handler (``authz.logs``) for a buffer; parse its lines."""
    handler = next(h for h in logging.getLogger("authz").handlers if getattr(h, "_authz", False))
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    old = handler.setStream(buffer)

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    handler.setStream(old)


def assert_problem(response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["type"] == f"{ISSUER}/problems/{code}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_readyz_database_error_is_503_problem(client, monkeypatch):
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(flask_db.session, "execute", refuse)
    response = client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert response.headers["Retry-After"].isdigit()
    assert "refused" not in json.dumps(body)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/jwks.json", "/no/such/path"])
def test_every_response_carries_a_request_id(client, path):
    first = client.get(path).headers["X-Request-ID"]
    second = client.get(path).headers["X-Request-ID"]
    assert first and second and first != second


@pytest.mark.parametrize("incoming", ["req-0123456789", "a1b2c3d4", "edge.lb:42_x-" + "y" * 51])
def test_well_formed_request_id_is_echoed(client, incoming):
    assert len(incoming) <= 64
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", [
    "short", "x" * 65, "has space in it", "semi;colon;id", "new\nline-0123", "ünïcode-id-0123",
    "abcdefgh\n",  # "$" in a regex also matches before a trailing newline
])
def test_malformed_or_overlong_request_id_is_replaced(client, incoming):
    # environ_overrides: the test client would refuse some of these values as a header.
    response = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": incoming})
    replaced = response.headers["X-Request-ID"]
    assert replaced != incoming
    assert len(replaced) == 24 and int(replaced, 16) >= 0


def test_unknown_path_is_404_problem(client):
    response = client.get("/no/such/path")
    body = assert_problem(response, 404, "not_found")
    assert body["title"] == "Not Found"


def test_wrong_method_is_405_problem_with_allow(client):
    response = client.post("/healthz")
    assert_problem(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed == {"GET", "HEAD", "OPTIONS"}


def test_unexpected_exception_is_generic_500(build_app, json_log):
    client = build_app().test_client()
    response = client.get("/_test/boom", headers={"X-Request-ID": "trace-boom-0001"})
    body = assert_problem(response, 500, "server_error")
    assert body["request_id"] == "trace-boom-0001"
    assert set(body) == {"type", "title", "status", "detail", "request_id"}
    raw = response.get_data(as_text=True) + str(response.headers)
    for leak in ("secret detail", "Traceback", "RuntimeError", "test_http.py"):
        assert leak not in raw
    # The cause is logged, under the same request id, for the operator.
    logged = [e for e in json_log() if e.get("exc_type") == "RuntimeError"]
    assert logged and logged[0]["request_id"] == "trace-boom-0001"
    assert "secret detail" in str(logged[0]["exc"])


def test_abort_500_is_the_same_generic_problem(build_app):
    application = build_app()

    @application.get("/_test/abort")
    def abort_500() -> str:
        abort(500)

    response = application.test_client().get("/_test/abort")
    assert_problem(response, 500, "server_error")


def test_authz_error_maps_to_its_status_and_code(build_app):
    response = build_app().test_client().get("/_test/forbidden")
    body = assert_problem(response, 403, "forbidden")
    assert body["title"] == "You may not read this record."


def test_server_side_authz_error_keeps_its_description_in_the_log(build_app, json_log):
    response = build_app().test_client().get("/_test/service-down")
    body = assert_problem(response, 503, "unavailable")
    assert body["title"] == "Temporarily unavailable."
    assert "AUTHZ_KEY_ENCRYPTION_KEY" not in response.get_data(as_text=True)
    assert any("AUTHZ_KEY_ENCRYPTION_KEY" in str(e["msg"]) for e in json_log())


def test_access_log_is_json_without_query_string(client, json_log):
    response = client.get("/healthz?code=SECRETCODE&state=xyz",
                          headers={"X-Request-ID": "trace-log-0001"})
    assert response.status_code == 200
    access = [e for e in json_log() if e["logger"] == "authz.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["method"] == "GET"
    assert entry["path"] == "/healthz"
    assert entry["status"] == 200
    assert entry["request_id"] == "trace-log-0001"
    assert entry["level"] == "info"
    assert "SECRETCODE" not in json.dumps(access)
    assert "state=" not in json.dumps(access)


def test_access_log_records_errors_too(client, json_log):
    client.get("/no/such/path?token=SECRETTOKEN")
    (entry,) = [e for e in json_log() if e["logger"] == "authz.access"]
    assert (entry["path"], entry["status"]) == ("/no/such/path", 404)
    assert "SECRETTOKEN" not in json.dumps(entry)


def _exhaust_limit(application: Flask) -> None:
    client = application.test_client()
    for _ in range(2):
        ok = client.get("/_test/limited")
        assert ok.status_code == 200
        assert ok.headers["X-Request-ID"]
    response = client.get("/_test/limited")
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-Request-ID"]


def test_rate_limit_is_429_problem_with_retry_after(build_app):
    _exhaust_limit(build_app())


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.ConnectionError:
        connection.close()
        pytest.skip(f"no Redis at {REDIS_URL} (set AUTHZ_TEST_REDIS_URL to another database)")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


def test_rate_limit_with_redis_storage(build_app, redis_db):
    _exhaust_limit(build_app(AUTHZ_REDIS_URL=REDIS_URL))
    # The counters are in Redis, not in the per-process fallback the limiter uses when Redis
    # is unreachable.
    assert redis_db.keys("LIMITS*")
    # A second app (another worker) sharing the Redis sees the same exhausted counter.
    response = build_app(AUTHZ_REDIS_URL=REDIS_URL).test_client().get("/_test/limited")
    assert_problem(response, 429, "rate_limited")


def test_metrics_are_served_to_loopback_only(client):
    client.get("/nowhere")
    scraped = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert scraped.status_code == 200
    assert b"authz_http_refused_total" in scraped.data
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert outside.status_code == 404


def test_metrics_are_not_served_through_a_local_reverse_proxy(client):
    relayed = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                         headers={"X-Forwarded-For": "203.0.113.7"})
    assert relayed.status_code == 404


@pytest.mark.parametrize("path", ["/jpki/transactions/%00", "/healthz?x=%00",
                                  "/oauth/userinfo?x=%00"])
def test_nul_is_refused_at_the_edge(client, path):
    response = client.get(path)
    assert response.status_code == 400
    assert response.headers["X-Request-ID"]
