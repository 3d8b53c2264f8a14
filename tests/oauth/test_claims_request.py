"""The ``claims`` request (OIDC Core §5.5, OIDC4IDA §6): stored with the grant, honoured by
UserInfo and the ID token, and never more than the approved scope releases."""

from __future__ import annotations

import json

import jwt
import pytest
from oauth_support import ISSUER
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import jwks_key
from test_code_flow import pkce

from authz.oauth.userinfo import InvalidClaimsRequest
from authz.oauth.userinfo import filter_verified_claims
from authz.oauth.userinfo import parse_claims_request


def tokens_for(demo_app, browser, setup, claims=None, scope="openid profile offline_access"):
    verifier, challenge = pkce()
    extra = {"claims": json.dumps(claims)} if claims is not None else {}
    query = code_from(approve(browser, authorize_params(setup["public"], challenge,
                                                        scope=scope, **extra)))
    response = exchange(demo_app.test_client(), setup, query["code"][0], verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def userinfo(demo_app, tokens):
    response = demo_app.test_client().get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def id_token(demo_app, tokens, setup):
    key = jwks_key(demo_app.test_client(), tokens["id_token"])
    return jwt.decode(tokens["id_token"], key, algorithms=["ES256"], audience=setup["public"],
                      issuer=ISSUER)


def test_without_a_claims_request_userinfo_is_scope_based(demo_app, logged_in, setup):
    tokens = tokens_for(demo_app, logged_in, setup)
    body = userinfo(demo_app, tokens)
    assert set(body["verified_claims"]["claims"]) >= {"name", "birthdate", "address"}
    assert set(body["verified_claims"]["verification"]) == {
        "trust_framework", "time", "verification_process", "evidence"}
    claims = id_token(demo_app, tokens, setup)
    assert "verified_claims" not in claims and "name" not in claims


def test_verified_claims_are_cut_to_the_request(demo_app, logged_in, setup):
    request = {"userinfo": {"verified_claims": {
        "verification": {"trust_framework": None},
        "claims": {"given_name": None, "birthdate": {"essential": True}, "nickname": None}}}}
    body = userinfo(demo_app, tokens_for(demo_app, logged_in, setup, request))
    assert set(body) == {"sub", "verified_claims"}
    assert body["verified_claims"]["claims"] == {"given_name": "花子",
                                                 "birthdate": "1985-03-15"}
    # OIDC4IDA §6: trust_framework always, the other verification members only when asked
    assert set(body["verified_claims"]["verification"]) == {"trust_framework"}


def test_verification_members_and_evidence_when_asked(demo_app, logged_in, setup):
    request = {"userinfo": {"verified_claims": {
        "verification": {"time": None, "evidence": [
            {"type": {"value": "electronic_signature"}, "signature_type": None}]},
        "claims": {"name": None}}}}
    body = userinfo(demo_app, tokens_for(demo_app, logged_in, setup, request))
    verification = body["verified_claims"]["verification"]
    assert set(verification) == {"trust_framework", "time", "evidence"}
    assert verification["evidence"] == [{"type": "electronic_signature",
                                         "signature_type": "jp_jpki_signature_certificate"}]


def test_another_trust_framework_gets_no_verified_claims(demo_app, logged_in, setup):
    request = {"userinfo": {"verified_claims": {
        "verification": {"trust_framework": {"value": "eidas"}},
        "claims": {"name": None}}}}
    body = userinfo(demo_app, tokens_for(demo_app, logged_in, setup, request))
    assert body == {"sub": body["sub"]}


def test_individual_claims_for_userinfo_and_the_id_token(demo_app, logged_in, setup):
    request = {"userinfo": {"birthdate": None},
               "id_token": {"given_name": {"essential": True},
                            "verified_claims": {"claims": {"family_name": None}},
                            "acr": {"values": ["urn:mdx:acr:jpki-auth"]}}}
    tokens = tokens_for(demo_app, logged_in, setup, request)
    assert userinfo(demo_app, tokens) == {"sub": userinfo(demo_app, tokens)["sub"],
                                          "birthdate": "1985-03-15"}
    claims = id_token(demo_app, tokens, setup)
    assert claims["given_name"] == "花子"
    assert claims["verified_claims"]["claims"] == {"family_name": "山田"}
    assert claims["acr"] == "urn:mdx:acr:jpki-auth"
    assert "birthdate" not in claims


def test_nothing_beyond_the_approved_scope(demo_app, logged_in, setup):
    request = {"userinfo": {"name": None, "verified_claims": {"claims": {"name": None}}},
               "id_token": {"birthdate": None}}
    tokens = tokens_for(demo_app, logged_in, setup, request, scope="openid offline_access")
    assert set(userinfo(demo_app, tokens)) == {"sub"}
    assert "birthdate" not in id_token(demo_app, tokens, setup)


def test_an_id_token_only_request_leaves_userinfo_scope_based(demo_app, logged_in, setup):
    tokens = tokens_for(demo_app, logged_in, setup, {"id_token": {"auth_time": None}})
    assert "verified_claims" in userinfo(demo_app, tokens)


@pytest.mark.parametrize("raw", [
    "[]", "not json", json.dumps({"access_token": {}}), json.dumps({"userinfo": []}),
    json.dumps({"userinfo": {"name": "yes"}}),
    json.dumps({"userinfo": {"name": {"essential": "yes"}}}),
    json.dumps({"userinfo": {"name": {"values": "a"}}}),
    json.dumps({"userinfo": {"verified_claims": {"verification": {}}}}),
    json.dumps({"userinfo": {"verified_claims": {"claims": {}}}}),
    json.dumps({"userinfo": {"verified_claims": [{"claims": {"name": None}}] * 5}}),
    json.dumps({"userinfo": {"verified_claims": {"claims": {"name": None},
                                                 "verification": {"evidence": {}}}}}),
    json.dumps({"userinfo": {f"c{i}": None for i in range(40)}}),
    json.dumps({"userinfo": {"name": None, "pad": "x" * 5000}}),
])
def test_malformed_claims_requests_are_refused(raw):
    with pytest.raises(InvalidClaimsRequest):
        parse_claims_request(raw)


def test_a_malformed_claims_request_is_an_error_redirect(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    response = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, claims=json.dumps({"userinfo": {"name": "yes"}})))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "error=invalid_request" in location and "code=" not in location


def test_the_first_answerable_verified_claims_request_wins():
    full = {"verification": {"trust_framework": "tf", "time": "t", "verification_process": "v",
                             "evidence": []},
            "claims": {"name": "n", "birthdate": "b"}}
    chosen = filter_verified_claims(full, [
        {"verification": {"trust_framework": {"values": ["other"]}}, "claims": {"name": None}},
        {"claims": {"birthdate": None, "email": None}}])
    assert chosen == {"verification": {"trust_framework": "tf"}, "claims": {"birthdate": "b"}}
    assert filter_verified_claims(full, {"claims": {"email": None}}) is None
