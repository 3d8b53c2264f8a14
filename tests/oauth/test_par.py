"""Pushed authorization requests (RFC 9126)."""

from __future__ import annotations

import re

import pytest
from oauth_support import ISSUER
from oauth_support import REDIRECT
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce


def push(client, params):
    return client.post("/oauth/par", data=params)


def consent(browser, query):
    page = browser.get("/oauth/authorize", query_string=query)
    assert page.status_code == 200, page.get_data(as_text=True)[:400]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return browser.post("/oauth/authorize", query_string=query,
                        data={"csrf": csrf, "decision": "approve"}, headers={"Origin": ISSUER})


def test_pushed_request_flow_and_its_request_uri_dies_after_use(demo_app, logged_in, setup):
    verifier, challenge = pkce()
    pushed = push(demo_app.test_client(), authorize_params(setup["public"], challenge))
    assert pushed.status_code == 201, pushed.get_json()
    body = pushed.get_json()
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert 0 < body["expires_in"] < 600
    query = {"client_id": setup["public"], "request_uri": body["request_uri"]}
    result = code_from(consent(logged_in, query))
    assert result["state"] == ["st-1"]
    tokens = exchange(demo_app.test_client(), setup, result["code"][0], verifier)
    assert tokens.status_code == 200
    reused = logged_in.get("/oauth/authorize", query_string=query)
    assert reused.status_code == 400
    assert "invalid_request_uri" in reused.get_data(as_text=True)


@pytest.mark.parametrize(("change", "error"), [
    ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"request_uri": "urn:ietf:params:oauth:request_uri:x"}, "invalid_request"),
    ({"resource": "https://unknown.example/"}, "invalid_target"),
])
def test_bad_pushed_requests_get_json_errors_never_redirects(demo_app, setup, change, error):
    _verifier, challenge = pkce()
    response = push(demo_app.test_client(), authorize_params(setup["public"], challenge,
                                                             **change))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.get_json()["error"] == error


def test_a_request_uri_belongs_to_its_client(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    body = push(demo_app.test_client(), authorize_params(setup["public"], challenge)).get_json()
    stolen = logged_in.get("/oauth/authorize", query_string={
        "client_id": setup["system"], "request_uri": body["request_uri"]})
    assert stolen.status_code == 400


def test_par_can_be_required(app_factory, sim_template, tmp_path):
    import shutil

    shutil.copytree(sim_template, tmp_path / "instance" / "jpki-sim", dirs_exist_ok=True)
    app = app_factory(AUTHZ_DEMO=True, AUTHZ_REQUIRE_PAR=True)
    client = app.test_client()
    response = client.get("/oauth/authorize", query_string={
        "response_type": "code", "client_id": "x", "redirect_uri": REDIRECT})
    assert response.status_code == 400
    assert "Location" not in response.headers
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["require_pushed_authorization_requests"] is True
