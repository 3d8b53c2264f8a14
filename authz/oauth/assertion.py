"""RFC 7523 ``private_key_jwt`` client authentication, hardened for FAPI 2.0.

Pure: the assertion, the client's registered JWKS, the issuer and ``now`` in; a
:class:`ClientAssertion` out, or :class:`InvalidClientAssertion` whose ``reason`` (one code per
check, see ``REASONS``) is for the audit log only. The token never chooses anything: the
algorithm is ES256 because we say so, and the key comes only from registration.

Replay is the caller's job (the replay store needs a session): record
``replay_key(client_id, jti)`` until ``replay_until`` and refuse a second use.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authz.errors import AuthzError
from authz.oauth import jws

MAX_ASSERTION_CHARS = 8 * 1024
MAX_JTI_CHARS = 256
ALGORITHM = "ES256"
# RFC 7515 §4.1.9: typ is a media type, compared case-insensitively, "application/" optional.
# "JWT" is RFC 7519 §5.1's generic value; "client-authentication+jwt" is the explicit type of
# draft-ietf-oauth-rfc7523bis, which current clients already send. Any other explicit type
# (dpop+jwt, at+jwt, oauth-authz-req+jwt, ...) names another kind of token: RFC 8725 §3.11.
ALLOWED_TYP = frozenset({"jwt", "client-authentication+jwt"})
# Header parameters that would let the token bring or point at its own key (RFC 7515 §4.1.2-6).
# Keys come only from the client's registration, so their mere presence is refused.
KEY_HEADERS = ("jwk", "jku", "x5u", "x5c")
PUBLIC_MESSAGE = "Client authentication failed."

REASONS = (
    "too_large", "not_compact_jws", "bad_base64url", "bad_header_json", "duplicate_header_member",
    "alg_not_allowed", "crit_not_supported", "embedded_key_refused", "typ_not_allowed",
    "bad_kid", "kid_required", "unknown_kid", "no_registered_keys", "registered_key_invalid",
    "bad_signature_length", "bad_signature", "bad_claims_json", "duplicate_claim",
    "bad_iss", "bad_sub", "bad_aud", "exp_missing", "exp_not_integer", "expired", "exp_too_far",
    "nbf_not_integer", "nbf_in_future", "iat_not_integer", "iat_in_future", "iat_too_old",
    "jti_missing", "bad_jti",
    "jti_replayed",  # raised by the caller when the replay store has seen the jti
)

_P256_COORDINATE_OCTETS = 32
_ES256_SIGNATURE_OCTETS = 64  # RFC 7518 §3.4: R || S, 32 octets each, big-endian


class InvalidClientAssertion(AuthzError):
    """The assertion was refused; ``reason`` goes to the audit log, never to the client."""

    code, description, status = "invalid_client", PUBLIC_MESSAGE, 401

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


@dataclass(frozen=True)
class ClientAssertion:
    """A verified assertion; record ``jti`` in the replay store until ``replay_until``."""

    client_id: str
    jti: str
    exp: datetime
    kid: str
    # exp + leeway: until then this function still accepts the assertion, so the replay store
    # must remember the jti at least that long (RFC 7523 §3 item 7), not merely until exp.
    replay_until: datetime


def verify_client_assertion(assertion: str, *, client_id: str, jwks: Mapping[str, Any],
                            issuer: str, now: datetime,
                            max_lifetime: timedelta = timedelta(minutes=5),
                            leeway: timedelta = timedelta(seconds=30)) -> ClientAssertion:
    """Verify a ``client_assertion`` for ``client_id`` (RFC 7523 §2.2 and §3, FAPI 2.0 §5.3.2.1).

    :raise InvalidClientAssertion: at the first failed check, with its reason code.
    :raise ValueError: if ``now`` is naive (a programming error, not a client's).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    header_b64, payload_b64, signature_b64 = _split(assertion)
    header = _json_object(_b64decode(header_b64), "bad_header_json", "duplicate_header_member")
    payload = _b64decode(payload_b64)
    signature = _b64decode(signature_b64)

    _check_header(header)
    kid, key = _select_key(header, jwks)
    _verify_signature(key, f"{header_b64}.{payload_b64}".encode("ascii"), signature)

    # Only signed claims are parsed from here on.
    claims = _json_object(payload, "bad_claims_json", "duplicate_claim")
    _check_subject(claims, client_id)
    _check_audience(claims.get("aud"), issuer)
    exp = _check_times(claims, now, max_lifetime, leeway)
    jti = _check_jti(claims)
    exp_at = datetime.fromtimestamp(exp, tz=UTC)  # bounded by the checks: cannot overflow
    return ClientAssertion(client_id=client_id, jti=jti, exp=exp_at, kid=kid,
                           replay_until=exp_at + leeway)


def replay_key(client_id: str, jti: str) -> str:
    """The replay-store key of one assertion: per client, fixed length (64 hex characters).

    RFC 7523 §3 item 7 makes ``jti`` unique per issuer, so the client is part of the key; the
    jti is client-chosen (up to 256 characters of any text), so only its hash is stored.
    """
    material = json.dumps([client_id, jti], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("ascii")).hexdigest()


# -- structure ----------------------------------------------------------------------------------

def _split(assertion: str) -> tuple[str, str, str]:
    if not isinstance(assertion, str):
        raise InvalidClientAssertion("not_compact_jws")
    # Cap the size before decoding anything (oversized JOSE segments: CVE-2025-61920).
    if len(assertion) > MAX_ASSERTION_CHARS:
        raise InvalidClientAssertion("too_large")
    parts = assertion.split(".")
    # RFC 7515 §7.1: exactly three parts; five would be a JWE, which we never accept.
    if len(parts) != 3:
        raise InvalidClientAssertion("not_compact_jws")
    return parts[0], parts[1], parts[2]


def _b64decode(segment: str) -> bytes:
    try:
        return jws.b64url_decode(segment)
    except ValueError:
        raise InvalidClientAssertion("bad_base64url") from None


def _json_object(raw: bytes, bad: str, duplicate: str) -> dict[str, Any]:
    try:
        return jws.json_object(raw)
    except jws.DuplicateMember:
        raise InvalidClientAssertion(duplicate) from None
    except ValueError:
        raise InvalidClientAssertion(bad) from None


# -- header, key and signature ------------------------------------------------------------------

def _check_header(header: Mapping[str, Any]) -> None:
    # FAPI 2.0 allows PS256, ES256 and EdDSA; DESIGN 4 narrows to ES256. The comparison is
    # exact and case-sensitive (RFC 7515 §4.1.1): "none", "HS256" (HMAC keyed with the public
    # key), "RS256", "PS256", "EdDSA" and "es256" all stop here. The verification below is
    # ECDSA P-256 with SHA-256 whatever this value says (no CVE-2024-37568-style confusion).
    if header.get("alg") != ALGORITHM:
        raise InvalidClientAssertion("alg_not_allowed")
    # RFC 7515 §4.1.11: we understand no extension, so any "crit" (e.g. RFC 7797 b64) is refused.
    if "crit" in header:
        raise InvalidClientAssertion("crit_not_supported")
    if any(name in header for name in KEY_HEADERS):
        raise InvalidClientAssertion("embedded_key_refused")
    if "typ" in header:
        typ = header["typ"]
        if not isinstance(typ, str) or _media_type(typ) not in ALLOWED_TYP:
            raise InvalidClientAssertion("typ_not_allowed")


def _media_type(typ: str) -> str:
    return typ.lower().removeprefix("application/")


def _select_key(header: Mapping[str, Any],
                jwks: Mapping[str, Any]) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The registered key named by ``kid``, or the only registered key when there is no kid."""
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    keys = [k for k in entries if isinstance(k, Mapping)] if isinstance(entries, list) else []
    if not keys:
        raise InvalidClientAssertion("no_registered_keys")
    if "kid" in header:
        kid = header["kid"]
        if not isinstance(kid, str) or not kid:
            raise InvalidClientAssertion("bad_kid")
        matches = [k for k in keys if k.get("kid") == kid]
        if not matches:
            raise InvalidClientAssertion("unknown_kid")
        if len(matches) > 1:  # registration forbids it; never guess between two keys
            raise InvalidClientAssertion("registered_key_invalid")
        jwk = matches[0]
    elif len(keys) == 1:
        jwk = keys[0]
    else:
        # With several keys, trying each would turn one assertion into several verifications
        # and blur which key signed; the client must say which.
        raise InvalidClientAssertion("kid_required")
    return _registered_kid(jwk), _public_key(jwk)


def _registered_kid(jwk: Mapping[str, Any]) -> str:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidClientAssertion("registered_key_invalid")
    return kid


def _public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """An EC P-256 public key from a registered JWK (re-checked: fail closed on bad data)."""
    if (jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk
            or jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig"
            or jwk.get("key_ops", ["verify"]) != ["verify"]):
        raise InvalidClientAssertion("registered_key_invalid")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise InvalidClientAssertion("registered_key_invalid")
    return _p256_key(x, y)


@functools.lru_cache(maxsize=1024)
def _p256_key(x_b64: str, y_b64: str) -> ec.EllipticCurvePublicKey:
    """The key of two registered coordinates; memoised by value (a pure function of its
    arguments: a changed registration is another entry, so nothing stale is ever served)."""
    x, y = _coordinate(x_b64), _coordinate(y_b64)
    try:
        # Refuses points that are not on the curve.
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        raise InvalidClientAssertion("registered_key_invalid") from None


def _coordinate(value: object) -> int:
    # RFC 7518 §6.2.1.2: the full 32 octets, base64url.
    if not isinstance(value, str):
        raise InvalidClientAssertion("registered_key_invalid")
    try:
        raw = _b64decode(value)
    except InvalidClientAssertion:
        raise InvalidClientAssertion("registered_key_invalid") from None
    if len(raw) != _P256_COORDINATE_OCTETS:
        raise InvalidClientAssertion("registered_key_invalid")
    return int.from_bytes(raw, "big")


def _verify_signature(key: ec.EllipticCurvePublicKey, signing_input: bytes,
                      signature: bytes) -> None:
    # RFC 7518 §3.4: the JWS signature is R || S. A DER-encoded (ASN.1) signature is a
    # different, longer encoding and is refused rather than guessed at.
    if len(signature) != _ES256_SIGNATURE_OCTETS:
        raise InvalidClientAssertion("bad_signature_length")
    half = _ES256_SIGNATURE_OCTETS // 2
    r = int.from_bytes(signature[:half], "big")
    s = int.from_bytes(signature[half:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise InvalidClientAssertion("bad_signature") from None


# -- claims -------------------------------------------------------------------------------------

def _check_subject(claims: Mapping[str, Any], client_id: str) -> None:
    # RFC 7523 §3 items 1 and 2, and §2.2: iss and sub are both the client_id.
    if claims.get("iss") != client_id:
        raise InvalidClientAssertion("bad_iss")
    if claims.get("sub") != client_id:
        raise InvalidClientAssertion("bad_sub")


def _check_audience(aud: object, issuer: str) -> None:
    """FAPI 2.0 §5.3.2.1 and draft-ietf-oauth-rfc7523bis: the issuer as the sole audience.

    The token endpoint URL (RFC 7523 §3 item 3's old MAY) is refused: an authorization server
    run by an attacker can list our endpoint URL as one of its own, so a client it also serves
    signs an assertion with that audience, which it then replays to us (audience injection).
    Our issuer identifier cannot be borrowed that way: RFC 8414 §3.3 makes a client check the
    issuer in metadata against the one it asked for.
    Clients should send a string; a one-member array naming only the issuer carries the same
    audience (RFC 7519 §4.1.3) and is accepted; any second audience is refused.
    """
    if not issuer or not (aud == issuer or aud == [issuer]):
        raise InvalidClientAssertion("bad_aud")


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    """An integer NumericDate (RFC 7519 §2), or None when absent; floats and bools refused."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidClientAssertion(f"{name}_not_integer")
    return value


def _check_times(claims: Mapping[str, Any], now: datetime, max_lifetime: timedelta,
                 leeway: timedelta) -> int:
    """``exp`` required and short, ``nbf``/``iat`` when present; returns ``exp``.

    Limits are computed from ``now`` only and compared with the claim, so an absurd claim
    (10**400) is refused by comparison, never by an overflow.
    """
    now_s, skew, lifetime = now.timestamp(), leeway.total_seconds(), max_lifetime.total_seconds()
    exp = _numeric_date(claims, "exp")
    # RFC 7523 §3 item 4: exp is required; RFC 7519 §4.1.4: now must be before it.
    if exp is None:
        raise InvalidClientAssertion("exp_missing")
    if exp <= now_s - skew:
        raise InvalidClientAssertion("expired")
    # Not in RFC 7523: a far-future assertion would be replayable (and the replay store would
    # have to remember it) for as long as it lives. Reference section 7: Authlib does not cap.
    if exp > now_s + lifetime + skew:
        raise InvalidClientAssertion("exp_too_far")
    nbf = _numeric_date(claims, "nbf")
    # RFC 7523 §3 item 5 / RFC 7519 §4.1.5.
    if nbf is not None and nbf > now_s + skew:
        raise InvalidClientAssertion("nbf_in_future")
    iat = _numeric_date(claims, "iat")
    # RFC 7523 §3 item 6: the server may refuse assertions issued too far in the past.
    if iat is not None and iat > now_s + skew:
        raise InvalidClientAssertion("iat_in_future")
    if iat is not None and iat < now_s - lifetime - skew:
        raise InvalidClientAssertion("iat_too_old")
    return exp


def _check_jti(claims: Mapping[str, Any]) -> str:
    # RFC 7523 §3 item 7 makes jti optional; OIDC Core §9 requires it for private_key_jwt
    # (which FAPI 2.0 uses) and DESIGN 4's replay store needs it. Lone surrogates (from
    # "\ud800" escapes) are not text and are refused.
    if "jti" not in claims:
        raise InvalidClientAssertion("jti_missing")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_CHARS:
        raise InvalidClientAssertion("bad_jti")
    try:
        jti.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidClientAssertion("bad_jti") from None
    return jti
