"""Dynamic client registration (RFC 7591) and its management (RFC 7592), no Flask here.

An operator hands an institution an initial access token (``authz client registration-token``);
each use registers one client of that institution, under exactly the rules of
``authz client add`` (:func:`authz.registry.service.add_client`). The client then manages its
registration with the registration access token it got back. Both tokens are stored as SHA-256
hashes. Authlib's ``ClientRegistrationEndpoint`` is not used: it answers a missing token with
403, always mints a client secret and validates metadata with rules of its own
(docs/decisions.md, "Dynamic client registration").
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from authz import audit
from authz.database import write
from authz.errors import AuthzError
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.oauth.models import AccessToken
from authz.oauth.models import Grant
from authz.oauth.models import RefreshToken
from authz.oauth.store import revoke_grant
from authz.registry import rules
from authz.registry import service
from authz.registry.models import Client
from authz.registry.models import ClientRegistration
from authz.registry.models import RegistrationToken

INITIAL_PREFIX = "azit_"  # noqa: S105 - token prefixes, not secrets
REGISTRATION_PREFIX = "azrat_"  # noqa: S105
MAX_LIFETIME = timedelta(days=30)
MAX_USES = 1000
MAX_BODY = 128 * 1024
SUPPORTED_GRANTS = ("authorization_code", "refresh_token", "client_credentials")
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})


class RegistrationError(Exception):
    """An RFC 7591 §3.2.2 error (400), or an RFC 6750 ``invalid_token`` (401)."""

    status = 400

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


class InvalidToken(RegistrationError):
    """No token, or one that is unknown, expired, used up, revoked or for another client."""

    status = 401

    def __init__(self, description: str, *, missing: bool = False) -> None:
        super().__init__("invalid_token", description)
        self.missing = missing


def _metadata_error(description: str) -> RegistrationError:
    return RegistrationError("invalid_client_metadata", description)


@dataclass(frozen=True)
class Registered:
    client: Client
    registration_access_token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- initial access tokens (operator) -------------------------------------------------------------

def issue_initial_token(session: Session, institution_id: str, *, lifetime: timedelta, uses: int,
                        actor: str, now: datetime) -> tuple[RegistrationToken, str]:
    """A new initial access token: the row and the token itself, which is never stored."""
    if not timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
        raise InvalidInput("a registration token lives from 1 minute to 30 days")
    if not 1 <= uses <= MAX_USES:
        raise InvalidInput(f"a registration token has 1 to {MAX_USES} uses")
    token = INITIAL_PREFIX + secrets.token_urlsafe(32)
    with write(session):
        institution = service.get_institution(session, institution_id)
        row = RegistrationToken(id=service.new_id("rit"), token_hash=_hash(token),
                                institution_id=institution.id, expires_at=now + lifetime,
                                uses_left=uses, created_at=now)
        session.add(row)
        session.flush()
        audit.record(session, audit.Event(
            type="registry.registration_token_issued", actor=actor, institution=institution.id,
            detail={"token": row.id, "uses": uses,
                    "lifetime_seconds": int(lifetime.total_seconds())}))
    return row, token


def list_initial_tokens(session: Session) -> list[RegistrationToken]:
    return list(session.execute(select(RegistrationToken).order_by(
        RegistrationToken.created_at, RegistrationToken.id)).scalars())


def revoke_initial_token(session: Session, token_id: str, *, actor: str,
                         now: datetime) -> RegistrationToken:
    """Revoke an initial access token; clients it already registered stay."""
    with write(session):
        row = session.get(RegistrationToken, token_id)
        if row is None:
            raise NotFound(f"no registration token {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = now
            session.flush()
            audit.record(session, audit.Event(
                type="registry.registration_token_revoked", actor=actor,
                institution=row.institution_id, detail={"token": row.id}))
    return row


def _consume(session: Session, token: str, now: datetime) -> RegistrationToken:
    """Take one use of an initial access token inside the caller's write transaction.

    One conditional UPDATE: of two concurrent registrations with the last use, the second
    waits for the first's row lock (or the SQLite write lock) and then matches nothing.
    """
    used = session.execute(
        update(RegistrationToken)
        .where(RegistrationToken.token_hash == _hash(token), RegistrationToken.uses_left > 0,
               RegistrationToken.revoked_at.is_(None))
        .values(uses_left=RegistrationToken.uses_left - 1)
        .returning(RegistrationToken.id)).scalar_one_or_none()
    row = session.get(RegistrationToken, used, populate_existing=True) if used else None
    if row is None or row.expires_at <= now:
        raise InvalidToken("the initial access token is unknown, expired, used up or revoked")
    return row


# -- registration (RFC 7591) ----------------------------------------------------------------------

def register(session: Session, token: str, body: bytes | None, *, request_id: str | None,
             now: datetime) -> Registered:
    """Register one client of the token's institution, or raise :class:`RegistrationError`.

    The token use, the client, its registration and the audit event commit together; a
    refused request stores nothing but (once the token is good) one audit event.
    """
    initial: RegistrationToken | None = None
    try:
        with write(session):
            initial = _consume(session, token, now)
            metadata = parse_body(body)
            spec = to_spec(metadata, initial.institution_id)
            actor = f"registration_token:{initial.id}"
            client = _apply(lambda: service.add_client(session, spec, actor=actor))
            secret = REGISTRATION_PREFIX + secrets.token_urlsafe(32)
            session.add(ClientRegistration(client_id=client.client_id, token_hash=_hash(secret),
                                           token_id=initial.id, created_at=now))
            session.flush()
    except RegistrationError as error:
        if initial is not None and not isinstance(error, InvalidToken):
            _refused(session, error, actor=f"registration_token:{initial.id}",
                     institution=initial.institution_id, client=None, request_id=request_id)
        raise
    return Registered(client, secret)


def _apply(action: Callable[[], Client]) -> Client:
    """Run a registry write; its refusals become RFC 7591 ``invalid_client_metadata``."""
    try:
        client = action()
    except AuthzError as error:
        if error.status >= 500:
            raise
        raise _metadata_error(error.description) from None
    return client


def _refused(session: Session, error: RegistrationError, *, actor: str, institution: str,
             client: str | None, request_id: str | None) -> None:
    with write(session):
        audit.record(session, audit.Event(
            type="registry.registration_refused", actor=actor, outcome="failure",
            reason=error.error, institution=institution, client=client,
            request_id=request_id))


def parse_body(body: bytes | None) -> dict[str, Any]:
    """A JSON object of at most MAX_BODY bytes, without repeated members anywhere (None: the
    request was not ``application/json``)."""
    if body is None:
        raise _metadata_error("the request body must be application/json")
    if len(body) > MAX_BODY:
        raise _metadata_error(f"the request body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body, object_pairs_hook=_unique_members, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _metadata_error("the request body is not a JSON object without repeated"
                              " members") from None
    if not isinstance(data, dict):
        raise _metadata_error("the request body must be a JSON object")
    return data


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("repeated member")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def to_spec(metadata: Mapping[str, Any], institution: str) -> service.ClientSpec:
    """RFC 7591 §2 client metadata as a registry :class:`~authz.registry.service.ClientSpec`.

    Only what the registry cannot see is checked here (names, types, what we never support);
    every rule about values is the registry's own. Unknown members are ignored (§2).
    """
    if "software_statement" in metadata:
        raise RegistrationError("invalid_software_statement",
                                "software statements are not supported")
    if "jwks_uri" in metadata:
        raise _metadata_error("jwks_uri is not supported: send the public keys in jwks"
                              " (this service never fetches URLs)")
    method = _string(metadata, "token_endpoint_auth_method")
    if method in SECRET_METHODS:
        raise _metadata_error(f"{method} is not supported: client secrets are not issued;"
                              " use private_key_jwt, or none for a public client with PKCE")
    for name in ("token_endpoint_auth_signing_alg", "id_token_signed_response_alg"):
        if name in metadata and metadata[name] != "ES256":
            raise _metadata_error(f"{name} must be ES256")
    _check_grant_types(metadata, method)
    _check_response_types(metadata)
    uris = _strings(metadata, "redirect_uris")
    try:
        rules.check_redirect_uris(uris, public=method == "none")
    except InvalidInput as error:
        raise RegistrationError("invalid_redirect_uri", error.description) from None
    jwks = metadata.get("jwks")
    if method == "private_key_jwt" and not isinstance(jwks, dict):
        raise _metadata_error("private_key_jwt needs jwks: an object with the client's public"
                              " keys")
    resource = metadata.get("resource_uri")
    if resource is not None and not isinstance(resource, str):
        raise _metadata_error("resource_uri must be a string")
    return service.ClientSpec(
        institution=institution, name=_string(metadata, "client_name"), auth_method=method,
        redirect_uris=uris, scope=_string(metadata, "scope"),
        jwks=json.dumps(jwks) if jwks is not None else None, resource_uri=resource,
        require_par=_flag(metadata, "require_pushed_authorization_requests"),
        dpop_bound=_flag(metadata, "dpop_bound_access_tokens"))


def _string(metadata: Mapping[str, Any], name: str) -> str:
    value = metadata.get(name)
    if not isinstance(value, str):
        raise _metadata_error(f"{name} is required, as a string")
    return value


def _strings(metadata: Mapping[str, Any], name: str) -> list[str]:
    value = metadata.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _metadata_error(f"{name} must be an array of strings")
    return value


def _flag(metadata: Mapping[str, Any], name: str) -> bool:
    value = metadata.get(name, False)
    if not isinstance(value, bool):
        raise _metadata_error(f"{name} must be true or false")
    return value


def _check_grant_types(metadata: Mapping[str, Any], method: str) -> None:
    """Grant types are not stored: the server allows what the auth method and redirect URIs
    allow. A request for another grant (implicit, password, device...) is refused."""
    for grant in _strings(metadata, "grant_types"):
        if grant not in SUPPORTED_GRANTS:
            raise _metadata_error(f"grant type {grant!r} is not supported; only "
                                  + ", ".join(SUPPORTED_GRANTS))
        if grant == "client_credentials" and method != "private_key_jwt":
            raise _metadata_error("client_credentials needs private_key_jwt")


def _check_response_types(metadata: Mapping[str, Any]) -> None:
    for kind in _strings(metadata, "response_types"):
        if kind != "code":
            raise _metadata_error(f"response type {kind!r} is not supported (no implicit or"
                                  " hybrid flow); only code")


def metadata_view(client: Client) -> dict[str, Any]:
    """The client's registered metadata (RFC 7591 §3.2.1), as the server applies it."""
    grants = ["authorization_code", "refresh_token"] if client.redirect_uris else []
    if client.auth_method == "private_key_jwt":
        grants.append("client_credentials")
    view: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created_at.timestamp()),
        "client_name": client.name,
        "token_endpoint_auth_method": client.auth_method,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": grants,
        "response_types": ["code"] if client.redirect_uris else [],
        "scope": " ".join(client.scopes),
        "require_pushed_authorization_requests": bool(client.require_par),
        "dpop_bound_access_tokens": bool(client.dpop_bound),
    }
    if client.jwks is not None:
        view["jwks"] = client.jwks
        view["token_endpoint_auth_signing_alg"] = "ES256"  # noqa: S105 - an algorithm name
    if client.resource_uri is not None:
        view["resource_uri"] = client.resource_uri
    return view


# -- management (RFC 7592) ------------------------------------------------------------------------

def authenticate(session: Session, client_id: str, token: str) -> Client:
    """The enabled client that ``token`` manages, if it is ``client_id``; else InvalidToken,
    the same for an unknown client as for a wrong token (existence is not revealed)."""
    found = session.execute(
        select(Client).join(ClientRegistration, ClientRegistration.client_id == Client.client_id)
        .where(ClientRegistration.token_hash == _hash(token))).scalar_one_or_none()
    if found is None or found.client_id != client_id or not found.enabled:
        raise InvalidToken("the registration access token is not valid for this client")
    return found


def replace(session: Session, client_id: str, token: str, body: bytes | None, *,
            request_id: str | None) -> Client:
    """RFC 7592 §2.2: the request's metadata replaces all of the client's; omitted optional
    members are removed (flags off, no redirect URIs), required ones are refused."""
    client: Client | None = None
    try:
        with write(session):
            client = authenticate(session, client_id, token)
            metadata = parse_body(body)
            if metadata.get("client_id") != client_id:
                raise _metadata_error("client_id must be present and be this client's id")
            spec = to_spec(metadata, client.institution_id)
            actor = f"client:{client_id}"
            replaced = _apply(lambda: service.replace_client(session, client_id, spec,
                                                             actor=actor))
    except RegistrationError as error:
        if client is not None and not isinstance(error, InvalidToken):
            _refused(session, error, actor=f"client:{client_id}",
                     institution=client.institution_id, client=client_id,
                     request_id=request_id)
        raise
    return replaced


def deregister(session: Session, client_id: str, token: str, *, request_id: str | None,
               now: datetime) -> None:
    """RFC 7592 §2.3: the client is disabled (its id is never reused), every grant and token
    it holds is revoked, and the registration access token stops working."""
    actor = f"client:{client_id}"
    with write(session):
        client = authenticate(session, client_id, token)
        service.set_client_enabled(session, client_id, False, actor=actor)
        for grant in session.execute(select(Grant).where(
                Grant.client_id == client_id, Grant.revoked_at.is_(None))).scalars().all():
            revoke_grant(session, grant, "client_deregistered", now)
        # Client-credentials tokens belong to no grant.
        session.execute(update(AccessToken).where(
            AccessToken.client_id == client_id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=now))
        session.execute(update(RefreshToken).where(
            RefreshToken.client_id == client_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now))
        session.execute(delete(ClientRegistration).where(
            ClientRegistration.client_id == client_id))
        audit.record(session, audit.Event(
            type="registry.client_deregistered", actor=actor,
            institution=client.institution_id, client=client_id, request_id=request_id))

