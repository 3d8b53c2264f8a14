"""Consent receipts: a compact JWS (ES256) over the canonical record of one consent version.

The payload is exactly the bytes stored in ``consent_versions.record`` (canonical JSON), so a
receipt proves what was recorded; it verifies with the service's key history
(``/jwks/history.json``), retired keys included.
"""

from __future__ import annotations

from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy.orm import Session

from authz.consent.models import ConsentVersion
from authz.keys import service as keys

TYP = "consent-receipt+jws"


def sign(session: Session, kek: bytes, version: ConsentVersion) -> str:
    active = keys.active_key(session, kek)
    key = ECKey.import_key(active.private_key)
    return jws.serialize_compact({"alg": "ES256", "kid": active.kid, "typ": TYP},
                                 bytes(version.record), key, algorithms=["ES256"])
