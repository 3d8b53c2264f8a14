"""DPoP proofs (RFC 9449): verification, replay, key thumbprints and stateless server nonces.

:func:`verify_proof` is pure: it checks one proof against the request it came with and returns
what the caller needs (the key thumbprint for ``cnf.jkt``, the ``jti`` for the replay store).
:func:`remember_proof` then records the ``jti`` in the shared replay store; the two are apart so
a caller can verify first and remember inside its own write transaction.

Only ES256 proofs are accepted (metadata should say so: ``dpop_signing_alg_values_supported``
is ``["ES256"]``, RFC 9449 §5.1). The whole service is ES256, and one asymmetric algorithm leaves
no room for algorithm confusion (``none``, HS256 keyed with the public key bytes, RSA).
The JWS is parsed and verified here with ``cryptography`` directly: for one algorithm that is a
few lines, and each check gets its own error instead of a library's generic one.

Error descriptions are fixed strings, never echoes of the proof: they go back to the client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import NoReturn
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy.orm import Session

from authz.errors import AuthzError
from authz.oauth import jws
from authz.oauth import replay

INVALID_DPOP_PROOF = "invalid_dpop_proof"
USE_DPOP_NONCE = "use_dpop_nonce"
TYP = "dpop+jwt"
ALGORITHMS = frozenset({"ES256"})
MAX_PROOF_CHARS = 8 * 1024  # a proof is one EC key and a few claims: about 500 characters
JTI_MAX = 256
MAX_AGE = timedelta(seconds=300)
LEEWAY = timedelta(seconds=5)
REPLAY_SCOPE = "dpop"
# RFC 7517 §4 / RFC 7518 §6: members that only a private (or symmetric) key has.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 §3.2: the required members of each key type, the only input to a thumbprint.
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
P256_FIELD_PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1
COORDINATE_BYTES = 32
SIGNATURE_BYTES = 64
DEFAULT_PORTS = {"http": 80, "https": 443}
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
NONCE_CONTEXT = b"authz/dpop-nonce/v1"
NONCE_STAMP_BYTES = 8
NONCE_MAC_BYTES = 16
NONCE_CHARS = 32  # base64url of 8 + 16 bytes, no padding
JKT_CHARS = 43  # base64url of a SHA-256 digest, no padding
NONCE_LIFETIME = timedelta(minutes=5)
NONCE_SKEW = timedelta(seconds=5)  # instances' clocks differ a little
MIN_SECRET_BYTES = 16

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")  # RFC 7515 §2: base64url without padding
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


class DPoPError(AuthzError):
    """A refused proof; ``error`` is the RFC 9449 §7.1 / §8 error code."""

    code, description, status = INVALID_DPOP_PROOF, "Invalid DPoP proof.", 400

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.code = error


@dataclass(frozen=True)
class DPoPProof:
    """A verified proof. ``jwk`` holds the RFC 7638 required members only."""

    jkt: str
    jti: str
    iat: datetime
    htm: str
    htu: str
    jwk: dict[str, Any]
    nonce: str | None = None


def verify_proof(proof: str, *, method: str, url: str, now: datetime,
                 access_token: str | None = None, nonce: str | None = None,
                 max_age: timedelta = MAX_AGE, leeway: timedelta = LEEWAY) -> DPoPProof:
    """Check a DPoP proof against the request it came with (RFC 9449 §4.3); replay aside.

    ``url`` is the request's own URI; ``access_token`` is given at a resource (then ``ath`` is
    required); ``nonce`` is the exact server nonce the proof must carry, if one is demanded.

    :raise DPoPError: ``invalid_dpop_proof``, or ``use_dpop_nonce`` when only the nonce is wrong.
    """
    signing_input, header, claims, signature = _parse(proof)
    key, jwk = _check_header(header)
    if len(signature) != SIGNATURE_BYTES:
        _refuse("DPoP proof signature is not an ES256 signature (64 bytes)")
    try:
        # RFC 7518 §3.4: the ES256 signature is R || S, 32 bytes each.
        key.verify(encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                        int.from_bytes(signature[32:], "big")),
                   signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        _refuse("DPoP proof signature does not verify with its jwk")

    # RFC 9449 §4.2: jti, htm, htu and iat are required.
    jti = claims.get("jti")
    if jti is None:
        _refuse("DPoP proof has no jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= JTI_MAX:
        _refuse(f"DPoP proof jti must be a string of 1 to {JTI_MAX} characters")
    htm = claims.get("htm")
    if htm is None:
        _refuse("DPoP proof has no htm")
    if not isinstance(htm, str):
        _refuse("DPoP proof htm must be a string")
    if htm != method:  # RFC 9110 §9.1: methods are case-sensitive
        _refuse("DPoP proof htm does not match the request method")
    htu = claims.get("htu")
    if htu is None:
        _refuse("DPoP proof has no htu")
    if not isinstance(htu, str):
        _refuse("DPoP proof htu must be a string")
    claimed = _normalise_uri(htu)
    if claimed is None:
        _refuse("DPoP proof htu is not an absolute http or https URI")
    expected = _normalise_uri(url)
    if expected is None:
        raise ValueError("url must be an absolute http or https URI")
    if claimed != expected:
        _refuse("DPoP proof htu does not match the request URI")

    proof_nonce = claims.get("nonce")
    if proof_nonce is not None and not isinstance(proof_nonce, str):
        _refuse("DPoP proof nonce must be a string")
    if nonce is not None:
        # RFC 9449 §8: a missing or stale nonce is answered with use_dpop_nonce.
        if proof_nonce is None:
            raise DPoPError(USE_DPOP_NONCE, "DPoP proof has no nonce; use the DPoP-Nonce given")
        if not hmac.compare_digest(proof_nonce.encode(), nonce.encode()):
            raise DPoPError(USE_DPOP_NONCE, "DPoP proof nonce is not the current one")

    iat = _check_iat(claims.get("iat"), now, max_age, leeway)

    if access_token is not None:
        # RFC 9449 §4.2: ath = base64url(SHA-256(ASCII access token)).
        ath = claims.get("ath")
        if ath is None:
            _refuse("DPoP proof has no ath for the access token")
        if not isinstance(ath, str) or not hmac.compare_digest(
                ath.encode(), _b64(hashlib.sha256(access_token.encode()).digest()).encode()):
            _refuse("DPoP proof ath does not match the access token")

    return DPoPProof(jkt=thumbprint(jwk), jti=jti, iat=iat, htm=htm, htu=htu, jwk=jwk,
                     nonce=proof_nonce)


def remember_proof(session: Session, proof: DPoPProof, now: datetime, *,
                   max_age: timedelta = MAX_AGE, leeway: timedelta = LEEWAY) -> None:
    """Record the proof's ``jti`` for its key (RFC 9449 §11.1); refuse a proof seen before.

    Pass the ``max_age`` and ``leeway`` given to :func:`verify_proof`: the entry must outlive
    the window in which the proof would still pass its ``iat`` check.
    """
    expires_at = now + max_age + leeway
    if not replay.remember(session, REPLAY_SCOPE, f"{proof.jkt}:{proof.jti}", expires_at, now):
        raise DPoPError(INVALID_DPOP_PROOF, "DPoP proof replayed")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the ``jkt`` of RFC 9449 §6."""
    kty = jwk.get("kty")
    members = THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError("thumbprint supports EC and RSA keys")
    values = {name: jwk.get(name) for name in members}
    if not all(isinstance(value, str) and value for value in values.values()):
        raise ValueError(f"a {kty} JWK needs the members {', '.join(members)}")
    # RFC 7638 §3.3: required members only, sorted, no whitespace, UTF-8.
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def is_thumbprint(value: object) -> bool:
    """True for what :func:`thumbprint` returns: 32 bytes in base64url (``dpop_jkt``, §10)."""
    return isinstance(value, str) and len(value) == JKT_CHARS and bool(_BASE64URL.fullmatch(value))


def new_nonce(secret: bytes, now: datetime) -> str:
    """A server nonce (RFC 9449 §8) that every instance holding ``secret`` accepts.

    Stateless: base64url(8-byte Unix time || HMAC-SHA-256 truncated to 16 bytes).
    """
    stamp = math.floor(now.timestamp()).to_bytes(NONCE_STAMP_BYTES, "big")
    return _b64(stamp + _nonce_mac(secret, stamp))


def check_nonce(secret: bytes, nonce: str, now: datetime,
                lifetime: timedelta = NONCE_LIFETIME) -> bool:
    """True if ``nonce`` came from :func:`new_nonce` with ``secret`` within ``lifetime``."""
    if not isinstance(nonce, str) or len(nonce) != NONCE_CHARS or not _BASE64URL.fullmatch(nonce):
        return False
    try:
        raw = jws.b64url_decode(nonce)
    except ValueError:
        return False
    stamp, mac = raw[:NONCE_STAMP_BYTES], raw[NONCE_STAMP_BYTES:]
    if not hmac.compare_digest(mac, _nonce_mac(secret, stamp)):
        return False
    age = now.timestamp() - int.from_bytes(stamp, "big")
    return -NONCE_SKEW.total_seconds() <= age <= lifetime.total_seconds()


def require_server_nonce(proof: DPoPProof, secret: bytes, now: datetime,
                         lifetime: timedelta = NONCE_LIFETIME) -> None:
    """Demand a current server nonce in a verified proof (the stateless form of ``nonce=``).

    :raise DPoPError: ``use_dpop_nonce``; answer it with a fresh ``DPoP-Nonce`` header.
    """
    if proof.nonce is None:
        raise DPoPError(USE_DPOP_NONCE, "DPoP proof has no nonce; use the DPoP-Nonce given")
    if not check_nonce(secret, proof.nonce, now, lifetime):
        raise DPoPError(USE_DPOP_NONCE, "DPoP proof nonce is not the current one")


# -- helpers ------------------------------------------------------------------------------------

def _refuse(description: str) -> NoReturn:
    raise DPoPError(INVALID_DPOP_PROOF, description)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _nonce_mac(secret: bytes, stamp: bytes) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the nonce secret needs at least {MIN_SECRET_BYTES} bytes")
    key = hmac.new(secret, NONCE_CONTEXT, hashlib.sha256).digest()  # a key of its own
    return hmac.new(key, stamp, hashlib.sha256).digest()[:NONCE_MAC_BYTES]


def _parse(proof: str) -> tuple[bytes, dict[str, Any], dict[str, Any], bytes]:
    """Split one compact JWS (RFC 7515 §7.1) into signing input, header, claims, signature."""
    if not isinstance(proof, str) or not proof:
        _refuse("DPoP proof is missing")
    if len(proof) > MAX_PROOF_CHARS:
        _refuse("DPoP proof is larger than 8 KiB")
    segments = proof.split(".")
    # Three non-empty base64url segments: this also refuses JWE (five), unsecured JWS (no
    # signature), detached payloads and two proofs joined by a comma (two DPoP headers).
    if len(segments) != 3 or not all(_BASE64URL.fullmatch(s) for s in segments):
        _refuse("DPoP proof must be a single JWS in compact serialization")
    header = _json_object(segments[0], "header")
    claims = _json_object(segments[1], "claims")
    try:
        signature = jws.b64url_decode(segments[2])
    except ValueError:
        _refuse("DPoP proof signature is not base64url")
    return f"{segments[0]}.{segments[1]}".encode(), header, claims, signature


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        return jws.json_object(jws.b64url_decode(segment))
    except jws.DuplicateMember:
        _refuse(f"DPoP proof {what} has duplicate member names")
    except jws.NotAnObject:
        _refuse(f"DPoP proof {what} is not a JSON object")
    except ValueError:  # UnicodeDecodeError is a ValueError too
        _refuse(f"DPoP proof {what} is not base64url-encoded UTF-8 JSON")


def _check_header(header: dict[str, Any]) -> tuple[ec.EllipticCurvePublicKey, dict[str, Any]]:
    """RFC 9449 §4.3 items 4, 5 and 7: typ, alg and a public P-256 jwk."""
    if header.get("typ") != TYP:  # RFC 8725 §3.11: explicit typing
        _refuse("DPoP proof typ must be dpop+jwt")
    if header.get("alg") not in ALGORITHMS:
        _refuse("DPoP proof alg must be ES256")
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extensions
        _refuse("DPoP proof must not carry crit")
    jwk = header.get("jwk")
    if jwk is None:
        _refuse("DPoP proof header has no jwk")
    if not isinstance(jwk, dict):
        _refuse("DPoP proof jwk is not a JSON object")
    if PRIVATE_MEMBERS & jwk.keys():
        _refuse("DPoP proof jwk must not contain private key members")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        _refuse("DPoP proof jwk must be an EC P-256 key")
    coordinates = []
    for name in ("x", "y"):
        # RFC 7518 §6.2.1.2-3: each coordinate is the full 32 bytes, big-endian.
        value = jwk.get(name)
        if not isinstance(value, str) or not _BASE64URL.fullmatch(value):
            _refuse("DPoP proof jwk x and y must be base64url")
        try:
            raw = jws.b64url_decode(value)
        except ValueError:
            _refuse("DPoP proof jwk x and y must be base64url")
        if len(raw) != COORDINATE_BYTES:
            _refuse("DPoP proof jwk x and y must be 32 bytes each")
        coordinates.append(int.from_bytes(raw, "big"))
    x, y = coordinates
    if x >= P256_FIELD_PRIME or y >= P256_FIELD_PRIME:  # one encoding per key, one thumbprint
        _refuse("DPoP proof jwk is not a point on P-256")
    try:
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        _refuse("DPoP proof jwk is not a point on P-256")
    return key, {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]}


def _check_iat(iat: object, now: datetime, max_age: timedelta, leeway: timedelta) -> datetime:
    """RFC 9449 §4.3 item 11: ``iat`` within [now - max_age, now + leeway]."""
    if iat is None:
        _refuse("DPoP proof has no iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        _refuse("DPoP proof iat must be a number")
    moment = now.timestamp()
    if iat < moment - max_age.total_seconds():
        _refuse("DPoP proof is too old (iat)")
    if iat > moment + leeway.total_seconds():
        _refuse("DPoP proof iat is in the future")
    return datetime.fromtimestamp(iat, UTC)


def _normalise_uri(value: str) -> tuple[str, str, int, str] | None:
    """RFC 9449 §4.3 item 9: compare without query and fragment, after the normalisation of
    RFC 3986 §6.2.2 (case, percent-encoding) and §6.2.3 (default port, empty path)."""
    if not value.isascii() or any(ch <= " " or ch == "\x7f" for ch in value):
        return None  # urlsplit would quietly drop tabs and newlines
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased by urlsplit
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    path = _PERCENT.sub(_percent, parts.path) or "/"
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme], path


def _percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in UNRESERVED else f"%{match.group(1).upper()}"
