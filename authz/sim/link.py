"""The 紐付け link service (a6, b7): which person a certificate belongs to, per relying party.

Models J-LIS's 証明書紐付け情報 (a person's sign and auth certificates belong together) and
証明書新旧紐付け情報 (old -> new after renewal, reissue or a move), turned into a per-RP
pseudonym the way PocketSign's 利用者ID is: stable for one person, different per tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from cryptography import x509

from authz.errors import InvalidInput
from authz.sim import profiles

if TYPE_CHECKING:
    from authz.sim.authority import SimAuthority

LINK_ID_LENGTH = 26  # 130 bits of base32
MAX_RP_ID = 255
MAX_CERT = 4096  # b6: real certificates are well under 4 KiB


def person_link_id(key: bytes, person_id: str, rp_id: str) -> str:
    """b7: base32(HMAC(key, person_id || rp_id))[:26]; person ids are fixed-length hex."""
    digest = hmac.new(key, person_id.encode() + rp_id.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:LINK_ID_LENGTH]


def resolve(sim: SimAuthority, cert_der: bytes, rp_id: str,
            now: datetime | None = None) -> dict[str, Any]:
    """``{"person_link_id", "kind", "status", "superseded_by", ...}`` for one certificate."""
    # status "unknown" and person_link_id None for anything not issued here, byte for byte.
    if not isinstance(rp_id, str) or not 0 < len(rp_id) <= MAX_RP_ID:
        raise InvalidInput(f"rp_id must be 1 to {MAX_RP_ID} characters")
    if not isinstance(cert_der, bytes) or len(cert_der) > MAX_CERT:
        raise InvalidInput(f"the certificate must be DER bytes, at most {MAX_CERT}")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        raise InvalidInput("not a DER X.509 certificate") from None
    kind = next((k for k in profiles.KINDS if cert.issuer == profiles.ca_name(k)), None)
    record = sim.find(cert)
    if record is None:
        return {"person_link_id": None, "kind": kind, "status": "unknown",
                "superseded_by": None, "revocation_reason": None,
                "latest_sign_cert_available": False}
    moment = now or datetime.now(record.not_after.tzinfo)
    current_sign = [c for c in sim.person_certs(record.person_id)
                    if c.kind == "sign" and c.status == "good" and c.not_after > moment]
    return {
        "person_link_id": person_link_id(sim.link_key(), record.person_id, rp_id),
        "kind": record.kind,
        "status": record.status,
        "superseded_by": sim.successor(record.kind, record.serial),
        "revocation_reason": record.revoked_reason,
        # b7: whether a valid signature certificate exists to re-prove attributes with.
        "latest_sign_cert_available": bool(current_sign),
    }
