"""DPoP proofs (RFC 9449): every check, replay, thumbprints and server nonces.

Proofs are assembled here by hand with ``cryptography`` (no code shared with the module under
test); ``now`` is always passed explicitly.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from authz.errors import AuthzError
from authz.oauth import dpop

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
URL = "https://as.example.com/oauth/token"
TOKEN = "azat_example-access-token"  # noqa: S105 - a test value
SECRET = b"0123456789abcdef0123456789abcdef"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
NOT_UTF8 = bytes([0xFF, 0xFE])
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B

# RFC 9449 §4.1, Figure 2 (the example proof) and Figures 5/8 (the jkt of its key).
RFC9449_PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0Vj"
    "NoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5"
    "VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TV"
    "CIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8"
    "lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg")
RFC9449_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
# RFC 7638 §3.1: the example RSA key and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
         "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR"
         "0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTW"
         "hAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


# -- building proofs by hand --------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64(raw)


def coordinate(value: int) -> str:
    return b64(value.to_bytes(32, "big"))


def ec_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {"kty": "EC", "crv": {256: "P-256", 384: "P-384"}[key.curve.key_size],
            "x": b64(numbers.x.to_bytes(size, "big")), "y": b64(numbers.y.to_bytes(size, "big"))}


def es_sign(key: ec.EllipticCurvePrivateKey, data: bytes, digest: Any = None) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest or hashes.SHA256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"jti": "jti-1", "htm": "POST", "htu": URL, "iat": int(NOW.timestamp())}
    return {k: v for k, v in {**base, **overrides}.items() if v is not DROP}


DROP = object()


def make(*, header: dict[str, Any] | None = None, payload: Any = None, key: Any = KEY,
         signer: Any = None, signature: bytes | None = None, **claim_overrides: Any) -> str:
    """A proof signed by ``key`` (ES256); overrides make exactly one thing wrong."""
    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk(KEY)}
    head = {k: v for k, v in {**head, **(header or {})}.items() if v is not DROP}
    body = payload if payload is not None else claims(**claim_overrides)
    signing_input = f"{segment(head)}.{segment(body)}".encode()
    if signature is None:
        signature = signer(signing_input) if signer else es_sign(key, signing_input)
    return f"{signing_input.decode()}.{b64(signature)}"


def verify(proof: str, **kwargs: Any) -> dpop.DPoPProof:
    return dpop.verify_proof(proof, **{"method": "POST", "url": URL, "now": NOW, **kwargs})


def ath(token: str) -> str:
    return b64(hashlib.sha256(token.encode("ascii")).digest())


def independent_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3 written out for EC keys: {"crv","kty","x","y"} in that order, no spaces."""
    text = f'{{"crv":"{jwk["crv"]}","kty":"{jwk["kty"]}","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    return b64(hashlib.sha256(text.encode()).digest())


def small_x_point() -> tuple[int, int]:
    """A P-256 point with x < 2**256 - p, so that x + p still fits in 32 bytes."""
    for x in range(1, 1000):
        rhs = (x**3 - 3 * x + P256_B) % P256_P
        if pow(rhs, (P256_P - 1) // 2, P256_P) == 1:
            return x, pow(rhs, (P256_P + 1) // 4, P256_P)  # p = 3 mod 4
    raise AssertionError("no point found")


def rsa_proof() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "e": b64(numbers.e.to_bytes(3, "big")),
           "n": b64(numbers.n.to_bytes(256, "big"))}
    return make(header={"alg": "RS256", "jwk": jwk},
                signer=lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


def hs256_with_public_key_proof() -> str:
    # The classic confusion: HMAC keyed with the public key the verifier holds anyway.
    secret = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return make(header={"alg": "HS256"},
                signer=lambda data: hmac.new(secret, data, hashlib.sha256).digest())


def p384_proof() -> str:
    key = ec.generate_private_key(ec.SECP384R1())
    return make(header={"jwk": ec_jwk(key)}, key=key)


def raw_header_proof(header_json: str) -> str:
    signing_input = f"{b64(header_json.encode())}.{segment(claims())}".encode()
    return f"{signing_input.decode()}.{b64(es_sign(KEY, signing_input))}"


def sized_proof(length: int) -> str:
    """A valid proof of exactly ``length`` characters (padded with an extra claim)."""
    start = max(0, (length - len(make())) * 3 // 4 - 16)
    for pad in range(start, length):
        proof = make(pad="x" * pad)
        if len(proof) == length:
            return proof
    raise AssertionError(f"no padding gives {length} characters")


def jwk_with(**members: Any) -> dict[str, Any]:
    return {**ec_jwk(KEY), **members}


def jwk_without(name: str) -> dict[str, Any]:
    return {k: v for k, v in ec_jwk(KEY).items() if k != name}


# -- a valid proof ------------------------------------------------------------------------------

def test_a_valid_proof_passes_and_says_what_was_proved():
    result = verify(make(jti="abc-123"))
    assert result.jti == "abc-123"
    assert result.htm == "POST"
    assert result.htu == URL
    assert result.iat == NOW
    assert result.jwk == ec_jwk(KEY)
    assert result.jkt == independent_thumbprint(ec_jwk(KEY))
    assert result.nonce is None


def test_the_rfc_9449_example_proof_verifies():
    example_iat = datetime.fromtimestamp(1562262616, UTC)
    result = dpop.verify_proof(RFC9449_PROOF, method="POST",
                               url="https://server.example.com/token", now=example_iat)
    assert result.jkt == RFC9449_JKT
    assert result.jti == "-BwC3ESc6acc2lTc"
    with pytest.raises(dpop.DPoPError, match="too old"):
        dpop.verify_proof(RFC9449_PROOF, method="POST", url="https://server.example.com/token",
                          now=example_iat + timedelta(seconds=301))


def test_extra_public_members_of_the_jwk_are_dropped_and_do_not_change_the_thumbprint():
    result = verify(make(header={"jwk": jwk_with(kid="k1", use="sig", alg="ES256")}))
    assert result.jwk == ec_jwk(KEY)
    assert result.jkt == independent_thumbprint(ec_jwk(KEY))


@pytest.mark.parametrize(("proof_args", "verify_args"), [
    pytest.param({"ath": ath(TOKEN)}, {}, id="ath ignored without an access token"),
    pytest.param({"ath": ath(TOKEN)}, {"access_token": TOKEN}, id="ath matches the token"),
    pytest.param({"nonce": "n-1"}, {"nonce": "n-1"}, id="nonce matches"),
    pytest.param({"nonce": "unasked"}, {}, id="nonce not demanded"),
    pytest.param({"jti": "j" * 256}, {}, id="jti of 256 characters"),
    pytest.param({"jti": "j"}, {}, id="jti of 1 character"),
    pytest.param({"iat": int(NOW.timestamp()) + 5}, {}, id="iat just inside the leeway"),
    pytest.param({"iat": int(NOW.timestamp()) - 300}, {}, id="iat exactly max_age old"),
    pytest.param({"iat": NOW.timestamp() - 0.5}, {}, id="iat with a fraction"),
    pytest.param({"iat": int(NOW.timestamp()) - 20}, {"max_age": timedelta(seconds=30)},
                 id="shorter max_age, still inside"),
    pytest.param({"htu": URL + "?code=abc"}, {}, id="query in htu ignored"),
    pytest.param({"htu": URL + "#frag"}, {}, id="fragment in htu ignored"),
    pytest.param({}, {"url": URL + "?x=1#y"}, id="query in request url ignored"),
    pytest.param({"htu": "https://as.example.com:443/oauth/token"}, {}, id="default port 443"),
    pytest.param({"htu": "http://as.example.com:80/oauth/token"},
                 {"url": "http://as.example.com/oauth/token"}, id="default port 80"),
    pytest.param({"htu": "HTTPS://AS.Example.COM/oauth/token"}, {}, id="scheme and host case"),
    pytest.param({"htu": "https://as.example.com/%6Fauth/token"}, {},
                 id="percent-encoded unreserved character"),
    pytest.param({"htu": "https://as.example.com"}, {"url": "https://as.example.com/"},
                 id="empty path is /"),
    pytest.param({"htm": "GET"}, {"method": "GET"}, id="GET"),
])
def test_valid_variants_pass(proof_args, verify_args):
    verify(make(**proof_args), **verify_args)


# -- every refusal ------------------------------------------------------------------------------

FAILURES = [
    # structure
    pytest.param(lambda: "", {}, "missing", id="empty"),
    pytest.param(lambda: "x" * 8193, {}, "larger than 8 KiB", id="oversize"),
    pytest.param(lambda: make(pad="x" * 9000), {}, "larger than 8 KiB", id="oversize valid JWS"),
    pytest.param(lambda: "not-a-jws", {}, "single JWS", id="one segment"),
    pytest.param(lambda: "abc.def", {}, "single JWS", id="two segments"),
    pytest.param(lambda: make() + ".extra", {}, "single JWS", id="four segments"),
    pytest.param(lambda: "a.b.c.d.e", {}, "single JWS", id="five segments (JWE)"),
    pytest.param(lambda: make().rsplit(".", 1)[0] + ".", {}, "single JWS",
                 id="empty signature"),
    pytest.param(lambda: "..", {}, "single JWS", id="two dots"),
    pytest.param(lambda: make() + ", " + make(jti="2"), {}, "single JWS",
                 id="two proofs (two DPoP headers joined)"),
    pytest.param(lambda: " " + make(), {}, "single JWS", id="leading space"),
    pytest.param(lambda: make().replace(".", "=.", 1), {}, "single JWS",
                 id="base64 padding"),
    pytest.param(lambda: "é" + make(), {}, "single JWS", id="non-ASCII"),
    pytest.param(lambda: raw_header_proof("not json"), {}, "header is not base64url",
                 id="header not JSON"),
    pytest.param(lambda: f"{b64(NOT_UTF8)}.{segment(claims())}.{b64(bytes(64))}", {},
                 "header is not base64url", id="header not UTF-8"),
    pytest.param(lambda: f"{segment([1, 2])}.{segment(claims())}.{b64(bytes(64))}", {},
                 "header is not a JSON object", id="header is an array"),
    pytest.param(lambda: raw_header_proof(
        '{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":' + json.dumps(ec_jwk(KEY)) + "}"),
        {}, "header has duplicate member names", id="duplicate header member"),
    pytest.param(lambda: raw_header_proof("[" * 1500 + "]" * 1500), {},
                 "header is not base64url", id="deeply nested header"),
    pytest.param(lambda: make(payload=b"{\"jti\": NaN}"), {}, "claims is not base64url",
                 id="NaN in claims"),
    pytest.param(lambda: make(payload=b"[]"), {}, "claims is not a JSON object",
                 id="claims is an array"),
    # header: typ, alg, crit
    pytest.param(lambda: make(header={"typ": "JWT"}), {}, "typ must be dpop+jwt", id="typ JWT"),
    pytest.param(lambda: make(header={"typ": "DPoP+JWT"}), {}, "typ must be dpop+jwt",
                 id="typ other case"),
    pytest.param(lambda: make(header={"typ": DROP}), {}, "typ must be dpop+jwt", id="no typ"),
    pytest.param(lambda: make(header={"alg": "none"}, signature=b""), {}, "single JWS",
                 id="alg none, unsigned"),
    pytest.param(lambda: make(header={"alg": "none"}), {}, "alg must be ES256",
                 id="alg none, with a signature"),
    pytest.param(hs256_with_public_key_proof, {}, "alg must be ES256",
                 id="HS256 keyed with the public key"),
    pytest.param(rsa_proof, {}, "alg must be ES256", id="RS256"),
    pytest.param(lambda: make(header={"alg": "ES384"}), {}, "alg must be ES256", id="ES384"),
    pytest.param(lambda: make(header={"alg": DROP}), {}, "alg must be ES256", id="no alg"),
    pytest.param(lambda: make(header={"crit": ["exp"]}), {}, "crit", id="crit"),
    # header: jwk
    pytest.param(lambda: make(header={"jwk": DROP}), {}, "no jwk", id="missing jwk"),
    pytest.param(lambda: make(header={"jwk": "key"}), {}, "jwk is not a JSON object",
                 id="jwk a string"),
    pytest.param(lambda: make(header={"jwk": jwk_with(d=coordinate(
        KEY.private_numbers().private_value))}), {}, "private key members", id="private jwk"),
    pytest.param(lambda: make(header={"jwk": jwk_with(k="c2VjcmV0")}), {}, "private key members",
                 id="symmetric member"),
    pytest.param(p384_proof, {}, "EC P-256", id="wrong curve (P-384)"),
    pytest.param(lambda: make(header={"jwk": jwk_with(kty="RSA")}), {}, "EC P-256",
                 id="kty RSA with EC members"),
    pytest.param(lambda: make(header={"jwk": jwk_without("crv")}), {}, "EC P-256", id="no crv"),
    pytest.param(lambda: make(header={"jwk": jwk_with(x=b64(bytes(31)))}), {}, "32 bytes",
                 id="short x"),
    pytest.param(lambda: make(header={"jwk": jwk_with(y=b64(bytes(33)))}), {}, "32 bytes",
                 id="long y"),
    pytest.param(lambda: make(header={"jwk": jwk_with(x="a+b/")}), {}, "base64url",
                 id="x in standard base64"),
    pytest.param(lambda: make(header={"jwk": jwk_with(y=1)}), {}, "base64url", id="y a number"),
    pytest.param(lambda: make(header={"jwk": jwk_with(y=coordinate(
        (KEY.public_key().public_numbers().y + 1) % P256_P))}), {}, "not a point on P-256",
        id="point off the curve"),
    pytest.param(lambda: make(header={"jwk": {"kty": "EC", "crv": "P-256",
                                              "x": coordinate(small_x_point()[0] + P256_P),
                                              "y": coordinate(small_x_point()[1])}}), {},
                 "not a point on P-256", id="x not reduced mod p"),
    # signature
    pytest.param(lambda: make(key=OTHER_KEY), {}, "does not verify", id="signed by another key"),
    pytest.param(lambda: make(signature=bytes(64)), {}, "does not verify", id="zero signature"),
    pytest.param(lambda: make(signature=bytes(70)), {}, "64 bytes", id="DER-length signature"),
    pytest.param(lambda: make().rsplit(".", 2)[0] + "." + segment(claims(jti="other")) + "."
                 + make().rsplit(".", 1)[1], {}, "does not verify", id="claims swapped"),
    pytest.param(lambda: make(header={"jwk": {"kty": "EC", "crv": "P-256",
                                              "x": coordinate(small_x_point()[0]),
                                              "y": coordinate(small_x_point()[1])}}), {},
                 "does not verify", id="valid point, nobody's key"),
    # jti
    pytest.param(lambda: make(jti=DROP), {}, "no jti", id="missing jti"),
    pytest.param(lambda: make(jti=""), {}, "jti must be", id="empty jti"),
    pytest.param(lambda: make(jti="j" * 257), {}, "jti must be", id="jti too long"),
    pytest.param(lambda: make(jti=42), {}, "jti must be", id="jti a number"),
    # htm
    pytest.param(lambda: make(htm=DROP), {}, "no htm", id="missing htm"),
    pytest.param(lambda: make(htm="GET"), {}, "htm does not match", id="wrong htm"),
    pytest.param(lambda: make(htm="post"), {}, "htm does not match", id="htm lower case"),
    pytest.param(lambda: make(htm=1), {}, "htm must be a string", id="htm a number"),
    # htu
    pytest.param(lambda: make(htu=DROP), {}, "no htu", id="missing htu"),
    pytest.param(lambda: make(htu="https://as.example.com/oauth/par"), {}, "htu does not match",
                 id="wrong path"),
    pytest.param(lambda: make(htu="https://as.example.com/oauth/token/"), {},
                 "htu does not match", id="trailing slash"),
    pytest.param(lambda: make(htu="https://as.example.com/OAUTH/token"), {},
                 "htu does not match", id="path case"),
    pytest.param(lambda: make(htu="https://evil.example.com/oauth/token"), {},
                 "htu does not match", id="wrong host"),
    pytest.param(lambda: make(htu="http://as.example.com/oauth/token"), {}, "htu does not match",
                 id="wrong scheme"),
    pytest.param(lambda: make(htu="https://as.example.com:8443/oauth/token"), {},
                 "htu does not match", id="wrong port"),
    pytest.param(lambda: make(htu="https://as.example.com:80/oauth/token"), {},
                 "htu does not match", id="http default port on https"),
    pytest.param(lambda: make(htu="/oauth/token"), {}, "not an absolute http", id="relative htu"),
    pytest.param(lambda: make(htu="ftp://as.example.com/oauth/token"), {}, "not an absolute http",
                 id="ftp htu"),
    pytest.param(lambda: make(htu="https://user@as.example.com/oauth/token"), {},
                 "not an absolute http", id="userinfo in htu"),
    pytest.param(lambda: make(htu="https://as.example.com/oauth/tok\ten"), {},
                 "not an absolute http", id="tab in htu"),
    pytest.param(lambda: make(htu="https://as.example.com:99999/oauth/token"), {},
                 "not an absolute http", id="port out of range"),
    pytest.param(lambda: make(htu=["https://as.example.com/oauth/token"]), {},
                 "htu must be a string", id="htu a list"),
    # iat
    pytest.param(lambda: make(iat=DROP), {}, "no iat", id="missing iat"),
    pytest.param(lambda: make(iat=int(NOW.timestamp()) - 301), {}, "too old", id="iat too old"),
    pytest.param(lambda: make(iat=int(NOW.timestamp()) - 31), {"max_age": timedelta(seconds=30)},
                 "too old", id="iat older than a shorter max_age"),
    pytest.param(lambda: make(iat=int(NOW.timestamp()) + 6), {}, "in the future",
                 id="iat in the future"),
    pytest.param(lambda: make(iat=str(int(NOW.timestamp()))), {}, "iat must be a number",
                 id="iat a string"),
    pytest.param(lambda: make(iat=True), {}, "iat must be a number", id="iat a boolean"),
    pytest.param(lambda: make(payload=json.dumps(claims()).replace(
        str(int(NOW.timestamp())), "1e400").encode()), {}, "iat must be a number",
        id="iat infinite"),
    pytest.param(lambda: make(iat=10**30), {}, "in the future", id="iat huge"),
    # ath
    pytest.param(lambda: make(), {"access_token": TOKEN}, "no ath", id="ath missing"),
    pytest.param(lambda: make(ath=ath("another token")), {"access_token": TOKEN},
                 "ath does not match", id="ath of another token"),
    pytest.param(lambda: make(ath=ath(TOKEN) + "A"), {"access_token": TOKEN},
                 "ath does not match", id="ath altered"),
    pytest.param(lambda: make(ath=7), {"access_token": TOKEN}, "ath does not match",
                 id="ath a number"),
    pytest.param(lambda: make(nonce=5), {}, "nonce must be a string", id="nonce a number"),
]


@pytest.mark.parametrize(("build", "verify_args", "message"), FAILURES)
def test_invalid_proofs_are_refused(build, verify_args, message):
    with pytest.raises(dpop.DPoPError, match=re.escape(message)) as caught:
        verify(build(), **verify_args)
    assert caught.value.error == dpop.INVALID_DPOP_PROOF
    assert caught.value.code == dpop.INVALID_DPOP_PROOF


@pytest.mark.parametrize(("proof_args", "message"), [
    pytest.param({}, "has no nonce", id="nonce missing"),
    pytest.param({"nonce": "stale"}, "not the current one", id="nonce wrong"),
    pytest.param({"nonce": "N-1"}, "not the current one", id="nonce other case"),
])
def test_a_missing_or_wrong_nonce_asks_for_the_current_one(proof_args, message):
    with pytest.raises(dpop.DPoPError, match=message) as caught:
        verify(make(**proof_args), nonce="n-1")
    assert caught.value.error == dpop.USE_DPOP_NONCE


def test_a_proof_exactly_at_the_size_cap_passes():
    assert verify(sized_proof(8192)).jti == "jti-1"


def test_the_error_is_an_authz_error_with_a_fixed_public_description():
    with pytest.raises(AuthzError) as caught:
        verify(make(htu="https://evil.example.com/<script>"))
    assert caught.value.status == 400
    assert "evil" not in caught.value.description  # never an echo of the proof


def test_a_bad_server_url_is_a_programming_error():
    with pytest.raises(ValueError, match="url must be"):
        verify(make(), url="/oauth/token")


# -- replay -------------------------------------------------------------------------------------

def test_remember_proof_refuses_a_replay(db):
    proof = verify(make(jti="once"))
    dpop.remember_proof(db, proof, NOW)
    with pytest.raises(dpop.DPoPError, match="replayed") as caught:
        dpop.remember_proof(db, verify(make(jti="once")), NOW + timedelta(seconds=1))
    assert caught.value.error == dpop.INVALID_DPOP_PROOF


def test_the_same_jti_from_another_key_is_not_a_replay(db):
    dpop.remember_proof(db, verify(make(jti="shared")), NOW)
    other = make(jti="shared", header={"jwk": ec_jwk(OTHER_KEY)}, key=OTHER_KEY)
    dpop.remember_proof(db, verify(other), NOW)


def test_a_jti_is_remembered_for_as_long_as_its_proof_could_pass(db):
    dpop.remember_proof(db, verify(make(jti="window")), NOW)
    # A proof with iat = NOW + leeway passes until NOW + leeway + max_age.
    last = NOW + timedelta(seconds=304)
    late = make(jti="window", iat=int(NOW.timestamp()) + 5)
    with pytest.raises(dpop.DPoPError, match="replayed"):
        dpop.remember_proof(db, verify(late, now=last), last)
    after = NOW + timedelta(seconds=305)
    dpop.remember_proof(db, verify(make(jti="window", iat=int(after.timestamp())), now=after),
                        after)


# -- thumbprints --------------------------------------------------------------------------------

def test_thumbprint_matches_the_rfc_7638_example():
    assert dpop.thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT


def test_thumbprint_matches_the_rfc_9449_example():
    jwk = {"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
           "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"}
    assert dpop.thumbprint(jwk) == RFC9449_JKT


def test_thumbprint_follows_the_definition_for_any_ec_key():
    for _ in range(5):
        jwk = ec_jwk(ec.generate_private_key(ec.SECP256R1()))
        shuffled = {"y": jwk["y"], "kid": "ignored", "x": jwk["x"], "kty": "EC", "crv": "P-256"}
        assert dpop.thumbprint(shuffled) == independent_thumbprint(jwk)


@pytest.mark.parametrize("jwk", [
    pytest.param({"kty": "oct", "k": "c2VjcmV0"}, id="oct"),
    pytest.param({"kty": "EC", "crv": "P-256", "x": "AA"}, id="EC without y"),
    pytest.param({"kty": "RSA", "n": "AQAB", "e": 3}, id="RSA e not a string"),
    pytest.param({"crv": "P-256", "x": "AA", "y": "AA"}, id="no kty"),
])
def test_thumbprint_refuses_what_it_cannot_hash(jwk):
    with pytest.raises(ValueError, match="JWK|supports"):
        dpop.thumbprint(jwk)


# -- server nonces ------------------------------------------------------------------------------

def test_a_nonce_round_trips_within_its_lifetime():
    nonce = dpop.new_nonce(SECRET, NOW)
    assert len(nonce) == 32
    assert dpop.check_nonce(SECRET, nonce, NOW)
    assert dpop.check_nonce(SECRET, nonce, NOW + timedelta(minutes=5))
    assert not dpop.check_nonce(SECRET, nonce, NOW + timedelta(minutes=5, seconds=1))
    assert dpop.check_nonce(SECRET, nonce, NOW + timedelta(minutes=9),
                            lifetime=timedelta(minutes=10))


def test_a_nonce_from_the_future_is_refused_beyond_the_clock_skew():
    nonce = dpop.new_nonce(SECRET, NOW)
    assert dpop.check_nonce(SECRET, nonce, NOW - timedelta(seconds=5))
    assert not dpop.check_nonce(SECRET, nonce, NOW - timedelta(seconds=6))


def test_another_instance_with_the_same_secret_accepts_the_nonce():
    nonce = dpop.new_nonce(b"0123456789abcdef" * 2, NOW)
    assert dpop.check_nonce(bytes(SECRET), nonce, NOW + timedelta(seconds=30))


def tamper_time(nonce: str, delta: int) -> str:
    raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    stamp = (int.from_bytes(raw[:8], "big") + delta).to_bytes(8, "big")
    return b64(stamp + raw[8:])


def flip_last(nonce: str) -> str:
    return nonce[:-1] + ("A" if nonce[-1] != "A" else "B")


@pytest.mark.parametrize(("mutate", "secret"), [
    pytest.param(lambda n: tamper_time(n, 60), SECRET, id="timestamp moved"),
    pytest.param(flip_last, SECRET, id="MAC altered"),
    pytest.param(lambda n: n, b"another secret of 32 bytes......", id="other secret"),
    pytest.param(lambda n: n[:-1], SECRET, id="truncated"),
    pytest.param(lambda n: n + "A", SECRET, id="extended"),
    pytest.param(lambda n: n[:-1] + "=", SECRET, id="padding character"),
    pytest.param(lambda n: "", SECRET, id="empty"),
    pytest.param(lambda n: "é" * 32, SECRET, id="non-ASCII"),
])
def test_a_tampered_or_foreign_nonce_is_refused(mutate, secret):
    assert not dpop.check_nonce(secret, mutate(dpop.new_nonce(SECRET, NOW)), NOW)


def test_a_short_nonce_secret_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        dpop.new_nonce(b"short", NOW)


def test_require_server_nonce_accepts_a_current_nonce_of_ours():
    fresh = dpop.new_nonce(SECRET, NOW)
    dpop.require_server_nonce(verify(make(nonce=fresh)), SECRET, NOW + timedelta(seconds=10))


@pytest.mark.parametrize(("nonce", "checked_at", "message"), [
    pytest.param(None, NOW, "has no nonce", id="no nonce"),
    pytest.param(dpop.new_nonce(SECRET, NOW), NOW + timedelta(minutes=6), "not the current",
                 id="expired"),
    pytest.param("forged", NOW, "not the current", id="forged"),
])
def test_require_server_nonce_asks_for_a_new_one(nonce, checked_at, message):
    proof = verify(make(nonce=nonce if nonce is not None else DROP))
    with pytest.raises(dpop.DPoPError, match=message) as caught:
        dpop.require_server_nonce(proof, SECRET, checked_at)
    assert caught.value.error == dpop.USE_DPOP_NONCE


# -- layering -----------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["dpop.py", "replay.py"])
def test_the_module_does_not_import_flask(module):
    path = Path(dpop.__file__).with_name(module)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"flask", "flask_sqlalchemy", "werkzeug"}
