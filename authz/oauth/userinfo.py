"""UserInfo (OIDC Core §5.3) with OIDC for Identity Assurance ``verified_claims``, and the
``claims`` request parameter (OIDC Core §5.5, OIDC4IDA §6) that narrows what is released.

Verified claims are released only with the ``profile`` scope, only while the account's proofing
is current (not after a move or name change), and only to a token whose grant still stands.
Without a ``claims`` request, UserInfo returns the whole ``verified_claims`` object (scope
based). With one, UserInfo and the ID token return exactly the members the request names for
them (``userinfo`` / ``id_token``), still only within the approved scope.
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
# The person's attributes this service can release, each only from a current proofing.
PERSON_CLAIMS = ("name", "family_name", "given_name", "birthdate", "gender", "address")
MAX_CLAIMS_REQUEST = 4096
MAX_MEMBERS = 32
MAX_VERIFIED_REQUESTS = 4
TARGETS = ("userinfo", "id_token")


class TokenRejected(Exception):
    """No usable access token: the caller answers 401 with ``invalid_token``."""


class InvalidClaimsRequest(ValueError):
    """The ``claims`` parameter is not what OIDC Core §5.5 / OIDC4IDA §6 describe."""


# -- the claims request -------------------------------------------------------------------------

def parse_claims_request(raw: str | None) -> dict[str, Any] | None:
    """Check a ``claims`` parameter and return it as JSON (None when absent).

    :raise InvalidClaimsRequest: with a fixed, printable description for the client.
    """
    if raw is None:
        return None
    if len(raw) > MAX_CLAIMS_REQUEST:
        raise InvalidClaimsRequest("claims is longer than 4096 characters")
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidClaimsRequest("claims must be a JSON object (OIDC Core 5.5)") from None
    if not isinstance(value, dict) or not set(value) <= set(TARGETS):
        raise InvalidClaimsRequest("claims may hold only userinfo and id_token (OIDC Core 5.5)")
    for target, members in value.items():
        if not isinstance(members, dict) or len(members) > MAX_MEMBERS:
            raise InvalidClaimsRequest(f"claims.{target} must be a JSON object")
        for name, request in members.items():
            if name == "verified_claims":
                _check_verified_request(request)
            else:
                _check_member(request, f"claims.{target} members")
    return value


def _check_member(request: Any, where: str) -> None:
    """OIDC Core §5.5.1: null, or an object with optional essential, value and values."""
    if request is None:
        return
    if not isinstance(request, dict):
        raise InvalidClaimsRequest(f"{where} must be null or JSON objects")
    if not isinstance(request.get("essential", False), bool):
        raise InvalidClaimsRequest("essential must be true or false")
    if "values" in request and not isinstance(request["values"], list):
        raise InvalidClaimsRequest("values must be an array")


def _check_verified_request(request: Any) -> None:
    """OIDC4IDA §6: an object (or an array of them) with a ``claims`` object."""
    requests = request if isinstance(request, list) else [request]
    if not requests or len(requests) > MAX_VERIFIED_REQUESTS:
        raise InvalidClaimsRequest("verified_claims must be one to four objects")
    for item in requests:
        if not isinstance(item, dict) or not isinstance(item.get("claims"), dict) \
                or not item["claims"]:
            raise InvalidClaimsRequest("verified_claims needs a non-empty claims object")
        for member in item["claims"].values():
            _check_member(member, "verified_claims.claims members")
        verification = item.get("verification")
        if verification is not None and not isinstance(verification, dict):
            raise InvalidClaimsRequest("verified_claims.verification must be an object")
        evidence = (verification or {}).get("evidence")
        if evidence is not None and not (isinstance(evidence, list) and all(
                isinstance(e, dict) for e in evidence)):
            raise InvalidClaimsRequest("verification.evidence must be an array of objects")


def requested_acr(claims_request: dict[str, Any] | None) -> tuple[list[str], bool]:
    """The ``acr`` values asked for in ``claims.id_token.acr`` and whether they are essential."""
    member = ((claims_request or {}).get("id_token") or {}).get("acr")
    if not isinstance(member, dict):
        return [], False
    values = [member["value"]] if isinstance(member.get("value"), str) else []
    values += [v for v in member.get("values") or [] if isinstance(v, str)]
    return values, member.get("essential") is True


# -- release ------------------------------------------------------------------------------------

def released_claims(session: Session, account: Account, keys: IdentityKeys, *, scopes: list[str],
                    request: dict[str, Any] | None, trust_framework: str) -> dict[str, Any]:
    """The person's claims for one target (UserInfo or the ID token), within the scope.

    ``request`` is the target's member of the ``claims`` request; None means scope based:
    the whole ``verified_claims`` object (what UserInfo has always returned).
    """
    if "profile" not in scopes or account.assurance != VERIFIED:
        return {}
    if request is not None and not (set(request) & {"verified_claims", *PERSON_CLAIMS}):
        return {}  # nothing of the person asked for: do not even open the record
    verification = session.execute(
        select(Verification).where(Verification.account_id == account.id,
                                   Verification.current.is_(True))).scalar_one_or_none()
    if verification is None:
        return {}
    full = _verified_claims(keys, verification, trust_framework)
    if request is None:
        return {"verified_claims": full}
    body: dict[str, Any] = {}
    for name in PERSON_CLAIMS:
        if name in request and name in full["claims"]:
            body[name] = full["claims"][name]
    if "verified_claims" in request:
        chosen = filter_verified_claims(full, request["verified_claims"])
        if chosen is not None:
            body["verified_claims"] = chosen
    return body


def filter_verified_claims(full: dict[str, Any], request: Any) -> dict[str, Any] | None:
    """OIDC4IDA §6: the first request the record can answer, cut down to what it names."""
    for item in request if isinstance(request, list) else [request]:
        chosen = _filter_one(full, item)
        if chosen is not None:
            return chosen
    return None


def _filter_one(full: dict[str, Any], request: dict[str, Any]) -> dict[str, Any] | None:
    claims = {name: value for name, value in full["claims"].items() if name in request["claims"]}
    if not claims:
        return None  # OIDC4IDA §6.1: no requested claim is available, so no verified_claims
    asked = request.get("verification") or {}
    have = full["verification"]
    if not _matches(have["trust_framework"], asked.get("trust_framework")):
        return None  # a trust framework the RP does not accept
    # trust_framework is always returned; the other members only when asked for.
    verification: dict[str, Any] = {"trust_framework": have["trust_framework"]}
    for name in ("time", "verification_process"):
        if name in asked and _matches(have[name], asked[name]):
            verification[name] = have[name]
    if "evidence" in asked:
        evidence = [_filter_evidence(item, asked["evidence"]) for item in have["evidence"]]
        kept = [item for item in evidence if item is not None]
        if kept:
            verification["evidence"] = kept
    return {"verification": verification, "claims": claims}


def _filter_evidence(item: dict[str, Any], asked: list[dict[str, Any]]) -> dict[str, Any] | None:
    for template in asked or [{}]:
        if not _matches(item["type"], template.get("type")):
            continue
        return {name: value for name, value in item.items()
                if name == "type" or name in template}
    return None


def _matches(value: Any, constraint: Any) -> bool:
    """OIDC Core §5.5.1: ``value`` / ``values`` narrow a member; anything else accepts all."""
    if not isinstance(constraint, dict):
        return True
    if "value" in constraint and constraint["value"] != value:
        return False
    values = constraint.get("values")
    return not (isinstance(values, list) and value not in values)


# -- the endpoint -------------------------------------------------------------------------------

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
    request = (grant.claims_request or {}).get("userinfo")
    body.update(released_claims(session, account, keys, scopes=scopes,
                                request=request if isinstance(request, dict) else None,
                                trust_framework=trust_framework))
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
