"""Generate, rotate, retire and load the service's ES256 signing keys.

A key is published in the JWKS from the moment it is created (state ``next``), so verifiers
that cache the JWKS already know it when a rotation makes it ``active``. The previous active key
stays published as ``retiring`` until every token it signed has expired, then becomes
``retired``: its private part is destroyed and its public key moves to the key history.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authz import audit
from authz.database import utcnow
from authz.database import write
from authz.errors import ConfigError
from authz.errors import Unavailable
from authz.keys.models import SigningKey

NONCE_BYTES = 12
PUBLISHED_STATES = ("next", "active", "retiring")


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_jwk: dict[str, Any]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    numbers = key.public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x.to_bytes(32, "big")),
           "y": _b64(numbers.y.to_bytes(32, "big"))}
    # RFC 7638 §3.2: thumbprint over the required members in lexicographic order.
    thumbprint = hashlib.sha256(
        json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()).digest()
    return {**jwk, "kid": _b64(thumbprint), "use": "sig", "alg": "ES256"}


def encrypt_private(key: ec.EllipticCurvePrivateKey, kek: bytes, kid: str) -> bytes:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, der, kid.encode())


def decrypt_private(blob: bytes, kek: bytes, kid: str) -> ec.EllipticCurvePrivateKey:
    try:
        der = AESGCM(kek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode())
    except InvalidTag:
        raise ConfigError(
            f"cannot decrypt signing key {kid}: AUTHZ_KEY_ENCRYPTION_KEY is not the key these"
            " signing keys were stored with") from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"signing key {kid} is not an EC key")
    return key


def _new_key(kek: bytes, state: str, now: datetime) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(private.public_key())
    return SigningKey(kid=jwk["kid"], alg="ES256", state=state, slot=state, public_jwk=jwk,
                      private_enc=encrypt_private(private, kek, jwk["kid"]), created_at=now,
                      activated_at=now if state == "active" else None)


def _slot(session: Session, slot: str) -> SigningKey | None:
    return session.execute(select(SigningKey).where(SigningKey.slot == slot)).scalar_one_or_none()


def ensure_keys(session: Session, kek: bytes, *, actor: str = "system:startup") -> list[str]:
    """Make sure an active and a next key exist; safe when instances race at first start."""
    for _attempt in range(3):
        try:
            with write(session):
                created = []
                now = utcnow()
                for slot in ("active", "next"):
                    if _slot(session, slot) is None:
                        key = _new_key(kek, slot, now)
                        session.add(key)
                        created.append(key.kid)
                        session.flush()
                        audit.record(session, audit.Event(
                            type="keys.generated", actor=actor, detail={"kid": key.kid,
                                                                        "state": slot}))
                return created
        except IntegrityError:
            continue  # another instance won the race; read what it wrote
    raise Unavailable("could not initialise signing keys")


def rotate(session: Session, kek: bytes, *, actor: str) -> dict[str, str]:
    """next -> active, active -> retiring, and a fresh next key."""
    with write(session):
        now = utcnow()
        active, upcoming = _slot(session, "active"), _slot(session, "next")
        if upcoming is None:
            raise Unavailable("no published next key to promote; run `authz keys init`")
        result = {"active": upcoming.kid}
        if active is not None:
            active.state, active.slot, active.retiring_at = "retiring", None, now
            result["retiring"] = active.kid
            session.flush()
        upcoming.state, upcoming.slot, upcoming.activated_at = "active", "active", now
        session.flush()
        fresh = _new_key(kek, "next", now)
        session.add(fresh)
        session.flush()
        result["next"] = fresh.kid
        audit.record(session, audit.Event(type="keys.rotated", actor=actor, detail=result))
    return result


def retire_due(session: Session, retire_after: timedelta, *, now: datetime | None = None) -> int:
    """Retire keys that stopped signing over ``retire_after`` ago; destroy their private part."""
    with write(session):
        moment = now or utcnow()
        due = session.execute(
            select(SigningKey).where(SigningKey.state == "retiring",
                                     SigningKey.retiring_at <= moment - retire_after)
        ).scalars().all()
        for key in due:
            key.state, key.retired_at, key.private_enc = "retired", moment, None
            session.flush()
            audit.record(session, audit.Event(type="keys.retired", actor="system:jobs",
                                              detail={"kid": key.kid}))
        return len(due)


def active_key(session: Session, kek: bytes) -> ActiveKey:
    key = _slot(session, "active")
    if key is None or key.private_enc is None:
        raise Unavailable("no active signing key")
    return ActiveKey(key.kid, decrypt_private(key.private_enc, kek, key.kid), dict(key.public_jwk))


def jwks(session: Session) -> dict[str, Any]:
    """Every public key that can still verify a live token (next, active, retiring)."""
    keys = session.execute(
        select(SigningKey).where(SigningKey.state.in_(PUBLISHED_STATES))
        .order_by(SigningKey.created_at, SigningKey.kid)
    ).scalars()
    return {"keys": [dict(k.public_jwk) for k in keys]}


def history(session: Session) -> list[SigningKey]:
    """All keys ever used, retired ones included, public parts only via ``to_dict``."""
    return list(session.execute(
        select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)).scalars())
