"""Introspection (RFC 7662) and revocation (RFC 7009) of the tokens this service issued.

Both re-check the grant behind a token on every call, so a revoked grant is inactive at once
(DESIGN 4), whatever the token's ``exp`` says.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.orm import Session

from authz import audit
from authz.consent.lookup import details_hold
from authz.database import write
from authz.keys import service as keys
from authz.oauth import store
from authz.oauth.models import AccessToken
from authz.oauth.models import Grant
from authz.oauth.models import RefreshToken
from authz.oauth.store import revoke_grant

REFRESH_PREFIX = "azrt_"  # noqa: S105 - a token prefix, not a secret
MAX_TOKEN = 8192
INACTIVE: dict[str, Any] = {"active": False}


JWKS_SECONDS = 30.0
_jwks_lock = threading.Lock()
_jwks_cache: dict[str, tuple[float, KeySet]] = {}


def published_keys(session: Session) -> KeySet:
    """The published keys, cached briefly per database: a key signs only after being published."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    owner = engine.url.render_as_string(hide_password=True)
    with _jwks_lock:
        cached = _jwks_cache.get(owner)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
    keyset = KeySet.import_key_set(keys.jwks(session))  # type: ignore[arg-type]
    with _jwks_lock:
        _jwks_cache[owner] = (time.monotonic() + JWKS_SECONDS, keyset)
    return keyset


def forget_keys() -> None:
    with _jwks_lock:
        _jwks_cache.clear()


def verified_claims(session: Session, token: str, issuer: str,
                    now: datetime) -> dict[str, Any] | None:
    """Claims of an access token we signed (ES256, ``at+jwt``, published key), else None."""
    if not token or len(token) > MAX_TOKEN or token.count(".") != 2:
        return None
    try:
        decoded = jwt.decode(token, published_keys(session), algorithms=["ES256"])
    except (JoseError, ValueError, TypeError):
        return None
    if decoded.header.get("typ") != "at+jwt":
        return None
    claims = dict(decoded.claims)
    exp = claims.get("exp")
    if claims.get("iss") != issuer or not isinstance(exp, int) or exp <= now.timestamp():
        return None
    return claims


def live_token(session: Session, claims: dict[str, Any], now: datetime) -> AccessToken | None:
    row = session.get(AccessToken, str(claims.get("jti", "")))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.grant_id is not None:
        grant = session.get(Grant, row.grant_id)
        if grant is None or grant.revoked_at is not None:
            return None
    return row


def introspect(session: Session, token: str, *, resource: str, issuer: str, caller: str,
               institution: str, now: datetime, request_id: str | None = None,
               claim: Callable[[Session], None] | None = None) -> dict[str, Any]:
    """RFC 7662 §2.2 for resource server ``resource``: inactive unless the token is for it.

    The token row and its grant are re-read on every call (one primary-key lookup joining
    both), so a revocation is seen at once. ``claim`` runs first inside the write transaction
    that appends the audit event (the caller's client-assertion ``jti``; it raises to refuse).
    """
    claims = verified_claims(session, token, issuer, now)
    audience = claims.get("aud") if claims else None
    audiences = audience if isinstance(audience, list) else [audience]
    active = claims is not None and resource in audiences and store.live_access_token(
        session, str(claims.get("jti", "")), now) is not None
    details = claims.get("authorization_details") if claims else None
    if active and details and claims is not None:
        # Tokens follow consent: a revoked, narrowed or lapsed consent (or a patient's deny)
        # behind any of the token's health_record_access details makes it inactive at once.
        account = session.execute(
            select(Grant.account_id).join(AccessToken, AccessToken.grant_id == Grant.id)
            .where(AccessToken.jti == str(claims.get("jti", "")))).scalar_one_or_none()
        active = account is not None and isinstance(details, list) and details_hold(
            session, patient_id=account, details=details, now=now)
    with write(session):
        if claim is not None:
            claim(session)
        audit.record(session, audit.Event(
            type="oauth.introspection", actor=f"client:{caller}", client=caller,
            institution=institution, request_id=request_id,
            detail={"active": int(active), "jti": str(claims.get("jti", "")) if claims else ""}),
            now=now)
    if not active or claims is None:
        return dict(INACTIVE)
    result = {"active": True, "token_type": "Bearer"}
    result.update({k: claims[k] for k in ("scope", "client_id", "sub", "aud", "iss", "exp",
                                          "iat", "jti", "auth_time", "acr", "cnf",
                                          "authorization_details")
                   if k in claims})
    return result


def revoke(session: Session, token: str, *, client_id: str, issuer: str, now: datetime,
           request_id: str | None = None) -> None:
    """RFC 7009: revoke a refresh token (and its whole grant) or an access token of ``client_id``.

    Unknown tokens, and other clients' tokens, are ignored without a sign (§2.2).
    """
    if token.startswith(REFRESH_PREFIX):
        digest = hashlib.sha256(token.encode()).hexdigest()
        with write(session):
            row = session.get(RefreshToken, digest)
            if row is None or row.client_id != client_id:
                return
            grant = session.get(Grant, row.grant_id)
            if grant is not None:
                revoke_grant(session, grant, "revoked_by_client", now)
        return
    claims = verified_claims(session, token, issuer, now)
    if claims is None or claims.get("client_id") != client_id:
        return
    with write(session):
        issued = session.get(AccessToken, str(claims.get("jti", "")))
        if issued is None or issued.revoked_at is not None:
            return
        issued.revoked_at = now
        session.flush()
        audit.record(session, audit.Event(
            type="oauth.token_revoked", actor=f"client:{client_id}", client=client_id,
            request_id=request_id, detail={"jti": issued.jti}))
