"""DPoP server nonces (RFC 9449 §8, §9) and ``dpop_jkt`` at PAR and authorization (§10)."""

from __future__ import annotations

import shutil

import pytest
from oauth_support import ISSUER
from oauth_support import REDIRECT
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import pkce
from test_dpop_flow import TOKEN_URL
from test_dpop_flow import USERINFO_URL
from test_dpop_flow import Holder
from test_dpop_flow import token_request
from test_par import consent

from authz.extensions import db as flask_db

PAR_URL = f"{ISSUER}/oauth/par"


def test_token_endpoint_demands_a_nonce_and_hands_out_fresh_ones(demo_app, logged_in, setup):
    client = demo_app.test_client()
    holder = Holder()
    verifier, challenge = pkce()
    code = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))["code"][0]
    first = token_request(client, setup, code, verifier, holder.proof("POST", TOKEN_URL))
    assert first.status_code == 400
    assert first.get_json()["error"] == "use_dpop_nonce"
    assert first.headers["Cache-Control"] == "no-store"
    holder.nonce = first.headers["DPoP-Nonce"]
    # a made-up nonce is refused the same way; the code survives both
    stale = token_request(client, setup, code, verifier,
                          holder.proof("POST", TOKEN_URL, nonce="A" * 32))
    assert stale.get_json()["error"] == "use_dpop_nonce"
    ok = token_request(client, setup, code, verifier, holder.proof("POST", TOKEN_URL))
    assert ok.status_code == 200, ok.get_json()
    assert ok.headers["DPoP-Nonce"]  # §8.2: the next nonce, with the answer
    tokens = ok.get_json()
    # UserInfo as a resource (§9): 401 use_dpop_nonce with its nonce, then success
    holder.nonce = None
    asked = client.get("/oauth/userinfo", headers={
        "Authorization": f"DPoP {tokens['access_token']}",
        "DPoP": holder.proof("GET", USERINFO_URL, tokens["access_token"])})
    assert asked.status_code == 401
    assert 'DPoP error="use_dpop_nonce"' in asked.headers["WWW-Authenticate"]
    holder.nonce = asked.headers["DPoP-Nonce"]
    answered = client.get("/oauth/userinfo", headers={
        "Authorization": f"DPoP {tokens['access_token']}",
        "DPoP": holder.proof("GET", USERINFO_URL, tokens["access_token"])})
    assert answered.status_code == 200, answered.get_json()
    assert answered.headers["DPoP-Nonce"]


def test_nonces_can_be_turned_off(app_factory, sim_template, tmp_path):
    shutil.copytree(sim_template, tmp_path / "instance" / "jpki-sim", dirs_exist_ok=True)
    app = app_factory(AUTHZ_DEMO=True, AUTHZ_DPOP_NONCE=False)
    try:
        response = app.test_client().post(
            "/oauth/token", data={"grant_type": "client_credentials"},
            headers={"DPoP": Holder().proof("POST", TOKEN_URL)})
        assert response.get_json()["error"] != "use_dpop_nonce"
        assert "DPoP-Nonce" not in response.headers
    finally:
        with app.app_context():
            flask_db.session.remove()
            flask_db.engine.dispose()  # no pooled connection left for the GC to find


def test_par_binds_the_code_to_the_proof_key(demo_app, logged_in, setup):
    client = demo_app.test_client()
    holder = Holder()
    verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge)
    first = client.post("/oauth/par", data=params,
                        headers={"DPoP": holder.proof("POST", PAR_URL)})
    assert (first.status_code, first.get_json()["error"]) == (400, "use_dpop_nonce")
    holder.nonce = first.headers["DPoP-Nonce"]
    pushed = client.post("/oauth/par", data=params,
                         headers={"DPoP": holder.proof("POST", PAR_URL)})
    assert pushed.status_code == 201, pushed.get_json()
    holder.nonce = pushed.headers["DPoP-Nonce"]  # good at the token endpoint too
    code = code_from(consent(logged_in, {"client_id": setup["public"],
                                         "request_uri": pushed.get_json()["request_uri"]}))
    code = code["code"][0]
    other = Holder().ready(client)
    wrong = token_request(client, setup, code, verifier, other.proof("POST", TOKEN_URL))
    assert (wrong.status_code, wrong.get_json()["error"]) == (400, "invalid_grant")
    ok = token_request(client, setup, code, verifier, holder.proof("POST", TOKEN_URL))
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["token_type"] == "DPoP"


def test_par_refuses_a_dpop_jkt_that_is_not_the_proof_key(demo_app, setup):
    client = demo_app.test_client()
    holder = Holder().ready(client)
    _verifier, challenge = pkce()
    response = client.post("/oauth/par", data=authorize_params(
        setup["public"], challenge, dpop_jkt=Holder().jkt),
        headers={"DPoP": holder.proof("POST", PAR_URL)})
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_dpop_proof")
    malformed = client.post("/oauth/par", data=authorize_params(
        setup["public"], challenge, dpop_jkt="not-a-thumbprint"))
    assert (malformed.status_code, malformed.get_json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("proof", ["none", "other key", "right key"])
def test_dpop_jkt_at_the_authorization_endpoint(demo_app, logged_in, setup, proof):
    client = demo_app.test_client()
    holder = Holder().ready(client)
    verifier, challenge = pkce()
    code = code_from(approve(logged_in, authorize_params(
        setup["public"], challenge, dpop_jkt=holder.jkt)))["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": setup["public"], "code_verifier": verifier}
    headers = {}
    if proof != "none":
        signer = holder if proof == "right key" else Holder().ready(client)
        headers["DPoP"] = signer.proof("POST", TOKEN_URL)
    response = client.post("/oauth/token", data=data, headers=headers)
    if proof == "right key":
        assert response.status_code == 200, response.get_json()
    else:
        assert (response.status_code, response.get_json()["error"]) == (400, "invalid_grant")
        assert "access_token" not in response.get_json()


def test_a_malformed_dpop_jkt_is_an_error_redirect(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    response = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, dpop_jkt="x" * 10))
    assert response.status_code == 302
    assert "error=invalid_request" in response.headers["Location"]
