"""DPoP (RFC 9449) at the token endpoint, on refresh, at UserInfo and in introspection."""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from oauth_support import ISSUER
from oauth_support import REDIRECT
from oauth_support import b64
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import pkce

TOKEN_URL = f"{ISSUER}/oauth/token"
USERINFO_URL = f"{ISSUER}/oauth/userinfo"


class Holder:
    """A client's DPoP key, signing proofs like a real client library would."""

    def __init__(self) -> None:
        self.nonce: str | None = None
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")),
                    "y": b64(numbers.y.to_bytes(32, "big"))}

    def proof(self, method: str, url: str, access_token: str | None = None,
              **overrides: object) -> str:
        claims: dict[str, object] = {"htm": method, "htu": url, "iat": int(time.time()),
                                     "jti": secrets.token_urlsafe(12)}
        if self.nonce:
            claims["nonce"] = self.nonce
        if access_token:
            claims["ath"] = b64(hashlib.sha256(access_token.encode()).digest())
        claims.update(overrides)
        return jwt.encode(claims, self.key, algorithm="ES256",
                          headers={"typ": "dpop+jwt", "jwk": self.jwk})

    def ready(self, client) -> Holder:
        """RFC 9449 §8: the first proof is answered use_dpop_nonce with a nonce to use."""
        first = client.post("/oauth/token", headers={"DPoP": self.proof("POST", TOKEN_URL)},
                            data={"grant_type": "client_credentials"})
        assert first.get_json()["error"] == "use_dpop_nonce"
        self.nonce = first.headers["DPoP-Nonce"]
        return self

    @property
    def jkt(self) -> str:
        members = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")},
                             sort_keys=True, separators=(",", ":"))  # RFC 7638 §3
        return b64(hashlib.sha256(members.encode()).digest())


def code_for(logged_in, setup):
    verifier, challenge = pkce()
    query = code_from(approve(logged_in, authorize_params(
        setup["public"], challenge, nonce=secrets.token_urlsafe(8))))
    return query["code"][0], verifier


def token_request(client, setup, code, verifier, proof):
    return client.post("/oauth/token", headers={"DPoP": proof}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": setup["public"], "code_verifier": verifier})


def test_dpop_bound_tokens_end_to_end(demo_app, logged_in, setup):
    client = demo_app.test_client()
    holder = Holder().ready(client)
    code, verifier = code_for(logged_in, setup)
    response = token_request(client, setup, code, verifier, holder.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    assert tokens["token_type"] == "DPoP"
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": holder.jkt}
    # UserInfo: the bound token needs a proof of the same key, with ath
    ok = client.get("/oauth/userinfo", headers={
        "Authorization": f"DPoP {tokens['access_token']}",
        "DPoP": holder.proof("GET", USERINFO_URL, tokens["access_token"])})
    assert ok.status_code == 200, ok.get_json()
    as_bearer = client.get("/oauth/userinfo",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert as_bearer.status_code == 401
    other = Holder().ready(client)
    stolen = client.get("/oauth/userinfo", headers={
        "Authorization": f"DPoP {tokens['access_token']}",
        "DPoP": other.proof("GET", USERINFO_URL, tokens["access_token"])})
    assert stolen.status_code == 401
    # the refresh token is bound to the key too (public client, RFC 9449 §5)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
               "client_id": setup["public"]}
    assert client.post("/oauth/token", data=refresh).status_code == 400
    assert client.post("/oauth/token", data=refresh,
                       headers={"DPoP": other.proof("POST", TOKEN_URL)}).status_code == 400
    rotated = client.post("/oauth/token", data=refresh,
                          headers={"DPoP": holder.proof("POST", TOKEN_URL)})
    assert rotated.status_code == 200, rotated.get_json()
    assert rotated.get_json()["token_type"] == "DPoP"


@pytest.mark.parametrize("mutation", [
    {"htm": "GET"},
    {"htu": f"{ISSUER}/oauth/other"},
    {"htu": "https://evil.example/oauth/token"},
    {"iat": int(time.time()) - 3600},
    {"iat": int(time.time()) + 3600},
])
def test_bad_proofs_are_refused_and_nothing_is_issued(demo_app, logged_in, setup, mutation):
    client = demo_app.test_client()
    holder = Holder().ready(client)
    code, verifier = code_for(logged_in, setup)
    response = token_request(client, setup, code, verifier,
                             holder.proof("POST", TOKEN_URL, **mutation))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_dpop_proof"
    # the code was not consumed by the refused request
    good = token_request(client, setup, code, verifier, holder.proof("POST", TOKEN_URL))
    assert good.status_code == 200


def test_a_replayed_proof_is_refused(demo_app, logged_in, setup):
    client = demo_app.test_client()
    holder = Holder().ready(client)
    proof = holder.proof("POST", TOKEN_URL)
    code, verifier = code_for(logged_in, setup)
    assert token_request(client, setup, code, verifier, proof).status_code == 200
    code, verifier = code_for(logged_in, setup)
    replayed = token_request(client, setup, code, verifier, proof)
    assert replayed.status_code == 400
    assert replayed.get_json()["error"] == "invalid_dpop_proof"


def test_two_dpop_headers_are_refused(demo_app, logged_in, setup):
    holder = Holder().ready(demo_app.test_client())
    code, verifier = code_for(logged_in, setup)
    response = demo_app.test_client().post(
        "/oauth/token",
        headers=[("DPoP", holder.proof("POST", TOKEN_URL)),
                 ("DPoP", holder.proof("POST", TOKEN_URL))],
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
              "client_id": setup["public"], "code_verifier": verifier})
    assert response.status_code == 400


def test_metadata_advertises_dpop(demo_app):
    metadata = demo_app.test_client().get("/.well-known/openid-configuration").get_json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256"]
