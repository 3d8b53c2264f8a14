"""UserInfo with OIDC for Identity Assurance verified claims."""

from __future__ import annotations

from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce

from authz.sim import lifecycle
from authz.sim.card import VirtualCard


def token(demo_app, browser, setup, scope="openid profile offline_access"):
    verifier, challenge = pkce()
    query = code_from(approve(browser, authorize_params(setup["public"], challenge,
                                                        scope=scope)))
    body = exchange(demo_app.test_client(), setup, query["code"][0], verifier).get_json()
    return body


def userinfo(client, access_token, method="get"):
    call = client.get if method == "get" else client.post
    return call("/oauth/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def test_userinfo_returns_the_pairwise_sub_and_verified_claims(demo_app, logged_in, setup):
    tokens = token(demo_app, logged_in, setup)
    client = demo_app.test_client()
    for method in ("get", "post"):
        response = userinfo(client, tokens["access_token"], method)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert not body["sub"].startswith("pat_")
        verified = body["verified_claims"]
        assert verified["claims"]["name"] == "山田 花子"
        assert verified["claims"]["family_name"] == "山田"
        assert verified["claims"]["birthdate"] == "1985-03-15"
        assert verified["claims"]["gender"] == "female"
        evidence = verified["verification"]["evidence"][0]
        assert evidence["type"] == "electronic_signature"
        assert evidence["serial_number"].startswith("ev-")  # never the certificate serial
        assert verified["verification"]["verification_process"]


def test_without_profile_only_the_sub(demo_app, logged_in, setup):
    tokens = token(demo_app, logged_in, setup, scope="openid")
    body = userinfo(demo_app.test_client(), tokens["access_token"]).get_json()
    assert set(body) == {"sub"}


def test_verified_claims_are_withheld_after_a_move(demo_app, browser, issue, sim, setup):
    from card_support import login

    card = issue()
    login(browser, card)
    lifecycle.move(sim, card, address="大阪府大阪市北区見本町一丁目", password="ABCD1234")
    again = demo_app.test_client()
    login(again, VirtualCard.load(card.path))
    tokens = token(demo_app, again, setup)
    body = userinfo(demo_app.test_client(), tokens["access_token"]).get_json()
    assert "verified_claims" not in body


def test_userinfo_refuses_bad_or_revoked_tokens(demo_app, logged_in, setup):
    client = demo_app.test_client()
    missing = client.get("/oauth/userinfo")
    assert missing.status_code == 401
    challenge = missing.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code without a token
    assert userinfo(client, "garbage").status_code == 401
    tokens = token(demo_app, logged_in, setup)
    client.post("/oauth/revoke", data={"token": tokens["refresh_token"],
                                       "client_id": setup["public"]})
    revoked = userinfo(client, tokens["access_token"])
    assert revoked.status_code == 401
    assert revoked.get_json()["error"] == "invalid_token"
