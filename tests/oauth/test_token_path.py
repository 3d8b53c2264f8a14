"""The token endpoint's and introspection's hot path (issue 4): one write transaction per
request, the client assertion still single-use (also when requests race or fail), nothing
cached that a disabled client or changed keys could outlive, the pairwise subject recorded."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from oauth_support import ISSUER
from oauth_support import b64
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce
from test_introspection import RECORDS
from test_introspection import introspect

from authz.database import WRITE_OPTION
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.oauth import inspection
from authz.registry import service as registry

BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
UNKNOWN = "https://unknown.example/api"


def _assertion(client_id, key, *, kid="k1", jti=None, lifetime=120):
    now = int(time.time())
    return jwt.encode({"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": now,
                       "exp": now + lifetime, "jti": jti or secrets.token_urlsafe(16)},
                      key, algorithm="ES256", headers={"kid": kid})


def _form(setup, signed=None, **extra):
    return {"grant_type": "client_credentials", "scope": "decisions",
            "client_assertion_type": BEARER,
            "client_assertion": signed or _assertion(setup["system"], setup["key"]), **extra}


def _count(app, table, where=""):
    with app.app_context():
        return flask_db.session().execute(
            sa.text(f"SELECT count(*) FROM {table} {where}")).scalar_one()


def _events(app, kind):
    with app.app_context():
        records = [json.loads(r) for r in flask_db.session().execute(
            sa.text("SELECT record FROM audit_events ORDER BY seq")).scalars()]
    return [r for r in records if r["type"] == kind]


class WriteTransactions:
    """Counts write transactions (``BEGIN IMMEDIATE`` on SQLite) opened on the app's engine."""

    def __init__(self, app):
        self.count = 0
        with app.app_context():
            self.engine = flask_db.engine

    def _on_begin(self, conn):
        if conn.get_execution_options().get(WRITE_OPTION):
            self.count += 1

    def __enter__(self):
        sa.event.listen(self.engine, "begin", self._on_begin)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "begin", self._on_begin)


# -- client credentials ---------------------------------------------------------------------------

def test_a_client_credentials_token_takes_one_write_transaction(demo_app, setup):
    client = demo_app.test_client()
    with WriteTransactions(demo_app) as writes:
        response = client.post("/oauth/token", data=_form(setup))
    assert response.status_code == 200, response.get_json()
    assert writes.count == 1  # replay entry, grant, token and audit event together
    claims = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
    assert _count(demo_app, "oauth_access_tokens", f"WHERE jti = '{claims['jti']}'") == 1
    assert _count(demo_app, "replay_entries", "WHERE scope = 'assertion'") == 1
    issued = _events(demo_app, "oauth.token_issued")
    assert [e["detail"]["jti"] for e in issued] == [claims["jti"]]


def test_a_replayed_assertion_is_refused_and_leaves_no_token(demo_app, setup):
    client = demo_app.test_client()
    data = _form(setup)
    assert client.post("/oauth/token", data=data).status_code == 200
    replayed = client.post("/oauth/token", data=data)
    assert replayed.status_code == 400
    assert replayed.get_json()["error"] == "invalid_client"
    assert _count(demo_app, "oauth_access_tokens") == 1
    assert _count(demo_app, "oauth_grants") == 1
    assert len(_events(demo_app, "oauth.token_issued")) == 1
    failures = _events(demo_app, "oauth.client_authentication")
    assert [f["reason"] for f in failures] == ["jti_replayed"]


def test_racing_requests_with_one_assertion_get_exactly_one_token(demo_app, setup):
    data = _form(setup)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def post():
        client = demo_app.test_client()
        barrier.wait()
        statuses.append(client.post("/oauth/token", data=data).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 400, 400, 400]
    assert _count(demo_app, "oauth_access_tokens") == 1
    assert len(_events(demo_app, "oauth.token_issued")) == 1


def test_an_assertion_of_a_refused_request_cannot_be_used_again(demo_app, setup):
    client = demo_app.test_client()
    signed = _assertion(setup["system"], setup["key"])
    refused = client.post("/oauth/token", data=_form(setup, signed, resource=UNKNOWN))
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_target"
    again = client.post("/oauth/token", data=_form(setup, signed))
    assert again.get_json()["error"] == "invalid_client"
    assert _count(demo_app, "oauth_access_tokens") == 0
    assert [f["reason"] for f in _events(demo_app, "oauth.client_authentication")] == [
        "jti_replayed"]


def test_a_replayed_assertion_is_invalid_client_whatever_else_is_wrong(demo_app, setup):
    client = demo_app.test_client()
    signed = _assertion(setup["system"], setup["key"])
    assert client.post("/oauth/token", data=_form(setup, signed)).status_code == 200
    response = client.post("/oauth/token", data=_form(setup, signed, resource=UNKNOWN))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_client"  # not invalid_target
    assert _count(demo_app, "oauth_access_tokens") == 1


def test_a_disabled_client_is_refused_at_once(demo_app, setup):
    client = demo_app.test_client()
    assert client.post("/oauth/token", data=_form(setup)).status_code == 200
    with demo_app.app_context():
        registry.set_client_enabled(flask_db.session(), setup["system"], False, actor="test")
    response = client.post("/oauth/token", data=_form(setup))
    assert response.get_json()["error"] == "invalid_client"
    assert _count(demo_app, "oauth_access_tokens") == 1


def test_changed_client_keys_take_effect_at_once(demo_app, setup):
    client = demo_app.test_client()
    assert client.post("/oauth/token", data=_form(setup)).status_code == 200
    new_key = ec.generate_private_key(ec.SECP256R1())
    numbers = new_key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k2",
                      "x": b64(numbers.x.to_bytes(32, "big")),
                      "y": b64(numbers.y.to_bytes(32, "big"))}]}
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            session.execute(sa.text("UPDATE clients SET jwks = :jwks WHERE client_id = :id"),
                            {"jwks": json.dumps(jwks), "id": setup["system"]})
    old = client.post("/oauth/token", data=_form(setup))
    assert old.get_json()["error"] == "invalid_client"
    new = client.post("/oauth/token", data=_form(
        setup, _assertion(setup["system"], new_key, kid="k2")))
    assert new.status_code == 200, new.get_json()


# -- pairwise subjects ----------------------------------------------------------------------------

def test_a_patient_token_records_the_pairwise_subject_once(demo_app, logged_in, setup):
    client = demo_app.test_client()
    for attempt in range(2):  # a second authorization: same sub, still one row
        verifier, challenge = pkce()
        query = code_from(approve(logged_in, authorize_params(
            setup["public"], challenge, nonce=f"n-{attempt}")))
        response = exchange(client, setup, query["code"][0], verifier)
        assert response.status_code == 200, response.get_json()
    refreshed = client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": response.get_json()["refresh_token"],
        "client_id": setup["public"]})
    assert refreshed.status_code == 200, refreshed.get_json()
    sub = jwt.decode(refreshed.get_json()["access_token"],
                     options={"verify_signature": False})["sub"]
    with demo_app.app_context():
        rows = flask_db.session().execute(sa.text(
            "SELECT institution_id, sub, account_id FROM pairwise_subjects")).all()
        patient = flask_db.session().execute(sa.text(
            "SELECT account_id FROM oauth_grants WHERE account_id IS NOT NULL")).scalars().first()
    assert [tuple(r) for r in rows] == [(setup["institution"], sub, patient)]


def test_a_client_credentials_token_records_no_pairwise_subject(demo_app, setup):
    assert demo_app.test_client().post("/oauth/token", data=_form(setup)).status_code == 200
    assert _count(demo_app, "pairwise_subjects") == 0


# -- introspection --------------------------------------------------------------------------------

@pytest.fixture
def servers(demo_app, setup):
    """One resource server (RFC 8707 ``RECORDS``) allowed to introspect, with its key."""
    with demo_app.app_context():
        session = flask_db.session()
        institution = registry.add_institution(session, registry.InstitutionSpec(
            "記録サーバ", "resource_server", "RS-PERF"), actor="test")
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "rs",
                          "x": b64(numbers.x.to_bytes(32, "big")),
                          "y": b64(numbers.y.to_bytes(32, "big"))}]}
        made = registry.add_client(session, registry.ClientSpec(
            institution=institution.id, name="RS", auth_method="private_key_jwt",
            redirect_uris=[], scope="introspect", jwks=json.dumps(jwks),
            resource_uri=RECORDS), actor="test")
        client_id = made.client_id
        flask_db.session.remove()
    return {RECORDS: (client_id, key)}


@pytest.fixture
def records_token(demo_app, setup, servers):
    response = demo_app.test_client().post("/oauth/token", data=_form(setup, resource=RECORDS))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def test_introspection_takes_one_write_transaction(demo_app, servers, records_token):
    client = demo_app.test_client()
    with WriteTransactions(demo_app) as writes:
        response = introspect(client, servers, RECORDS, records_token)
    assert response.get_json()["active"] is True
    assert writes.count == 1  # the caller's assertion jti and the audit event together
    assert _count(demo_app, "replay_entries", "WHERE scope = 'assertion'") == 2


def test_introspection_refuses_a_replayed_assertion(demo_app, servers, records_token):
    client = demo_app.test_client()
    client_id, key = servers[RECORDS]
    data = {"token": records_token, "client_assertion_type": BEARER,
            "client_assertion": _assertion(client_id, key, kid="rs")}
    assert client.post("/oauth/introspect", data=data).get_json()["active"] is True
    replayed = client.post("/oauth/introspect", data=data)
    assert replayed.status_code == 400
    assert replayed.get_json()["error"] == "invalid_client"
    assert len(_events(demo_app, "oauth.introspection")) == 1
    assert [f["reason"] for f in _events(demo_app, "oauth.client_authentication")] == [
        "jti_replayed"]
    # a refused introspection (no token) burns its assertion too
    data["client_assertion"] = _assertion(client_id, key, kid="rs")
    missing = client.post("/oauth/introspect", data={**data, "token": ""})
    assert missing.get_json()["error"] == "invalid_request"
    again = client.post("/oauth/introspect", data=data)
    assert again.get_json()["error"] == "invalid_client"


def test_introspection_sees_a_revoked_grant_at_once(demo_app, servers, records_token):
    client = demo_app.test_client()
    assert introspect(client, servers, RECORDS, records_token).get_json()["active"] is True
    jti = jwt.decode(records_token, options={"verify_signature": False})["jti"]
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            session.execute(sa.text(
                "UPDATE oauth_grants SET revoked_at = CURRENT_TIMESTAMP WHERE id = "
                "(SELECT grant_id FROM oauth_access_tokens WHERE jti = :jti)"), {"jti": jti})
    assert introspect(client, servers, RECORDS, records_token).get_json() == {"active": False}


def _resigned(token, header, payload=None, key=None):
    """The token with a new header (and payload), signed again by ``key`` (or not at all)."""
    _, body, signature = token.split(".")
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode()) if payload is not None else body
    if key is None:
        return f"{head}.{body}.{signature}"
    return jwt.api_jws.encode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), key,
                              algorithm="ES256", headers=header)


def test_introspection_verifies_our_signature_strictly(demo_app, servers, records_token):
    client = demo_app.test_client()
    header = jwt.get_unverified_header(records_token)
    head, body, signature = records_token.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = [
        _resigned(records_token, {**header, "alg": "none"}),
        _resigned(records_token, {**header, "typ": "JWT"}),
        _resigned(records_token, {**header, "kid": ["list"]}),
        _resigned(records_token, {**header, "kid": "unknown"}),
        _resigned(records_token, {**header, "crit": ["exp"]}),
        _resigned(records_token, header, key=stranger),  # right kid, wrong key
        f"{head}.{body}.{b64(raw[:32] + bytes(32))}",
        f"{head}.{body}.{b64(raw + b'x')}",
        f"{head}.{body}x.{signature}",
        records_token + ".x",
    ]
    for token in forged:
        assert introspect(client, servers, RECORDS, token).get_json() == {"active": False}
    with demo_app.app_context():
        session = flask_db.session()
        assert inspection.verified_claims(session, records_token, ISSUER, utcnow()) is not None
