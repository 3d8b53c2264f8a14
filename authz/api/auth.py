"""Access tokens on the JSON API: ``require_token(*scopes)`` for routes of this service.

A token is accepted only if we signed it (ES256, ``at+jwt``), it is addressed to this service
(``aud`` holds the issuer), its ``jti`` is recorded and not revoked, the grant behind it stands,
the client is enabled, and it carries every scope the route needs. A DPoP-bound token (``cnf``)
is accepted only with a fresh proof of its key for this very request (RFC 9449 §7); a client
registered as DPoP-bound never gets anywhere with a Bearer presentation. Failures are RFC 6750
challenges in problem+json form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask import request

from authz.database import utcnow
from authz.database import write
from authz.errors import AuthzError
from authz.extensions import db
from authz.oauth import dpop
from authz.oauth import store
from authz.oauth.inspection import verified_claims


class TokenError(AuthzError):
    """401 with an RFC 6750 §3 / RFC 9449 §7.1 challenge."""

    code, description, status = "invalid_token", "A valid access token is required.", 401

    def __init__(self, error: str | None, description: str,
                 known: tuple[str, str] | None = None) -> None:
        super().__init__(description)
        # (client id, institution id) when the token is ours and only its client is refused:
        # an authenticated refusal the decision API audits (unknown tokens stay noise).
        self.known = known
        challenge = f'error="{error}", ' if error else ""
        self.headers = {"WWW-Authenticate": ", ".join(
            (f'Bearer {challenge}'.rstrip(", "), f'DPoP {challenge}algs="ES256"'))}
        if error:
            self.code = error


class InsufficientScope(AuthzError):
    code, description, status = "insufficient_scope", "The token lacks a required scope.", 403

    def __init__(self, scopes: tuple[str, ...], known: tuple[str, str] | None = None) -> None:
        super().__init__(f"This call needs the scope {' '.join(scopes)}.")
        self.known = known  # (client id, institution id): see TokenError
        needed = " ".join(scopes)
        self.headers = {"WWW-Authenticate":
                        f'Bearer error="insufficient_scope", scope="{needed}"'}


@dataclass(frozen=True)
class Caller:
    """Who is calling: the client, its institution and, for user tokens, the account."""

    client_id: str
    institution_id: str
    institution_type: str
    institution_roles: tuple[str, ...]
    emergency: bool
    account_id: str | None
    grant_id: str | None
    scopes: frozenset[str]
    jkt: str | None
    claims: dict[str, Any]


def require_token(*scopes: str) -> Caller:
    """The verified caller of this request, or raise :class:`TokenError`/`InsufficientScope`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    scheme = scheme.lower()
    if scheme not in ("bearer", "dpop") or not token:
        raise TokenError(None, "A Bearer or DPoP access token is required.")
    issuer = str(current_app.config["AUTHZ_ISSUER"])
    session = db.session()
    now = utcnow()
    claims = verified_claims(session, token, issuer, now)
    if claims is None:
        raise TokenError("invalid_token", "The access token is not valid.")
    audience = claims.get("aud")
    if issuer not in (audience if isinstance(audience, list) else [audience]):
        raise TokenError("invalid_token", "The access token is not addressed to this service.")
    bound = (claims.get("cnf") or {}).get("jkt") if isinstance(claims.get("cnf"), dict) else None
    presented = _proof_key(token, issuer, now) if scheme == "dpop" else None
    if bound != presented:
        # RFC 9449 §7.2: a bound token only with a proof of its key; an unbound one as Bearer.
        raise TokenError("invalid_token", "The token's key binding does not match.")
    row = store.token_caller(session, str(claims.get("jti", "")), now)
    if row is None:
        raise TokenError("invalid_token", "The access token is revoked or expired.")
    if not row.enabled:
        raise TokenError("invalid_token", "The client is disabled.",
                         known=(row.client_id, row.institution_id))
    if row.dpop_bound and bound is None:
        raise TokenError("invalid_token", "This client must use DPoP-bound tokens.")
    granted = frozenset(str(claims.get("scope", "")).split())
    missing = tuple(s for s in scopes if s not in granted)
    if missing:
        raise InsufficientScope(missing, known=(row.client_id, row.institution_id))
    return Caller(client_id=row.client_id, institution_id=row.institution_id,
                  institution_type=row.institution_type, institution_roles=tuple(row.roles),
                  emergency=bool(row.emergency), account_id=row.account_id,
                  grant_id=row.grant_id, scopes=granted, jkt=bound, claims=claims)


def _proof_key(token: str, issuer: str, now: Any) -> str:
    proofs = request.headers.getlist("DPoP")
    try:
        if len(proofs) != 1:
            raise dpop.DPoPError("invalid_dpop_proof", "Exactly one DPoP proof is needed.")
        # RFC 9449 §4.3: htu is this service's own URL for the path, never the Host header's.
        proof = dpop.verify_proof(proofs[0], method=request.method,
                                  url=f"{issuer}{request.path}", now=now, access_token=token)
        session = db.session()
        with write(session):
            dpop.remember_proof(session, proof, now)
    except dpop.DPoPError as error:
        raise TokenError(error.error, error.description) from None
    return proof.jkt
