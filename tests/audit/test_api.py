"""The auditor API, auditor registration, and the patient's access history, over HTTP."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import secrets
import time
from datetime import timedelta
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from card_support import login
from cryptography.hazmat.primitives.asymmetric import ec
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from joserfc import jwt
from joserfc.jwk import ECKey

from authz import audit
from authz.audit import checkpoints
from authz.audit import merkle
from authz.audit.models import AuditEvent
from authz.cli import authz_cli
from authz.consent.models import EmergencyAccess
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.keys import service as keys
from authz.registry import service as registry

ISSUER = "http://127.0.0.1:8000"
REDIRECT = "https://auditor.example/cb"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Setup:
    def __init__(self, app):
        self.app = app
        with app.app_context():
            session = flask_db.session()
            keys.ensure_keys(session, app.config["AUTHZ_KEK_BYTES"])
            office = registry.add_institution(session, registry.InstitutionSpec(
                "監査室", "resource_server", "9900000009"), actor="test")
            self.key = ec.generate_private_key(ec.SECP256R1())
            numbers = self.key.public_key().public_numbers()
            jwks = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                                         "x": b64(numbers.x.to_bytes(32, "big")),
                                         "y": b64(numbers.y.to_bytes(32, "big"))}]})
            self.client_id = registry.add_client(session, registry.ClientSpec(
                institution=office.id, name="Audit console", auth_method="private_key_jwt",
                redirect_uris=[REDIRECT], scope="openid consents audit", jwks=jwks),
                actor="test").client_id
            self.hospital = registry.add_institution(session, registry.InstitutionSpec(
                "テスト病院", "hospital", "1300000002", roles=["physician"]),
                actor="test").id
            flask_db.session.remove()

    def token(self, browser, scope):
        verifier = secrets.token_urlsafe(48)
        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": REDIRECT, "scope": scope, "state": "s",
                  "nonce": secrets.token_urlsafe(8),
                  "code_challenge": b64(hashlib.sha256(verifier.encode()).digest()),
                  "code_challenge_method": "S256"}
        page = browser.get("/oauth/authorize", query_string=params)
        assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
        csrf = page.get_data(as_text=True).split('name="csrf" value="')[1].split('"')[0]
        answer = browser.post("/oauth/authorize", query_string=params,
                              data={"csrf": csrf, "decision": "approve"},
                              headers={"Origin": ISSUER})
        assert answer.status_code == 302, answer.status_code
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        now = int(time.time())
        assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, {
            "iss": self.client_id, "sub": self.client_id, "aud": ISSUER, "iat": now,
            "exp": now + 60, "jti": secrets.token_urlsafe(12)}, ECKey.import_key(self.key))
        response = browser.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def setup(demo_app):
    return Setup(demo_app)


@pytest.fixture
def auditor(demo_app, browser, issue, setup):
    """A registered auditor logged in with their card: (token, auditor id)."""
    card = issue(name="監査\u3000太郎", birthdate="1975-05-05", gender="male")
    result = demo_app.test_cli_runner().invoke(authz_cli, ["auditor", "add", "--card",
                                                           str(card.path), "--json"])
    assert result.exit_code == 0, result.output
    login(browser, card)
    answer = setup.token(browser, "openid audit")
    assert "audit" in answer["scope"].split()
    return answer["access_token"], json.loads(result.output)["id"]


@pytest.fixture
def patient(demo_app, issue, setup):
    """A patient (not an auditor) logged in: (browser, token granted with consents)."""
    browser = demo_app.test_client()
    login(browser, issue())
    answer = setup.token(browser, "openid consents audit")
    return browser, answer


def account_of(demo_app, kind):
    with demo_app.app_context():
        ids = [r for (r,) in flask_db.session.execute(
            flask_db.select(AuditEvent.patient_id).where(
                AuditEvent.type == "identity.session_started").order_by(AuditEvent.seq))]
        flask_db.session.remove()
    return ids


def seal(app):
    with app.app_context():
        made = checkpoints.seal(flask_db.session(), app.config["AUTHZ_KEK_BYTES"])
        flask_db.session.remove()
    return made


def test_only_a_registered_auditor_gets_and_uses_the_audit_scope(demo_app, browser, auditor,
                                                                 patient):
    token, auditor_id = auditor
    assert browser.get("/v1/audit/checkpoints", headers=bearer(token)).status_code == 200
    _browser, answer = patient
    assert "audit" not in answer["scope"].split()  # asked for it, was not granted it
    refused = browser.get("/v1/audit/events", headers=bearer(answer["access_token"]))
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert browser.get("/v1/audit/events").status_code == 401
    # disabling the auditor stops the token at once
    runner = demo_app.test_cli_runner()
    assert runner.invoke(authz_cli, ["auditor", "disable", auditor_id]).exit_code == 2
    result = runner.invoke(authz_cli, ["auditor", "disable", auditor_id, "--yes", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["status"] == "disabled"
    assert browser.get("/v1/audit/events", headers=bearer(token)).status_code == 403
    listed = json.loads(runner.invoke(authz_cli, ["auditor", "list", "--json"]).output)
    assert [a["id"] for a in listed] == [auditor_id]


def test_auditor_add_bad_input(demo_app, tmp_path, auditor, issue):
    runner = demo_app.test_cli_runner()
    missing = runner.invoke(authz_cli, ["auditor", "add", "--card", str(tmp_path / "no")])
    assert missing.exit_code == 2 and missing.output.startswith("authz: error:")
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    assert runner.invoke(authz_cli, ["auditor", "add", "--card", str(junk)]).exit_code == 2


def test_checkpoints_and_proofs_over_http(demo_app, browser, auditor):
    token, _ = auditor
    first = seal(demo_app)
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            for n in range(5):
                audit.record(session, audit.Event(type="test.event", actor="t", detail={"n": n}))
        flask_db.session.remove()
    second = seal(demo_app)
    listed = browser.get("/v1/audit/checkpoints", headers=bearer(token)).get_json()
    sizes = [c["tree_size"] for c in listed["checkpoints"]]
    assert first.tree_size in sizes and second.tree_size in sizes
    one = browser.get(f"/v1/audit/checkpoints/{first.tree_size}", headers=bearer(token))
    assert one.get_json()["root_hash"] == first.root_hash.hex()
    assert browser.get("/v1/audit/checkpoints/999999", headers=bearer(token)).status_code == 404
    proof = browser.get("/v1/audit/proofs/inclusion", headers=bearer(token), query_string={
        "seq": 3, "tree_size": second.tree_size}).get_json()
    merkle.verify_inclusion(2, second.tree_size, bytes.fromhex(proof["leaf_hash"]),
                            [bytes.fromhex(p) for p in proof["proof"]], second.root_hash)
    proof = browser.get("/v1/audit/proofs/consistency", headers=bearer(token), query_string={
        "first": first.tree_size, "second": second.tree_size}).get_json()
    merkle.verify_consistency(first.tree_size, second.tree_size, first.root_hash,
                              second.root_hash, [bytes.fromhex(p) for p in proof["proof"]])
    for path, query in (("/v1/audit/proofs/inclusion", {"seq": "x"}),
                        ("/v1/audit/proofs/inclusion", {}),
                        ("/v1/audit/proofs/inclusion", {"seq": "1", "bogus": "1"}),
                        ("/v1/audit/proofs/consistency", {"first": "-1"}),
                        ("/v1/audit/events", {"since": "yesterday"}),
                        ("/v1/audit/events", {"limit": "100000"}),
                        ("/v1/audit/events", {"outcome": "maybe"}),
                        ("/v1/audit/events", {"format": "xml"}),
                        ("/v1/audit/events", {"since": "2026-01-02", "until": "2026-01-01"})):
        response = browser.get(path, headers=bearer(token), query_string=query)
        assert response.status_code == 400, (path, query, response.status_code)
        assert response.headers["Content-Type"] == "application/problem+json"
    missing = browser.get("/v1/audit/proofs/inclusion", headers=bearer(token),
                          query_string={"seq": 10**9, "tree_size": second.tree_size})
    assert missing.status_code == 404


def test_search_pages_stably_and_exports(demo_app, browser, auditor, setup):
    token, auditor_id = auditor
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            for n in range(7):
                audit.record(session, audit.Event(
                    type="decision.evaluated", actor="client:c1",
                    outcome="permit" if n % 2 else "deny", institution=setup.hospital,
                    patient="acc_p1", detail={"purpose": "treatment_visit", "n": n,
                                              "permitted": ["medication"], "denied": []}))
        flask_db.session.remove()
    query = {"type": "decision.evaluated", "patient": "acc_p1", "limit": 3}
    page = browser.get("/v1/audit/events", headers=bearer(token), query_string=query).get_json()
    seen = [e["seq"] for e in page["events"]]
    with demo_app.app_context():  # events arriving meanwhile do not shift the pages
        session = flask_db.session()
        with write(session):
            audit.record(session, audit.Event(type="decision.evaluated", actor="client:c1",
                                              patient="acc_p1", outcome="permit"))
        flask_db.session.remove()
    while page["next_after"] is not None:
        page = browser.get("/v1/audit/events", headers=bearer(token),
                           query_string={**query, "after": page["next_after"]}).get_json()
        seen += [e["seq"] for e in page["events"]]
    assert len(seen) == 8 and seen == sorted(set(seen))
    denies = browser.get("/v1/audit/events", headers=bearer(token), query_string={
        "outcome": "deny", "institution": setup.hospital}).get_json()["events"]
    assert len(denies) == 4 and {e["outcome"] for e in denies} == {"deny"}
    family = browser.get("/v1/audit/events", headers=bearer(token),
                         query_string={"type": "decision.*"}).get_json()["events"]
    assert len(family) == 8
    since = (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert browser.get("/v1/audit/events", headers=bearer(token), query_string={
        "since": since}).get_json()["events"] == []

    lines = browser.get("/v1/audit/events", headers=bearer(token), query_string={
        **query, "format": "jsonl", "limit": 2})
    assert lines.headers["Content-Type"].startswith("application/jsonl")
    assert 'rel="next"' in lines.headers["Link"]
    assert [json.loads(x)["patient"] for x in lines.get_data(as_text=True).splitlines()] == [
        "acc_p1", "acc_p1"]
    table = browser.get("/v1/audit/events", headers=bearer(token), query_string={
        **query, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    assert len(rows) == 3 and rows[0]["type"] == "decision.evaluated"
    fhir = browser.get("/v1/audit/events", headers=bearer(token), query_string={
        **query, "format": "fhir"})
    assert fhir.headers["Content-Type"].startswith("application/fhir+ndjson")
    for line in fhir.get_data(as_text=True).splitlines():
        resource = FhirAuditEvent.model_validate(json.loads(line))
        assert resource.type.code == "110110"
        assert resource.outcome in {"0", "4"}
        assert resource.purposeOfEvent[0].coding[0].code == "treatment_visit"
    # every read was itself audited, naming the auditor
    with demo_app.app_context():
        reads = flask_db.session.execute(flask_db.select(AuditEvent.record).where(
            AuditEvent.type == "audit.read")).scalars().all()
        flask_db.session.remove()
    assert len(reads) >= 6
    assert all(json.loads(r)["actor"] == f"auditor:{auditor_id}" for r in reads)


def test_emergency_review_queue(demo_app, browser, auditor, setup, issue):
    token, auditor_id = auditor
    patient_id = account_of(demo_app, "login")[0]
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            now = utcnow()
            session.add(EmergencyAccess(id="emg_test1", patient_id=patient_id,
                                        institution_id=setup.hospital, practitioner="dr-9",
                                        reason="unconscious", started_at=now,
                                        expires_at=now + timedelta(hours=24)))
        flask_db.session.remove()
    queue = browser.get("/v1/audit/emergency-reviews", headers=bearer(token)).get_json()
    assert [r["id"] for r in queue["reviews"]] == ["emg_test1"]
    for body, status in (({"outcome": "fine"}, 400), ({"outcome": 1}, 400), ([], 400),
                         ({"outcome": "justified", "x": 1}, 400)):
        response = browser.post("/v1/audit/emergency-reviews/emg_test1", json=body,
                                headers=bearer(token))
        assert response.status_code == status
    assert browser.post("/v1/audit/emergency-reviews/emg_nope", json={"outcome": "justified"},
                        headers=bearer(token)).status_code == 404
    done = browser.post("/v1/audit/emergency-reviews/emg_test1",
                        json={"outcome": "justified"}, headers=bearer(token))
    assert done.status_code == 200
    assert done.get_json()["reviewer"] == auditor_id
    again = browser.post("/v1/audit/emergency-reviews/emg_test1",
                         json={"outcome": "unjustified"}, headers=bearer(token))
    assert again.status_code == 409
    assert browser.get("/v1/audit/emergency-reviews",
                       headers=bearer(token)).get_json()["reviews"] == []
    everything = browser.get("/v1/audit/emergency-reviews", headers=bearer(token),
                             query_string={"status": "all"}).get_json()["reviews"]
    assert everything[0]["outcome"] == "justified"


def test_patient_sees_only_their_own_history(demo_app, patient, setup, issue):
    browser, answer = patient
    token = answer["access_token"]
    mine = account_of(demo_app, "login")[-1]
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            for who, emergency in ((mine, 0), ("acc_someone_else", 0), (mine, 1)):
                audit.record(session, audit.Event(
                    type="decision.evaluated", actor="client:c1", outcome="permit",
                    institution=setup.hospital, patient=who,
                    detail={"decision_id": "d1", "purpose": "emergency" if emergency else
                            "treatment_visit", "role": "physician", "practitioner": "dr-1",
                            "permitted": ["medication"], "denied": ["genetic"],
                            "emergency": emergency}))
            audit.record(session, audit.Event(
                type="consent.revoked", actor=f"patient:{mine}", patient=mine,
                institution=setup.hospital, detail={"consent_id": "c1", "version": 2,
                                                    "purpose": "treatment_visit",
                                                    "categories": ["medication"]}))
        flask_db.session.remove()
    response = browser.get("/v1/me/access-history", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    entries = response.get_json()["entries"]
    kinds = [e["kind"] for e in entries]
    assert kinds[:3] == ["consent", "access", "access"] and "login" in kinds
    emergency, ordinary = entries[1], entries[2]
    assert emergency["emergency"] is True and ordinary["emergency"] is False
    assert ordinary["institution"] == {"id": setup.hospital, "name": "テスト病院",
                                       "type": "hospital"}
    assert ordinary["categories"] == ["genetic", "medication"]
    assert ordinary["denied"] == ["genetic"] and ordinary["purpose"] == "treatment_visit"
    assert all(e.get("institution") is None or e["institution"]["id"] == setup.hospital
               for e in entries if e["kind"] == "access")
    # paging, filters, and someone else's entries never appear
    first = browser.get("/v1/me/access-history", headers=bearer(token),
                        query_string={"limit": 1}).get_json()
    assert len(first["entries"]) == 1 and first["next_before"] is not None
    rest = browser.get("/v1/me/access-history", headers=bearer(token),
                       query_string={"before": first["next_before"]}).get_json()
    assert [e["seq"] for e in first["entries"] + rest["entries"]] == [e["seq"] for e in entries]
    only_access = browser.get("/v1/me/access-history", headers=bearer(token),
                              query_string={"kind": "access",
                                            "institution": setup.hospital}).get_json()
    assert len(only_access["entries"]) == 2
    for query in ({"patient": "acc_someone_else"}, {"kind": "all"}, {"limit": "0"},
                  {"since": "not-a-date"}):
        refused = browser.get("/v1/me/access-history", headers=bearer(token),
                              query_string=query)
        assert refused.status_code == 400, query
        assert refused.headers["Content-Type"] == "application/problem+json"
    assert browser.get("/v1/me/access-history").status_code == 401
