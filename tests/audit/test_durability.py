"""Durability: every decision a client saw answered has its committed audit event, even when the
server is killed with SIGKILL in the middle of a burst; the chain and checkpoints verify."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey
from tests_support import TEST_KEK
from tests_support import TEST_SECRET
from tests_support import free_port

from authz.audit import checkpoints
from authz.audit.events import parse
from authz.audit.models import AuditEvent
from authz.audit.verify import verify_database
from authz.consent.models import PairwiseSubject
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.identity.models import Account
from authz.keys import service as keys
from authz.registry import service as registry

pytestmark = pytest.mark.slow
AUTHZ = str(Path(sys.executable).parent / "authz")
THREADS = 4


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [AUTHZ, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env={**os.environ, **env}, stdout=sink, stderr=sink, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def stop(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the master and its workers, at once
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def test_answered_decisions_survive_sigkill(app, db, database_url, tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    keys.ensure_keys(db, app.config["AUTHZ_KEK_BYTES"])
    clinic = registry.add_institution(db, registry.InstitutionSpec(
        "テスト診療所", "clinic", "1300000001", roles=["physician"]), actor="test")
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwks = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                                 "x": b64(numbers.x.to_bytes(32, "big")),
                                 "y": b64(numbers.y.to_bytes(32, "big"))}]})
    system = registry.add_client(db, registry.ClientSpec(
        institution=clinic.id, name="clinic system", auth_method="private_key_jwt",
        redirect_uris=[], scope="decisions", jwks=jwks), actor="test").client_id
    sub = secrets.token_urlsafe(24)
    with write(db):
        db.add(Account(id="acc_durable", person_link_id="durablelink01", assurance="login",
                       created_at=utcnow(), updated_at=utcnow()))
        db.flush()
        db.add(PairwiseSubject(institution_id=clinic.id, sub=sub, account_id="acc_durable",
                               created_at=utcnow()))
    db.rollback()

    env = {"AUTHZ_INSTANCE_PATH": str(tmp_path / "instance"), "AUTHZ_DATABASE_URL":
           database_url, "AUTHZ_SECRET_KEY": TEST_SECRET, "AUTHZ_KEY_ENCRYPTION_KEY": TEST_KEK,
           "AUTHZ_ISSUER": issuer, "AUTHZ_LOG_LEVEL": "WARNING"}
    log = tmp_path / "serve.log"
    process = start(env, port, log)
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, {
        "iss": system, "sub": system, "aud": issuer, "iat": now, "exp": now + 60,
        "jti": secrets.token_urlsafe(12)}, ECKey.import_key(private))
    status, answer = post(f"{issuer}/oauth/token", urllib.parse.urlencode({
        "grant_type": "client_credentials", "scope": "decisions", "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, (answer, log.read_text()[-2000:])
    headers = {"Authorization": f"Bearer {answer['access_token']}",
               "Content-Type": "application/json"}
    body = json.dumps({"patient": sub, "categories": ["medication"], "action": "read",
                       "purpose": "treatment_visit", "role": "physician",
                       "practitioner": "dr-001"}).encode()

    answered: list[str] = []
    unexpected: list[tuple[int, dict]] = []
    lock = threading.Lock()
    stop_burst = threading.Event()

    def burst() -> None:
        while not stop_burst.is_set():
            try:
                status, decision = post(f"{issuer}/v1/decisions", body, headers)
            except (OSError, ValueError, http.client.HTTPException):
                continue  # the server went away mid-request: not answered
            with lock:
                if status == 200:
                    answered.append(decision["decision_id"])
                else:
                    unexpected.append((status, decision))

    def sealer() -> None:  # checkpoints sealed while decisions append
        with app.app_context():
            session = flask_db.session()
            while not stop_burst.is_set():
                checkpoints.seal(session, app.config["AUTHZ_KEK_BYTES"])
                time.sleep(0.05)
            flask_db.session.remove()

    workers = [threading.Thread(target=burst) for _ in range(THREADS)]
    workers.append(threading.Thread(target=sealer))
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while len(answered) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(process, signal.SIGKILL)  # no graceful shutdown, mid-burst
    stop_burst.set()
    for worker in workers:
        worker.join(timeout=30)
    assert len(answered) >= 60
    assert not unexpected, unexpected[:3]

    process = start(env, port, log)  # the service comes back on the same database
    try:
        status, decision = post(f"{issuer}/v1/decisions", body, headers)
        assert status == 200, decision
        answered.append(decision["decision_id"])
    finally:
        stop(process, signal.SIGTERM)

    db.rollback()
    recorded = set()
    for record in db.execute(flask_db.select(AuditEvent.record).where(
            AuditEvent.type == "decision.evaluated")).scalars():
        recorded.add(parse(bytes(record))["detail"]["decision_id"])
    missing = set(answered) - recorded
    assert not missing, f"{len(missing)} answered decisions have no committed event"
    checkpoints.seal(db, app.config["AUTHZ_KEK_BYTES"])
    verdict = verify_database(db)
    assert verdict.ok, verdict.describe()
    assert verdict.checkpoints >= 2
