"""`authz serve` over real HTTP: a production server, migrations and keys applied at start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests_support import free_port

pytestmark = pytest.mark.slow
AUTHZ = str(Path(sys.executable).parent / "authz")
PG_URL = os.environ.get("AUTHZ_TEST_DATABASE_URL")


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def serving(env: dict[str, str], port: int, *extra: str) -> Iterator[subprocess.Popen]:
    log = Path(env["AUTHZ_INSTANCE_PATH"]).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [AUTHZ, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
             *extra], env={**os.environ, **env}, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_demo_on_sqlite_answers_health_and_readiness(tmp_path):
    port = free_port()
    env = {"AUTHZ_INSTANCE_PATH": str(tmp_path), "AUTHZ_DEMO": "1"}
    env.pop("AUTHZ_ISSUER", None)
    with serving(env, port) as process:
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
        assert get(f"{base}/readyz") == (200, {"status": "ready"})
        status, jwks = get(f"{base}/jwks.json")
        assert status == 200
        assert len(jwks["keys"]) == 2
        status, spec = get(f"{base}/openapi.json")
        assert spec["servers"] == [{"url": base}]  # the issuer defaults from --host/--port
        status, problem = get(f"{base}/nowhere")
        assert status == 404
        assert problem["status"] == 404
        for _ in range(20):
            get(f"{base}/healthz")
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
            scraped = response.read().decode()
        # counters of both workers are summed: all 21 health checks are there
        healthz = [line for line in scraped.splitlines()
                   if line.startswith("authz_http_requests_total{")
                   and 'endpoint="health.healthz"' in line]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in healthz) == 21
        assert 'authz_http_refused_total{code="not_found"}' in scraped
    assert process.returncode == 0
    listed = subprocess.run([AUTHZ, "institution", "list", "--json"], capture_output=True,
                            env={**os.environ, **env}, check=True)
    assert {i["type"] for i in json.loads(listed.stdout)} >= {"hospital", "clinic", "pharmacy"}
    verified = subprocess.run([AUTHZ, "audit", "verify"], capture_output=True,
                              env={**os.environ, **env})
    assert verified.returncode == 0, verified.stderr


def test_serve_refuses_bad_settings_with_one_line(tmp_path):
    result = subprocess.run(
        [AUTHZ, "serve", "--port", str(free_port())], capture_output=True, text=True,
        env={**os.environ, "AUTHZ_INSTANCE_PATH": str(tmp_path),
             "AUTHZ_ISSUER": "http://public.example"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "https unless" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL: .ci/run sets AUTHZ_TEST_DATABASE_URL")
def test_two_instances_starting_together_on_one_postgresql(tmp_path):
    url = sa.make_url(PG_URL)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS authz_serve_race"))
        conn.execute(sa.text("CREATE DATABASE authz_serve_race"))
    target = url.set(database="authz_serve_race").render_as_string(hide_password=False)
    env = {"AUTHZ_DATABASE_URL": target, "AUTHZ_SECRET_KEY": "s" * 48,
           "AUTHZ_KEY_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
           "AUTHZ_ISSUER": "http://127.0.0.1:8000"}
    ports = [free_port(), free_port()]
    try:
        with serving({**env, "AUTHZ_INSTANCE_PATH": str(tmp_path / "a")}, ports[0]), \
                serving({**env, "AUTHZ_INSTANCE_PATH": str(tmp_path / "b")}, ports[1]):
            for port in ports:
                assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
            kids = [{k["kid"] for k in get(f"http://127.0.0.1:{p}/jwks.json")[1]["keys"]}
                    for p in ports]
            assert kids[0] == kids[1]
            assert len(kids[0]) == 2
        engine = sa.create_engine(target)
        with engine.connect() as conn:
            states = conn.execute(sa.text("SELECT state FROM signing_keys")).scalars().all()
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert sorted(states) == ["active", "next"]
        assert len(versions) == 1
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS authz_serve_race WITH (FORCE)"))
        admin.dispose()
