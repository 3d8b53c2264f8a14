"""Keys derived from the key-encryption key, and the few constructions built on them.

HKDF (RFC 5869) gives each use its own key, so attribute encryption, certificate fingerprints
and pairwise subject identifiers never share key material.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE = 12


def derive(kek: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"authz/{label}/v1".encode()).derive(kek)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class IdentityKeys:
    attributes: bytes
    fingerprint: bytes
    pairwise: bytes

    @classmethod
    def from_kek(cls, kek: bytes) -> IdentityKeys:
        return cls(derive(kek, "attributes"), derive(kek, "cert-fingerprint"),
                   derive(kek, "pairwise-sub"))

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        """AES-256-GCM; ``aad`` binds the ciphertext to its row so it cannot be moved."""
        nonce = os.urandom(NONCE)
        return nonce + AESGCM(self.attributes).encrypt(nonce, plaintext, aad.encode())

    def open(self, blob: bytes, aad: str) -> bytes:
        try:
            return AESGCM(self.attributes).decrypt(blob[:NONCE], blob[NONCE:], aad.encode())
        except InvalidTag:
            raise ValueError("sealed data does not open with this key and row") from None

    def cert_fingerprint(self, issuer_key_id: bytes, serial: int) -> str:
        """A keyed hash of issuer and serial: recognises a certificate, reveals neither."""
        message = issuer_key_id + serial.to_bytes(20, "big", signed=False)
        return hmac.new(self.fingerprint, message, hashlib.sha256).hexdigest()

    def pairwise_sub(self, account_id: str, sector: str) -> str:
        """OIDC Core §8.1 pairwise identifier: one per (account, sector = institution)."""
        message = account_id.encode() + b"\x00" + sector.encode()
        return b64url(hmac.new(self.pairwise, message, hashlib.sha256).digest())
