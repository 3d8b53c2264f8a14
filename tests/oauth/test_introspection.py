"""Resource indicators (RFC 8707), introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

import json
import secrets
import time

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from oauth_support import REDIRECT
from test_code_flow import ISSUER
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import b64
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce

from authz.extensions import db as flask_db
from authz.registry import service as registry

RECORDS = "https://records.example/fhir"
OTHER = "https://labs.example/fhir"
BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _jwks(private):
    numbers = private.public_key().public_numbers()
    return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "rs",
                                 "x": b64(numbers.x.to_bytes(32, "big")),
                                 "y": b64(numbers.y.to_bytes(32, "big"))}]})


@pytest.fixture
def servers(demo_app, setup):
    """Two resource servers with their own resource URIs and keys."""
    made = {}
    with demo_app.app_context():
        session = flask_db.session()
        for resource, code in ((RECORDS, "RS-1"), (OTHER, "RS-2")):
            institution = registry.add_institution(session, registry.InstitutionSpec(
                f"記録サーバ {code}", "resource_server", code), actor="test")
            key = ec.generate_private_key(ec.SECP256R1())
            client = registry.add_client(session, registry.ClientSpec(
                institution=institution.id, name=code, auth_method="private_key_jwt",
                redirect_uris=[], scope="introspect", jwks=_jwks(key),
                resource_uri=resource), actor="test")
            made[resource] = (client.client_id, key)
        flask_db.session.remove()
    return made


def assertion(client_id, key):
    now = int(time.time())
    return jwt.encode({"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": now,
                       "exp": now + 60, "jti": secrets.token_urlsafe(12)}, key,
                      algorithm="ES256", headers={"kid": "rs"})


def introspect(client, servers, resource, token):
    client_id, key = servers[resource]
    return client.post("/oauth/introspect", data={
        "token": token, "client_assertion_type": BEARER,
        "client_assertion": assertion(client_id, key)})


def tokens_for(demo_app, logged_in, setup, resource=RECORDS):
    verifier, challenge = pkce()
    query = code_from(approve(logged_in, authorize_params(setup["public"], challenge,
                                                          resource=resource)))
    response = exchange(demo_app.test_client(), setup, query["code"][0], verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_token_is_active_only_for_its_own_resource_server(demo_app, logged_in, setup,
                                                            servers):
    tokens = tokens_for(demo_app, logged_in, setup)
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["aud"] == \
        RECORDS
    client = demo_app.test_client()
    mine = introspect(client, servers, RECORDS, tokens["access_token"])
    assert mine.status_code == 200
    body = mine.get_json()
    assert body["active"] is True
    assert body["client_id"] == setup["public"]
    assert body["aud"] == RECORDS
    assert introspect(client, servers, OTHER, tokens["access_token"]).get_json() == {
        "active": False}
    assert introspect(client, servers, RECORDS, "not-a-token").get_json() == {"active": False}
    assert introspect(client, servers, RECORDS,
                      tokens["refresh_token"]).get_json() == {"active": False}
    with demo_app.app_context():
        records = [json.loads(r) for r in flask_db.session().execute(
            sa.text("SELECT record FROM audit_events")).scalars()]
        looked = [r["detail"]["active"] for r in records if r["type"] == "oauth.introspection"]
        assert looked == [1, 0, 0, 0]  # every introspection is audited


def test_revoking_the_refresh_token_ends_the_grant_at_once(demo_app, logged_in, setup, servers):
    tokens = tokens_for(demo_app, logged_in, setup)
    client = demo_app.test_client()
    revoked = client.post("/oauth/revoke", data={"token": tokens["refresh_token"],
                                                 "client_id": setup["public"]})
    assert revoked.status_code == 200
    # the access token is still unexpired, but the grant behind it is gone (DESIGN 4)
    assert introspect(client, servers, RECORDS, tokens["access_token"]).get_json() == {
        "active": False}
    again = client.post("/oauth/token", data={"grant_type": "refresh_token",
                                              "refresh_token": tokens["refresh_token"],
                                              "client_id": setup["public"]})
    assert again.status_code == 400


def test_revoking_an_access_token(demo_app, logged_in, setup, servers):
    tokens = tokens_for(demo_app, logged_in, setup)
    client = demo_app.test_client()
    assert client.post("/oauth/revoke", data={"token": tokens["access_token"],
                                              "client_id": setup["public"]}).status_code == 200
    assert introspect(client, servers, RECORDS, tokens["access_token"]).get_json() == {
        "active": False}
    # unknown tokens are answered 200 too (RFC 7009 §2.2)
    assert client.post("/oauth/revoke", data={"token": "nonsense",
                                              "client_id": setup["public"]}).status_code == 200


def test_introspection_needs_an_authenticated_resource_server(demo_app, logged_in, setup,
                                                              servers):
    tokens = tokens_for(demo_app, logged_in, setup)
    client = demo_app.test_client()
    anonymous = client.post("/oauth/introspect", data={"token": tokens["access_token"]})
    assert anonymous.status_code in (400, 401)
    assert anonymous.get_json()["error"] == "invalid_client"
    system = client.post("/oauth/introspect", data={
        "token": tokens["access_token"], "client_assertion_type": BEARER,
        "client_assertion": jwt.encode(
            {"iss": setup["system"], "sub": setup["system"], "aud": ISSUER,
             "iat": int(time.time()), "exp": int(time.time()) + 60,
             "jti": secrets.token_urlsafe(12)}, setup["key"], algorithm="ES256",
            headers={"kid": "k1"})})
    assert system.status_code == 403
    assert system.get_json()["error"] == "insufficient_scope"
    with demo_app.app_context():
        records = [json.loads(r) for r in flask_db.session().execute(
            sa.text("SELECT record FROM audit_events")).scalars()]
        refused = [r for r in records if r["type"] == "oauth.introspection"]
        assert [r["reason"] for r in refused] == ["insufficient_scope"]


def test_unknown_resources_are_refused(demo_app, logged_in, setup, servers):
    _verifier, challenge = pkce()
    response = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, resource="https://unknown.example/"))
    assert code_from(response)["error"] == ["invalid_target"]
    now = int(time.time())
    signed = jwt.encode({"iss": setup["system"], "sub": setup["system"], "aud": ISSUER,
                         "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12)},
                        setup["key"], algorithm="ES256", headers={"kid": "k1"})
    cc = demo_app.test_client().post("/oauth/token", data={
        "grant_type": "client_credentials", "scope": "decisions",
        "resource": "https://unknown.example/", "client_assertion_type": BEARER,
        "client_assertion": signed})
    assert cc.status_code == 400
    assert cc.get_json()["error"] == "invalid_target"


def test_a_token_cannot_widen_the_audience_the_patient_authorized(demo_app, logged_in, setup,
                                                                  servers):
    verifier, challenge = pkce()
    query = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))
    response = demo_app.test_client().post("/oauth/token", data={
        "grant_type": "authorization_code", "code": query["code"][0],
        "redirect_uri": REDIRECT, "client_id": setup["public"], "code_verifier": verifier,
        "resource": RECORDS})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_target"
