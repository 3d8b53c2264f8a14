"""Authorization code flow with PKCE through the real endpoints, after a real card login."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt
import pytest
import sqlalchemy as sa
from oauth_support import ISSUER
from oauth_support import REDIRECT
from oauth_support import b64

from authz.audit.verify import verify_database
from authz.extensions import db as flask_db
from authz.oauth.models import AccessToken
from authz.oauth.models import RefreshToken


def pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = b64(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


def authorize_params(client, challenge, **extra):
    params = {"response_type": "code", "client_id": client, "redirect_uri": REDIRECT,
              "scope": "openid profile offline_access", "state": "st-1", "nonce": "n-1",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def approve(browser, params):
    page = browser.get("/oauth/authorize", query_string=params)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return browser.post("/oauth/authorize", query_string=params,
                        data={"csrf": csrf, "decision": "approve"},
                        headers={"Origin": ISSUER})


def code_from(response):
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return query


def jwks_key(client, token):
    keys = client.get("/jwks.json").get_json()
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.PyJWKSet.from_dict(keys)[kid].key


def exchange(client, setup, code, verifier):
    return client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": setup["public"], "code_verifier": verifier})


def test_full_code_flow_issues_verifiable_tokens(demo_app, logged_in, setup):
    verifier, challenge = pkce()
    query = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))
    assert query["state"] == ["st-1"]
    assert query["iss"] == [ISSUER]  # RFC 9207
    client = demo_app.test_client()
    response = exchange(client, setup, query["code"][0], verifier)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] <= 300
    assert body["refresh_token"].startswith("azrt_")
    access = body["access_token"]
    assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
    claims = jwt.decode(access, jwks_key(client, access), algorithms=["ES256"], audience=ISSUER)
    assert claims["client_id"] == setup["public"]
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["acr"] == "urn:mdx:acr:jpki-auth"
    id_token = jwt.decode(body["id_token"], jwks_key(client, body["id_token"]),
                          algorithms=["ES256"], audience=setup["public"], issuer=ISSUER)
    assert id_token["nonce"] == "n-1"
    assert id_token["sub"] == claims["sub"]
    assert not id_token["sub"].startswith("pat_")  # pairwise, never the internal id
    assert id_token["amr"] == ["hwk", "sc", "pin", "mfa"]
    with demo_app.app_context():
        assert verify_database(flask_db.session()).ok


def test_a_replayed_code_is_refused_and_revokes_what_it_issued(demo_app, logged_in, setup):
    verifier, challenge = pkce()
    code = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))["code"][0]
    client = demo_app.test_client()
    assert exchange(client, setup, code, verifier).status_code == 200
    again = exchange(client, setup, code, verifier)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    with demo_app.app_context():
        session = flask_db.session()
        assert all(t.revoked_at is not None for t in session.execute(
            sa.select(AccessToken)).scalars())
        assert all(t.revoked_at is not None for t in session.execute(
            sa.select(RefreshToken)).scalars())


def test_refresh_rotates_and_reuse_revokes_the_family(demo_app, logged_in, setup, monkeypatch):
    verifier, challenge = pkce()
    code = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))["code"][0]
    client = demo_app.test_client()
    first = exchange(client, setup, code, verifier).get_json()["refresh_token"]
    rotated = client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                "refresh_token": first,
                                                "client_id": setup["public"]})
    assert rotated.status_code == 200, rotated.get_json()
    second = rotated.get_json()["refresh_token"]
    assert second != first
    from authz.oauth import server

    monkeypatch.setattr(server, "REFRESH_GRACE", server.timedelta(0))
    reused = client.post("/oauth/token", data={"grant_type": "refresh_token",
                                               "refresh_token": first,
                                               "client_id": setup["public"]})
    assert reused.status_code == 400
    after = client.post("/oauth/token", data={"grant_type": "refresh_token",
                                              "refresh_token": second,
                                              "client_id": setup["public"]})
    assert after.status_code == 400  # the whole family is gone
    with demo_app.app_context():
        kinds = [json.loads(r)["reason"] for r in flask_db.session().execute(
            sa.text("SELECT record FROM audit_events")).scalars()
            if json.loads(r)["type"] == "oauth.grant_revoked"]
        assert kinds == ["refresh_token_reused"]


def test_without_a_login_the_authorization_page_sends_to_the_card_login(demo_app, setup):
    browser = demo_app.test_client()
    _verifier, challenge = pkce()
    response = browser.get("/oauth/authorize",
                           query_string=authorize_params(setup["public"], challenge))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(("change", "error"), [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"nonce": None}, "invalid_request"),
    ({"prompt": "none"}, "consent_required"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"claims": "not json"}, "invalid_request"),
    ({"claims": '{"access_token": {}}'}, "invalid_request"),
    ({"response_mode": "fragment"}, "invalid_request"),
])
def test_bad_requests_from_a_known_client_redirect_with_the_error_and_iss(
        demo_app, logged_in, setup, change, error):
    _verifier, challenge = pkce()
    response = logged_in.get("/oauth/authorize",
                             query_string=authorize_params(setup["public"], challenge, **change))
    query = code_from(response)
    assert query["error"] == [error]
    assert query["iss"] == [ISSUER]
    assert query["state"] == ["st-1"]
    assert "code" not in query


@pytest.mark.parametrize("change", [
    {"client_id": "no-such-client"},
    {"redirect_uri": "https://evil.example/cb"},
    {"redirect_uri": REDIRECT + "/"},
    {"redirect_uri": REDIRECT + "?x=1"},
    {"redirect_uri": "https://APP.example/cb"},
    {"redirect_uri": None},  # OIDC Core §3.1.2.1: required for openid requests
])
def test_never_a_redirect_on_a_bad_client_or_redirect_uri(demo_app, logged_in, setup, change):
    _verifier, challenge = pkce()
    response = logged_in.get("/oauth/authorize",
                             query_string=authorize_params(setup["public"], challenge, **change))
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_deny_redirects_access_denied(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge)
    page = logged_in.get("/oauth/authorize", query_string=params)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = logged_in.post("/oauth/authorize", query_string=params,
                              data={"csrf": csrf, "decision": "deny"}, headers={"Origin": ISSUER})
    assert code_from(response)["error"] == ["access_denied"]


def test_consent_form_needs_its_csrf_token(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge)
    response = logged_in.post("/oauth/authorize", query_string=params,
                              data={"csrf": "forged", "decision": "approve"},
                              headers={"Origin": ISSUER})
    assert response.status_code == 400
    assert "Location" not in response.headers


def assertion(setup, *, aud=ISSUER, jti=None, lifetime=120):
    now = int(time.time())
    return jwt.encode({"iss": setup["system"], "sub": setup["system"], "aud": aud,
                       "jti": jti or secrets.token_urlsafe(16), "iat": now,
                       "exp": now + lifetime}, setup["key"], algorithm="ES256",
                      headers={"kid": "k1"})


def test_client_credentials_with_private_key_jwt(demo_app, setup):
    client = demo_app.test_client()
    signed = assertion(setup)
    data = {"grant_type": "client_credentials", "scope": "decisions",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signed}
    response = client.post("/oauth/token", data=data)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()
    assert "refresh_token" not in token
    claims = jwt.decode(token["access_token"], jwks_key(client, token["access_token"]),
                        algorithms=["ES256"], audience=ISSUER)
    assert claims["sub"] == setup["system"]
    assert claims["scope"] == "decisions"
    replayed = client.post("/oauth/token", data=data)
    assert replayed.status_code == 400  # RFC 6749 §5.2: 401 only for the Authorization header
    assert replayed.get_json()["error"] == "invalid_client"
    wrong_aud = client.post("/oauth/token", data={**data, "client_assertion": assertion(
        setup, aud=f"{ISSUER}/oauth/token")})
    assert wrong_aud.get_json()["error"] == "invalid_client"
    with demo_app.app_context():
        reasons = [json.loads(r).get("reason") for r in flask_db.session().execute(
            sa.text("SELECT record FROM audit_events")).scalars()
            if json.loads(r)["type"] == "oauth.client_authentication"]
        assert "jti_replayed" in reasons
        assert len(reasons) == 2


def test_discovery_metadata(demo_app):
    body = demo_app.test_client().get("/.well-known/openid-configuration").get_json()
    assert body["issuer"] == ISSUER
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["id_token_signing_alg_values_supported"] == ["ES256"]
    assert body["response_types_supported"] == ["code"]
    assert body["authorization_response_iss_parameter_supported"] is True
    assert "implicit" not in body["grant_types_supported"]
    assert demo_app.test_client().get(
        "/.well-known/oauth-authorization-server").get_json() == body


def test_repeated_token_parameters_are_refused(demo_app, logged_in, setup):
    verifier, challenge = pkce()
    code = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))["code"][0]
    response = demo_app.test_client().post("/oauth/token", data={
        "grant_type": "authorization_code", "code": [code, "other"], "redirect_uri": REDIRECT,
        "client_id": setup["public"], "code_verifier": verifier})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    # the refused request did not burn the code
    assert exchange(demo_app.test_client(), setup, code, verifier).status_code == 200


def test_a_posted_authorization_request_continues_as_get(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge)
    response = logged_in.post("/oauth/authorize", data=params)
    assert response.status_code == 303
    follow = logged_in.get(response.headers["Location"])
    assert follow.status_code == 200
    assert "decision" in follow.get_data(as_text=True)
