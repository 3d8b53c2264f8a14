"""OAuth storage: grant-wide operations, and the hot-path statements of the token endpoint,
introspection and the JSON API's token check.

The hot paths send their statements straight to the driver (:class:`authz.database.Driver`):
SQLAlchemy's bookkeeping per execution cost several times the SQL itself (docs/decisions.md,
"Token endpoint and introspection" and "Decision API per request").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from typing import NamedTuple
from typing import cast

from sqlalchemy import Table
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from authz import audit
from authz.consent.models import PairwiseSubject
from authz.database import SQL
from authz.database import dialect_name
from authz.database import driver
from authz.database import reader
from authz.oauth.models import AccessToken
from authz.oauth.models import Grant
from authz.oauth.models import RefreshToken

REFRESH_TOKENS = cast(Table, RefreshToken.__table__)
PAIRWISE = cast(Table, PairwiseSubject.__table__)

CLIENT_BY_ID = SQL(
    "SELECT client_id, institution_id, name, auth_method, redirect_uris, scopes, jwks,"
    " resource_uri, require_par, dpop_bound, enabled FROM clients WHERE client_id = ?")
RESOURCE_SERVER = SQL("SELECT 1 FROM clients WHERE resource_uri = ? AND enabled LIMIT 1")
# Introspection: the token and the grant behind it, one indexed lookup (primary keys).
TOKEN_AND_GRANT = SQL(
    "SELECT t.client_id, t.grant_id, t.expires_at, t.revoked_at, g.id, g.revoked_at"
    " FROM oauth_access_tokens AS t LEFT OUTER JOIN oauth_grants AS g ON g.id = t.grant_id"
    " WHERE t.jti = ?")
INSERT_GRANT = SQL(
    "INSERT INTO oauth_grants (id, client_id, account_id, scope, resource, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)")
INSERT_ACCESS_TOKEN = SQL(
    "INSERT INTO oauth_access_tokens (jti, grant_id, client_id, subject, scope, audience,"
    " dpop_jkt, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


class ClientRow(NamedTuple):
    """The columns of a registered client that the OAuth endpoints look at."""

    client_id: str
    institution_id: str
    name: str
    auth_method: str
    redirect_uris: list[str]
    scopes: list[str]
    jwks: dict[str, Any] | None
    resource_uri: str | None
    require_par: bool
    dpop_bound: bool
    enabled: bool


# The caller behind an access token on the JSON API, in one lookup: token, its grant (and the
# patient), the client and its institution.
CALLER_OF_TOKEN = SQL(
    "SELECT t.client_id, t.grant_id, t.expires_at, t.revoked_at, g.id, g.revoked_at,"
    " g.account_id, c.enabled, c.dpop_bound, i.id, i.type, i.roles, i.emergency"
    " FROM oauth_access_tokens AS t LEFT OUTER JOIN oauth_grants AS g ON g.id = t.grant_id"
    " JOIN clients AS c ON c.client_id = t.client_id"
    " JOIN institutions AS i ON i.id = c.institution_id"
    " WHERE t.jti = ?")


class TokenCaller(NamedTuple):
    """Who stands behind a live access token: its client, institution and (user tokens) account."""

    client_id: str
    grant_id: str | None
    account_id: str | None
    enabled: bool
    dpop_bound: bool
    institution_id: str
    institution_type: str
    roles: list[str]
    emergency: bool


def token_caller(session: Session, jti: str, now: datetime) -> TokenCaller | None:
    """The caller of a recorded, unexpired, unrevoked access token whose grant (if any) still
    stands; None otherwise (one indexed lookup, read on every call: no cache)."""
    with reader(session) as db:
        row = db.execute(CALLER_OF_TOKEN, (jti,)).fetchone()
        if row is None:
            return None
        (client_id, grant_id, expires_at, revoked_at, grant_found, grant_revoked_at,
         account_id, enabled, dpop_bound, institution_id, institution_type, roles,
         emergency) = row
        expires = db.time_value(expires_at)
        roles = db.json_value(roles)
    if revoked_at is not None or expires is None or expires <= now:
        return None
    if grant_id is not None and (grant_found is None or grant_revoked_at is not None):
        return None
    return TokenCaller(client_id, grant_id, account_id, bool(enabled), bool(dpop_bound),
                       institution_id, institution_type, list(roles), bool(emergency))


def _pairwise_statement(dialect: Any) -> Any:
    return dialect.insert(PAIRWISE).on_conflict_do_nothing(
        index_elements=[PAIRWISE.c.institution_id, PAIRWISE.c.sub])


_REMEMBER_PAIRWISE = {"postgresql": _pairwise_statement(postgresql),
                      "sqlite": _pairwise_statement(sqlite)}


def client_row(session: Session, client_id: str) -> ClientRow | None:
    """The registered client's columns (enabled or not), read on every request: no cache."""
    with reader(session) as db:
        row = db.execute(CLIENT_BY_ID, (client_id,)).fetchone()
        if row is None:
            return None
        return ClientRow(
            row[0], row[1], row[2], row[3], db.json_value(row[4]), db.json_value(row[5]),
            db.json_value(row[6]), row[7], bool(row[8]), bool(row[9]), bool(row[10]))


def resource_server_exists(session: Session, uri: str) -> bool:
    """Whether an enabled client answers for the RFC 8707 resource ``uri``."""
    with reader(session) as db:
        return db.execute(RESOURCE_SERVER, (uri,)).fetchone() is not None


def insert_grant(session: Session, *, grant_id: str, client_id: str, scope: str,
                 resource: list[str], now: datetime) -> None:
    """A client's own grant (client credentials: no patient), in the caller's write."""
    db = driver(session)
    db.execute(INSERT_GRANT, (grant_id, client_id, None, scope, db.json_param(resource),
                              db.time_param(now)))


def insert_access_token(session: Session, *, jti: str, grant_id: str, client_id: str,
                        subject: str, scope: str, audience: list[str], dpop_jkt: str | None,
                        issued_at: datetime, expires_at: datetime) -> None:
    """An issued access token by ``jti``, in the caller's write."""
    db = driver(session)
    db.execute(INSERT_ACCESS_TOKEN, (
        jti, grant_id, client_id, subject, scope, db.json_param(audience), dpop_jkt,
        db.time_param(issued_at), db.time_param(expires_at)))


def insert_refresh_token(session: Session, values: Mapping[str, Any]) -> None:
    session.connection().execute(REFRESH_TOKENS.insert(), dict(values))


def remember_pairwise(session: Session, institution_id: str, sub: str, account_id: str,
                      now: datetime) -> None:
    """Record which account a pairwise ``sub`` names for an institution; idempotent.

    ``INSERT ... ON CONFLICT DO NOTHING``: concurrent first tokens for the same patient and
    institution both succeed, and the row is written once.
    """
    statement = _REMEMBER_PAIRWISE[
        "postgresql" if dialect_name(session) == "postgresql" else "sqlite"]
    session.connection().execute(statement, {
        "institution_id": institution_id, "sub": sub, "account_id": account_id,
        "created_at": now})


def live_access_token(session: Session, jti: str, now: datetime) -> str | None:
    """The client id of a recorded, unexpired, unrevoked access token whose grant (if any)
    still stands; None otherwise. One primary-key lookup joining token and grant."""
    with reader(session) as db:
        row = db.execute(TOKEN_AND_GRANT, (jti,)).fetchone()
        if row is None:
            return None
        client_id, grant_id, expires_at, revoked_at, grant_found, grant_revoked_at = row
        expires = db.time_value(expires_at)
    if revoked_at is not None or expires is None or expires <= now:
        return None
    if grant_id is not None and (grant_found is None or grant_revoked_at is not None):
        return None
    return str(client_id)


def revoke_grant(session: Session, grant: Grant, reason: str, now: datetime) -> None:
    """Revoke a grant and every token it issued; one audit event (inside the caller's write)."""
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_reason = now, reason
    session.execute(update(RefreshToken).where(RefreshToken.grant_id == grant.id,
                                               RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    session.execute(update(AccessToken).where(AccessToken.grant_id == grant.id,
                                              AccessToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    session.flush()
    audit.record(session, audit.Event(
        type="oauth.grant_revoked", actor="system:oauth", outcome="success", reason=reason,
        client=grant.client_id, patient=grant.account_id, detail={"grant": grant.id}))
