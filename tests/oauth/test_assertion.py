"""RFC 7523 private_key_jwt client assertions: what passes, and a reason for every refusal.

Assertions are assembled by hand here (cryptography + base64url + JSON), so malformed ones can
be built at all, and also by PyJWT and Authlib to show that ordinary client libraries pass.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from authz.errors import AuthzError
from authz.oauth import assertion as module
from authz.oauth.assertion import MAX_ASSERTION_CHARS
from authz.oauth.assertion import REASONS
from authz.oauth.assertion import ClientAssertion
from authz.oauth.assertion import InvalidClientAssertion
from authz.oauth.assertion import replay_key
from authz.oauth.assertion import verify_client_assertion

ISSUER = "https://authz.example.jp"
TOKEN_ENDPOINT = f"{ISSUER}/oauth/token"
PAR_ENDPOINT = f"{ISSUER}/oauth/par"
CLIENT = "hospital-0001"
NOW = datetime(2031, 4, 1, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
LEEWAY = 30  # the default, in seconds
LIFETIME = 300  # the default max_lifetime, in seconds
DROP = object()  # a claim or header override that removes the member

KEY_A = ec.generate_private_key(ec.SECP256R1())
KEY_B = ec.generate_private_key(ec.SECP256R1())
ROGUE = ec.generate_private_key(ec.SECP256R1())  # never registered
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


# -- building assertions ------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str | None) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")),
           "y": b64(numbers.y.to_bytes(32, "big"))}
    return jwk | ({"kid": kid} if kid is not None else {})


JWK_A, JWK_B = public_jwk(KEY_A, "a"), public_jwk(KEY_B, "b")
JWKS = {"keys": [JWK_A, JWK_B]}
ONE_KEY = {"keys": [JWK_A]}


def es256(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """RFC 7518 §3.4: sign, then turn cryptography's DER into R || S."""
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def der_es256(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def rs256(data: bytes) -> bytes:
    return RSA_KEY.sign(data, padding.PKCS1v15(), hashes.SHA256())


def ps256(data: bytes) -> bytes:
    return RSA_KEY.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = base | overrides
    return {k: v for k, v in merged.items() if v is not DROP}


def claims(**overrides: Any) -> dict[str, Any]:
    return apply({"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "exp": T + 120, "iat": T,
                  "jti": "3f0c2a1e-assertion-1"}, overrides)


def header(**overrides: Any) -> dict[str, Any]:
    return apply({"alg": "ES256", "typ": "JWT", "kid": "a"}, overrides)


def encode(part: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(part, dict):
        return json.dumps(part, ensure_ascii=False).encode()
    return part.encode() if isinstance(part, str) else part


def token(head: dict[str, Any] | str | bytes | None = None,
          body: dict[str, Any] | str | bytes | None = None,
          signer: Callable[[bytes], bytes] | None = None) -> str:
    """A compact JWS; JSON given as text or bytes is used verbatim (duplicates, NaN, ...)."""
    signing_input = (b64(encode(header() if head is None else head)) + "."
                     + b64(encode(claims() if body is None else body)))
    signature = (signer or es256(KEY_A))(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def with_segment(assertion: str, index: int, segment: str) -> str:
    parts = assertion.split(".")
    parts[index] = segment
    return ".".join(parts)


def noncanonical(segment: str) -> str:
    """Same bytes, different spelling: set an unused trailing bit of the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3)
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


def raw_claims(**replace: str) -> str:
    """The default claims as JSON text with some members spelled by hand."""
    members = {k: json.dumps(v) for k, v in claims().items()} | replace
    return "{" + ",".join(f'"{k}":{v}' for k, v in members.items()) + "}"


def verify(assertion: Any, jwks: dict[str, Any] = JWKS, **kwargs: Any) -> ClientAssertion:
    return verify_client_assertion(assertion, client_id=CLIENT, jwks=jwks, issuer=ISSUER,
                                   now=NOW, **kwargs)


def sized(total: int) -> str:
    """A valid assertion of exactly ``total`` characters (a padding claim sets the length)."""
    for extra in ({}, {"typ": DROP}, {"typ": "jwt"}):
        for pad in range(total):
            candidate = token(header(**extra), claims(pad="x" * pad))
            if len(candidate) == total:
                return candidate
            if len(candidate) > total:
                break
    raise AssertionError(f"no assertion of length {total}")


VALID = token()
PEM_A = KEY_A.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
POINT_A = KEY_A.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # of P-256

# -- accepted -----------------------------------------------------------------------------------

ACCEPTED = [
    pytest.param(VALID, JWKS, "a", id="kid-a"),
    pytest.param(token(header(kid="b"), signer=es256(KEY_B)), JWKS, "b", id="kid-b"),
    pytest.param(token(header(kid=DROP)), ONE_KEY, "a", id="no-kid-single-key"),
    pytest.param(token(header(typ=DROP)), JWKS, "a", id="no-typ"),
    pytest.param(token(header(typ="jwt")), JWKS, "a", id="typ-lowercase"),
    pytest.param(token(header(typ="application/jwt")), JWKS, "a", id="typ-media-type"),
    pytest.param(token(header(typ="client-authentication+jwt")), JWKS, "a",
                 id="typ-rfc7523bis"),
    pytest.param(token(header(typ="application/client-authentication+jwt")), JWKS, "a",
                 id="typ-rfc7523bis-media-type"),
    pytest.param(token(header(x5t="ignored-thumbprint")), JWKS, "a", id="x5t-ignored"),
    pytest.param(token(body=claims(aud=[ISSUER])), JWKS, "a", id="aud-one-member-array"),
    pytest.param(token(body=claims(iat=DROP)), JWKS, "a", id="no-iat"),
    pytest.param(token(body=claims(exp=T - LEEWAY + 1)), JWKS, "a", id="exp-within-leeway"),
    pytest.param(token(body=claims(exp=T + LIFETIME + LEEWAY)), JWKS, "a",
                 id="exp-at-lifetime-plus-leeway"),
    pytest.param(token(body=claims(nbf=T + LEEWAY)), JWKS, "a", id="nbf-at-leeway"),
    pytest.param(token(body=claims(iat=T + LEEWAY)), JWKS, "a", id="iat-at-leeway"),
    pytest.param(token(body=claims(iat=T - LIFETIME - LEEWAY)), JWKS, "a",
                 id="iat-oldest-allowed"),
    pytest.param(token(body=claims(jti="j" * 256)), JWKS, "a", id="jti-256"),
    pytest.param(token(body=claims(jti="受付-1")), JWKS, "a", id="jti-non-ascii"),
    pytest.param(token(body=claims(scope="decisions", extra={"n": [1, 2]})), JWKS, "a",
                 id="unknown-claims-ignored"),
    pytest.param(token(body=claims(jwk={"kty": "EC"})), JWKS, "a",
                 id="jwk-as-a-claim-is-just-data"),
]


@pytest.mark.parametrize(("assertion", "jwks", "kid"), ACCEPTED)
def test_accepted(assertion: str, jwks: dict[str, Any], kid: str) -> None:
    result = verify(assertion, jwks)
    payload = assertion.split(".")[1]
    exp = datetime.fromtimestamp(json.loads(base64.urlsafe_b64decode(
        payload + "=" * (-len(payload) % 4)))["exp"], tz=UTC)
    assert result.client_id == CLIENT
    assert result.kid == kid
    assert result.exp == exp
    assert result.replay_until == exp + timedelta(seconds=LEEWAY)


def test_result_fields() -> None:
    result = verify(VALID)
    assert result == ClientAssertion(
        client_id=CLIENT, jti="3f0c2a1e-assertion-1", exp=NOW + timedelta(seconds=120), kid="a",
        replay_until=NOW + timedelta(seconds=120 + LEEWAY))
    assert result.exp.tzinfo is UTC


def test_exactly_the_size_cap_passes() -> None:
    assert verify(sized(MAX_ASSERTION_CHARS)).kid == "a"


# -- interoperability ---------------------------------------------------------------------------

def test_pyjwt_assertion_is_accepted() -> None:
    pem = KEY_B.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    assertion = pyjwt.encode(claims(), pem, algorithm="ES256", headers={"kid": "b"})
    assert verify(assertion).kid == "b"


def test_our_hand_made_assertions_verify_with_pyjwt() -> None:
    """The builder above is standard ES256, so its refusals are about the content."""
    decoded = pyjwt.decode(VALID, KEY_A.public_key(), algorithms=["ES256"], audience=ISSUER,
                           options={"verify_exp": False, "verify_iat": False,
                                    "verify_nbf": False})
    assert decoded == claims()


def test_authlib_client_assertion_is_accepted_when_configured_for_fapi() -> None:
    # Authlib's helper defaults to RS256, aud = token endpoint and one hour: all refused here.
    # The second positional argument is what it puts in aud: pass the issuer.
    assertion = private_key_jwt_sign(JWK_A | {"d": b64(KEY_A.private_numbers().private_value
                                                         .to_bytes(32, "big"))},
                                     CLIENT, ISSUER, alg="ES256", header={"kid": "a"},
                                     issued_at=T, expires_at=T + 60)
    assert verify(assertion).kid == "a"


def test_authlib_default_lifetime_is_refused() -> None:
    assertion = private_key_jwt_sign(JWK_A | {"d": b64(KEY_A.private_numbers().private_value
                                                         .to_bytes(32, "big"))},
                                     CLIENT, ISSUER, alg="ES256", header={"kid": "a"},
                                     issued_at=T)
    with pytest.raises(InvalidClientAssertion) as refused:
        verify(assertion)
    assert refused.value.reason == "exp_too_far"


# -- refused ------------------------------------------------------------------------------------

REFUSED = [
    # structure and size
    pytest.param(sized(MAX_ASSERTION_CHARS + 1), "too_large", id="oversize-by-one"),
    pytest.param(token(body=claims(pad="x" * 20_000)), "too_large", id="oversize"),
    pytest.param("", "not_compact_jws", id="empty"),
    pytest.param("garbage", "not_compact_jws", id="garbage"),
    pytest.param(None, "not_compact_jws", id="not-a-string"),
    pytest.param(VALID.rsplit(".", 1)[0], "not_compact_jws", id="two-parts"),
    pytest.param(VALID + ".", "not_compact_jws", id="four-parts"),
    pytest.param("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "not_compact_jws", id="jwe-five-parts"),
    pytest.param("..", "bad_header_json", id="empty-segments"),
    # base64url
    pytest.param(with_segment(VALID, 2, VALID.split(".")[2] + "=="), "bad_base64url",
                 id="padded-signature"),
    pytest.param(with_segment(VALID, 0, VALID.split(".")[0] + "="), "bad_base64url",
                 id="padded-header"),
    pytest.param(with_segment(VALID, 2, noncanonical(VALID.split(".")[2])), "bad_base64url",
                 id="non-canonical-trailing-bits"),
    pytest.param(with_segment(VALID, 2, "+/" + VALID.split(".")[2][2:]), "bad_base64url",
                 id="standard-alphabet"),
    pytest.param(with_segment(VALID, 0, "A"), "bad_base64url", id="impossible-length"),
    pytest.param(VALID + "\n", "bad_base64url", id="trailing-newline"),
    pytest.param(" " + VALID, "bad_base64url", id="leading-space"),
    pytest.param(with_segment(VALID, 1, "é" + VALID.split(".")[1][1:]), "bad_base64url",
                 id="non-ascii"),
    # header JSON
    pytest.param(token("not json"), "bad_header_json", id="header-not-json"),
    pytest.param(token("[]"), "bad_header_json", id="header-array"),
    pytest.param(token(b"\xef\xbb\xbf" + encode(header())), "bad_header_json", id="header-bom"),
    pytest.param(token(b"\xff"), "bad_header_json", id="header-not-utf8"),
    pytest.param(token('{"alg":"ES256","kid":"a","alg":"none"}'), "duplicate_header_member",
                 id="duplicate-alg"),
    # alg: the token never chooses the algorithm
    pytest.param(token(header(alg="none"), signer=lambda _: b""), "alg_not_allowed",
                 id="alg-none"),
    pytest.param(token(header(alg="none")), "alg_not_allowed", id="alg-none-with-signature"),
    pytest.param(token(header(alg=DROP)), "alg_not_allowed", id="alg-missing"),
    pytest.param(token(header(alg="es256")), "alg_not_allowed", id="alg-es256-lowercase"),
    pytest.param(token(header(alg="Es256")), "alg_not_allowed", id="alg-mixed-case"),
    pytest.param(token(header(alg="ES256 ")), "alg_not_allowed", id="alg-trailing-space"),
    pytest.param(token(header(alg=["ES256"])), "alg_not_allowed", id="alg-array"),
    pytest.param(token(header(alg="ES384")), "alg_not_allowed", id="alg-es384"),
    pytest.param(token(header(alg="ES256K")), "alg_not_allowed", id="alg-es256k"),
    pytest.param(token(header(alg="HS256"), signer=hs256(PEM_A)), "alg_not_allowed",
                 id="hs256-keyed-with-public-pem"),
    pytest.param(token(header(alg="HS256"), signer=hs256(json.dumps(JWK_A).encode())),
                 "alg_not_allowed", id="hs256-keyed-with-public-jwk"),
    pytest.param(token(header(alg="HS256"), signer=hs256(POINT_A)), "alg_not_allowed",
                 id="hs256-keyed-with-public-point"),
    pytest.param(token(header(alg="RS256"), signer=rs256), "alg_not_allowed", id="rs256"),
    pytest.param(token(header(alg="PS256"), signer=ps256), "alg_not_allowed", id="ps256"),
    pytest.param(token(header(alg="EdDSA"), signer=ED_KEY.sign), "alg_not_allowed", id="eddsa"),
    # header members that bring or point at a key, or need extensions we lack
    pytest.param(token(header(kid=DROP, jwk=public_jwk(ROGUE, None)), signer=es256(ROGUE)),
                 "embedded_key_refused", id="jwk-header"),
    pytest.param(token(header(jwk=public_jwk(ROGUE, "a")), signer=es256(ROGUE)),
                 "embedded_key_refused", id="jwk-header-with-registered-kid"),
    pytest.param(token(header(jku="https://attacker.example/jwks")), "embedded_key_refused",
                 id="jku-header"),
    pytest.param(token(header(x5u="https://attacker.example/cert.pem")), "embedded_key_refused",
                 id="x5u-header"),
    pytest.param(token(header(x5c=["MIIBszCCAVmgAwIBAgIU"])), "embedded_key_refused",
                 id="x5c-header"),
    pytest.param(token(header(jwk=None)), "embedded_key_refused", id="jwk-null"),
    pytest.param(token(header(crit=["b64"], b64=False)), "crit_not_supported", id="crit-b64"),
    # typ keeps token types apart (RFC 8725 §3.11)
    pytest.param(token(header(typ="dpop+jwt")), "typ_not_allowed", id="typ-dpop"),
    pytest.param(token(header(typ="at+jwt")), "typ_not_allowed", id="typ-access-token"),
    pytest.param(token(header(typ="application/at+jwt")), "typ_not_allowed",
                 id="typ-access-token-media-type"),
    pytest.param(token(header(typ="oauth-authz-req+jwt")), "typ_not_allowed",
                 id="typ-request-object"),
    pytest.param(token(header(typ="logout+jwt")), "typ_not_allowed", id="typ-logout"),
    pytest.param(token(header(typ="text/jwt")), "typ_not_allowed", id="typ-other-media"),
    pytest.param(token(header(typ="")), "typ_not_allowed", id="typ-empty"),
    pytest.param(token(header(typ=1)), "typ_not_allowed", id="typ-number"),
    # key selection: only registered keys, named by kid
    pytest.param(token(header(kid="c")), "unknown_kid", id="wrong-kid"),
    pytest.param(token(header(kid="A")), "unknown_kid", id="kid-case"),
    pytest.param(token(header(kid=DROP)), "kid_required", id="no-kid-two-keys"),
    pytest.param(token(header(kid=7)), "bad_kid", id="kid-number"),
    pytest.param(token(header(kid="")), "bad_kid", id="kid-empty"),
    pytest.param(token(header(kid=None)), "bad_kid", id="kid-null"),
    # signature
    pytest.param(token(signer=es256(ROGUE)), "bad_signature", id="unregistered-key"),
    pytest.param(token(header(kid="b")), "bad_signature", id="other-registered-key"),
    pytest.param(with_segment(VALID, 1, b64(encode(claims(jti="other")))), "bad_signature",
                 id="payload-swapped"),
    pytest.param(with_segment(VALID, 0, b64(encode(header(typ=DROP)))), "bad_signature",
                 id="header-swapped"),
    pytest.param(token(signer=lambda _: bytes(64)), "bad_signature", id="zero-signature"),
    pytest.param(token(signer=lambda _: ORDER.to_bytes(32, "big") + (1).to_bytes(32, "big")),
                 "bad_signature", id="r-equals-order"),
    pytest.param(token(signer=der_es256(KEY_A)), "bad_signature_length", id="der-signature"),
    pytest.param(token(signer=lambda d: es256(KEY_A)(d)[:63]), "bad_signature_length",
                 id="truncated-signature"),
    pytest.param(token(signer=lambda d: es256(KEY_A)(d) + b"\0"), "bad_signature_length",
                 id="long-signature"),
    pytest.param(token(signer=lambda _: b""), "bad_signature_length", id="empty-signature"),
    # claims JSON (signed, so these are a client's mistakes, not an attacker's bytes)
    pytest.param(token(body="[]"), "bad_claims_json", id="claims-array"),
    pytest.param(token(body='"iss"'), "bad_claims_json", id="claims-string"),
    pytest.param(token(body=b"\xff\xfe"), "bad_claims_json", id="claims-not-utf8"),
    pytest.param(token(body=raw_claims(exp="NaN")), "bad_claims_json", id="claims-nan"),
    pytest.param(token(body=raw_claims(exp="Infinity")), "bad_claims_json",
                 id="claims-infinity"),
    pytest.param(token(body="[" * 4000 + "]" * 4000), "too_large", id="deep-nesting-oversize"),
    pytest.param(token(body='{"a":' + "[" * 3000 + "]" * 3000 + "}"), "bad_claims_json",
                 id="deep-nesting"),
    pytest.param(token(body=raw_claims()[:-1] + f',"aud":"{TOKEN_ENDPOINT}"}}'),
                 "duplicate_claim", id="duplicate-aud"),
    pytest.param(token(body='{"iss":"x",' + raw_claims()[1:]), "duplicate_claim",
                 id="duplicate-iss"),
    pytest.param(token(body=raw_claims(cnf='{"jkt":"x","jkt":"y"}')), "duplicate_claim",
                 id="duplicate-nested"),
    # iss and sub: both the client_id (RFC 7523 §3)
    pytest.param(token(body=claims(iss="hospital-0002")), "bad_iss", id="wrong-iss"),
    pytest.param(token(body=claims(iss=DROP)), "bad_iss", id="missing-iss"),
    pytest.param(token(body=claims(iss=[CLIENT])), "bad_iss", id="iss-array"),
    pytest.param(token(body=claims(sub="hospital-0002")), "bad_sub", id="wrong-sub"),
    pytest.param(token(body=claims(sub=DROP)), "bad_sub", id="missing-sub"),
    pytest.param(token(body=claims(iss="other", sub="other")), "bad_iss",
                 id="another-clients-assertion"),
    # aud: the issuer as sole audience (FAPI 2.0 §5.3.2.1)
    pytest.param(token(body=claims(aud=TOKEN_ENDPOINT)), "bad_aud", id="aud-token-endpoint"),
    pytest.param(token(body=claims(aud=PAR_ENDPOINT)), "bad_aud", id="aud-par-endpoint"),
    pytest.param(token(body=claims(aud=[ISSUER, TOKEN_ENDPOINT])), "bad_aud",
                 id="aud-extra-audience"),
    pytest.param(token(body=claims(aud=[ISSUER, ISSUER])), "bad_aud", id="aud-issuer-twice"),
    pytest.param(token(body=claims(aud=[TOKEN_ENDPOINT])), "bad_aud",
                 id="aud-token-endpoint-array"),
    pytest.param(token(body=claims(aud=ISSUER + "/")), "bad_aud", id="aud-trailing-slash"),
    pytest.param(token(body=claims(aud=ISSUER.upper())), "bad_aud", id="aud-case"),
    pytest.param(token(body=claims(aud=[])), "bad_aud", id="aud-empty-array"),
    pytest.param(token(body=claims(aud=DROP)), "bad_aud", id="aud-missing"),
    # exp: required, integer, in the future, at most max_lifetime ahead
    pytest.param(token(body=claims(exp=DROP)), "exp_missing", id="exp-missing"),
    pytest.param(token(body=claims(exp=str(T + 60))), "exp_not_integer", id="exp-string"),
    pytest.param(token(body=claims(exp=T + 60.5)), "exp_not_integer", id="exp-float"),
    pytest.param(token(body=claims(exp=True)), "exp_not_integer", id="exp-bool"),
    pytest.param(token(body=claims(exp=None)), "exp_not_integer", id="exp-null"),
    pytest.param(token(body=claims(exp=T - 3600, iat=T - 3660)), "expired", id="expired"),
    pytest.param(token(body=claims(exp=T - LEEWAY)), "expired", id="expired-at-leeway"),
    pytest.param(token(body=claims(exp=-1)), "expired", id="exp-negative"),
    pytest.param(token(body=claims(exp=T + 3600)), "exp_too_far", id="exp-one-hour"),
    pytest.param(token(body=claims(exp=T + LIFETIME + LEEWAY + 1)), "exp_too_far",
                 id="exp-just-too-far"),
    pytest.param(token(body=claims(exp=10**400)), "exp_too_far", id="exp-absurd"),
    # nbf and iat, when present
    pytest.param(token(body=claims(nbf=T + LEEWAY + 1)), "nbf_in_future", id="nbf-future"),
    pytest.param(token(body=claims(nbf="now")), "nbf_not_integer", id="nbf-string"),
    pytest.param(token(body=claims(iat=T + LEEWAY + 1)), "iat_in_future", id="iat-future"),
    pytest.param(token(body=claims(iat=T - LIFETIME - LEEWAY - 1)), "iat_too_old",
                 id="iat-too-old"),
    pytest.param(token(body=claims(iat=T + 0.5)), "iat_not_integer", id="iat-float"),
    # jti: required, a string of 1 to 256 characters
    pytest.param(token(body=claims(jti=DROP)), "jti_missing", id="jti-missing"),
    pytest.param(token(body=claims(jti="")), "bad_jti", id="jti-empty"),
    pytest.param(token(body=claims(jti="j" * 257)), "bad_jti", id="jti-257"),
    pytest.param(token(body=claims(jti=42)), "bad_jti", id="jti-number"),
    pytest.param(token(body=claims(jti=None)), "bad_jti", id="jti-null"),
    pytest.param(token(body=raw_claims(jti='"\\ud800"')), "bad_jti", id="jti-lone-surrogate"),
]


@pytest.mark.parametrize(("assertion", "reason"), REFUSED)
def test_refused(assertion: Any, reason: str) -> None:
    with pytest.raises(InvalidClientAssertion) as refused:
        verify(assertion)
    assert refused.value.reason == reason


BAD_JWKS = [
    pytest.param({"keys": []}, "no_registered_keys", id="no-keys"),
    pytest.param({}, "no_registered_keys", id="no-keys-member"),
    pytest.param({"keys": "a"}, "no_registered_keys", id="keys-not-a-list"),
    pytest.param({"keys": ["a"]}, "no_registered_keys", id="keys-not-objects"),
    pytest.param({"keys": [JWK_A, JWK_A]}, "registered_key_invalid", id="duplicate-kid"),
    pytest.param({"keys": [JWK_A | {"y": JWK_B["y"]}]}, "registered_key_invalid",
                 id="point-not-on-curve"),
    pytest.param({"keys": [JWK_A | {"d": JWK_A["x"]}]}, "registered_key_invalid",
                 id="private-key"),
    pytest.param({"keys": [JWK_A | {"kty": "RSA"}]}, "registered_key_invalid", id="kty-rsa"),
    pytest.param({"keys": [JWK_A | {"kty": "oct", "k": b64(PEM_A)}]}, "registered_key_invalid",
                 id="kty-oct"),
    pytest.param({"keys": [JWK_A | {"crv": "P-384"}]}, "registered_key_invalid", id="crv-p384"),
    pytest.param({"keys": [JWK_A | {"alg": "HS256"}]}, "registered_key_invalid", id="alg-hs256"),
    pytest.param({"keys": [JWK_A | {"use": "enc"}]}, "registered_key_invalid", id="use-enc"),
    pytest.param({"keys": [JWK_A | {"key_ops": ["sign"]}]}, "registered_key_invalid",
                 id="key-ops-sign"),
    pytest.param({"keys": [JWK_A | {"x": JWK_A["x"] + "="}]}, "registered_key_invalid",
                 id="x-padded"),
    pytest.param({"keys": [JWK_A | {"x": b64(bytes(31))}]}, "registered_key_invalid",
                 id="x-short"),
    pytest.param({"keys": [JWK_A | {"x": 5}]}, "registered_key_invalid", id="x-number"),
    pytest.param({"keys": [apply(JWK_A, {"y": DROP})]}, "registered_key_invalid",
                 id="y-missing"),
]


@pytest.mark.parametrize(("jwks", "reason"), BAD_JWKS)
def test_bad_registered_keys_fail_closed(jwks: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidClientAssertion) as refused:
        verify(VALID, jwks)
    assert refused.value.reason == reason


def test_registered_key_without_kid_is_refused() -> None:
    with pytest.raises(InvalidClientAssertion) as refused:
        verify(token(header(kid=DROP)), {"keys": [public_jwk(KEY_A, None)]})
    assert refused.value.reason == "registered_key_invalid"


def test_every_reason_has_a_case() -> None:
    tested = {p.values[-1] for p in REFUSED + BAD_JWKS}
    assert tested | {"jti_replayed"} == set(REASONS)  # jti_replayed is the caller's


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "body", "reason"), [
    ({"max_lifetime": timedelta(minutes=1)}, claims(exp=T + 120), "exp_too_far"),
    ({"max_lifetime": timedelta(minutes=1)}, claims(exp=T + 60, iat=T - 91), "iat_too_old"),
    ({"leeway": timedelta(0)}, claims(exp=T), "expired"),
    ({"leeway": timedelta(0)}, claims(nbf=T + 1), "nbf_in_future"),
    ({"leeway": timedelta(0)}, claims(iat=T + 1), "iat_in_future"),
])
def test_limits_are_parameters(kwargs: dict[str, Any], body: dict[str, Any],
                               reason: str) -> None:
    with pytest.raises(InvalidClientAssertion) as refused:
        verify(token(body=body), **kwargs)
    assert refused.value.reason == reason


def test_issuer_and_client_come_from_the_caller() -> None:
    with pytest.raises(InvalidClientAssertion) as refused:
        verify_client_assertion(VALID, client_id="hospital-0002", jwks=JWKS, issuer=ISSUER,
                                now=NOW)
    assert refused.value.reason == "bad_iss"
    with pytest.raises(InvalidClientAssertion) as refused:
        verify_client_assertion(VALID, client_id=CLIENT, jwks=JWKS, issuer="", now=NOW)
    assert refused.value.reason == "bad_aud"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_client_assertion(VALID, client_id=CLIENT, jwks=JWKS, issuer=ISSUER,
                                now=NOW.replace(tzinfo=None))


def test_now_in_another_zone_is_the_same_instant() -> None:
    jst = NOW.astimezone(timezone(timedelta(hours=9)))
    assert verify_client_assertion(VALID, client_id=CLIENT, jwks=JWKS, issuer=ISSUER,
                                   now=jst).kid == "a"


# -- the error ----------------------------------------------------------------------------------

def test_error_is_generic_for_the_client() -> None:
    with pytest.raises(InvalidClientAssertion) as refused:
        verify(token(header(alg="none")))
    error = refused.value
    assert isinstance(error, AuthzError)
    assert (error.code, error.status) == ("invalid_client", 401)
    assert error.description == str(error) == "Client authentication failed."
    assert "alg" not in str(error) and error.reason == "alg_not_allowed"


# -- replay key ---------------------------------------------------------------------------------

def test_replay_key() -> None:
    key = replay_key(CLIENT, "j-1")
    assert key == replay_key(CLIENT, "j-1")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != replay_key("hospital-0002", "j-1")
    assert key != replay_key(CLIENT, "j-2")
    # No concatenation ambiguity, and any text (even a lone surrogate) hashes.
    assert replay_key("a", "b:c") != replay_key("a:b", "c")
    assert replay_key("a", '","b') != replay_key('a","', "b")
    assert len(replay_key(CLIENT, "\ud800" + "x" * 300)) == 64


# -- robustness ---------------------------------------------------------------------------------

def test_every_single_character_change_is_refused() -> None:
    """Canonical base64url means no other spelling of a valid assertion exists."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position, char in enumerate(VALID):
        for replacement in {alphabet[(alphabet.find(char) + 1) % 64], ".", "="}:
            if replacement == char:
                continue
            changed = VALID[:position] + replacement + VALID[position + 1:]
            with pytest.raises(InvalidClientAssertion):
                verify(changed)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidClientAssertion):
        verify(text)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(extra_header=st.dictionaries(st.sampled_from(
           ["alg", "typ", "kid", "jwk", "crit", "cty", "x5t", "zip", "b64", "enc"]), JSON,
           max_size=3),
       extra_claims=st.dictionaries(st.sampled_from(
           ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "cnf"]), JSON, max_size=3))
def test_signed_arbitrary_members_fail_only_as_refusals(extra_header: dict[str, Any],
                                                        extra_claims: dict[str, Any]) -> None:
    assertion = token(header(**extra_header), claims(**extra_claims))
    outcome: ClientAssertion | str
    try:
        outcome = verify(assertion)
    except InvalidClientAssertion as refused:
        outcome = refused.reason
    assert outcome in REASONS or (isinstance(outcome, ClientAssertion)
                                  and outcome.client_id == CLIENT)


def test_module_is_pure() -> None:
    tree = ast.parse(Path(module.__file__ or "").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"flask", "werkzeug", "sqlalchemy", "authlib", "jwt", "joserfc"}
