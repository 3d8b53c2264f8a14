"""UserInfo (OIDC Core §5.3) with OIDC for Identity Assurance ``verified_claims``.

Verified claims are released only with the ``profile`` scope, only while the account's proofing
is current (not after a move or name change), and only to a token whose grant still stands.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.identity.crypto import IdentityKeys
from authz.identity.models import VERIFIED
from authz.identity.models import Account
from authz.identity.models import Verification
from authz.identity.transactions import current_attributes
from authz.oauth.inspection import live_token
from authz.oauth.inspection import verified_claims
from authz.oauth.models import Grant
from authz.registry.models import Client

EVIDENCE_SIGNATURE_TYPE = "jp_jpki_signature_certificate"


class TokenRejected(Exception):
    """No usable access token: the caller answers 401 with ``invalid_token``."""


def userinfo(session: Session, token: str, *, issuer: str, keys: IdentityKeys,
             trust_framework: str, now: datetime,
             presented_jkt: str | None = None) -> dict[str, Any]:
    """``presented_jkt``: the key of a verified DPoP proof, None for a Bearer presentation."""
    claims = verified_claims(session, token, issuer, now)
    bound = claims.get("cnf", {}).get("jkt") if claims else None
    if claims is None or bound != presented_jkt:
        raise TokenRejected()  # RFC 9449 §7.2: a bound token only with a proof of its key
    row = live_token(session, claims, now) if claims else None
    audience = claims.get("aud") if claims else None
    if claims is None or row is None or row.grant_id is None or issuer not in (
            audience if isinstance(audience, list) else [audience]):
        raise TokenRejected()
    grant = session.get(Grant, row.grant_id)
    if grant is None or grant.account_id is None:
        raise TokenRejected()
    client = session.get(Client, grant.client_id)
    account = session.get(Account, grant.account_id)
    if client is None or account is None:
        raise TokenRejected()
    scopes = str(claims.get("scope", "")).split()
    if "openid" not in scopes:
        raise TokenRejected()
    body: dict[str, Any] = {"sub": keys.pairwise_sub(account.id, client.institution_id)}
    if "profile" in scopes and account.assurance == VERIFIED:
        verification = session.execute(
            select(Verification).where(Verification.account_id == account.id,
                                       Verification.current.is_(True))).scalar_one_or_none()
        if verification is not None:
            body["verified_claims"] = _verified_claims(keys, verification, trust_framework)
    return body


def _verified_claims(keys: IdentityKeys, verification: Verification,
                     trust_framework: str) -> dict[str, Any]:
    """OIDC4IDA §5: the proofing record; the evidence names an OP-internal reference, never the
    certificate serial (総務省 guidance on serial numbers)."""
    attributes = current_attributes(keys, verification)
    claims = attributes.claims()
    when = verification.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "verification": {
            "trust_framework": trust_framework,
            "time": when,
            "verification_process": verification.id,
            "evidence": [{
                "type": "electronic_signature",
                "signature_type": EVIDENCE_SIGNATURE_TYPE,
                "issuer": "JPKI signature certificate authority",
                "serial_number": verification.evidence_ref,
                "created_at": when,
            }],
        },
        "claims": json.loads(json.dumps(claims, ensure_ascii=False)),
    }
