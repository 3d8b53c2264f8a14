"""Registry use cases: each is one audited write."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authz import audit
from authz.database import write
from authz.errors import Conflict
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.registry import rules
from authz.registry.models import Client
from authz.registry.models import Institution


@dataclass(frozen=True)
class InstitutionSpec:
    name: str
    type: str
    code: str
    roles: Sequence[str] = ()
    emergency: bool = False


@dataclass(frozen=True)
class ClientSpec:
    institution: str
    name: str
    auth_method: str
    redirect_uris: Sequence[str]
    scope: str
    jwks: str | bytes | None = None
    client_id: str | None = None
    resource_uri: str | None = None
    require_par: bool = False  # RFC 9126 §6 require_pushed_authorization_requests
    dpop_bound: bool = False  # RFC 9449 §5.2 dpop_bound_access_tokens
    extra: dict[str, str] = field(default_factory=dict)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def add_institution(session: Session, spec: InstitutionSpec, *, actor: str) -> Institution:
    kind = rules.check_type(spec.type)
    institution = Institution(
        id=new_id("ins"), name=rules.check_name(spec.name), type=kind,
        code=rules.check_code(spec.code),
        roles=rules.check_roles(kind, spec.roles, spec.emergency), emergency=spec.emergency,
    )
    taken = Conflict(f"institution code {institution.code!r} is already registered")
    try:
        with write(session):
            if _code_taken(session, institution.code):
                raise taken
            session.add(institution)
            session.flush()
            audit.record(session, audit.Event(
                type="registry.institution_added", actor=actor, institution=institution.id,
                detail={"type": kind, "code": institution.code, "roles": institution.roles,
                        "emergency": int(institution.emergency)}))
    except IntegrityError:
        # PostgreSQL: a concurrent registration of the same code won between check and insert.
        raise taken from None
    return institution


def _code_taken(session: Session, code: str) -> bool:
    found = session.execute(select(Institution.id).where(Institution.code == code)).first()
    return found is not None


def _client_id_taken(session: Session, client_id: str) -> bool:
    return session.get(Client, client_id) is not None


def get_institution(session: Session, institution_id: str) -> Institution:
    found = session.get(Institution, institution_id)
    if found is None:
        raise NotFound(f"no institution {institution_id!r}")
    return found


def list_institutions(session: Session) -> list[Institution]:
    return list(session.execute(select(Institution).order_by(Institution.created_at,
                                                             Institution.id)).scalars())


def add_client(session: Session, spec: ClientSpec, *, actor: str) -> Client:
    method, uris, jwks = _check_auth(spec)
    # An explicit but empty id is a mistake, not a request for a generated one.
    client_id = (rules.check_client_id(spec.client_id) if spec.client_id is not None
                 else new_id("cl"))
    name = rules.check_name(spec.name)
    taken = Conflict(f"client id {client_id!r} is already registered")
    try:
        with write(session):
            institution = get_institution(session, spec.institution)
            scopes, resource = _check_for_institution(session, spec, institution, uris,
                                                      method=method, current=None)
            if _client_id_taken(session, client_id):
                raise taken
            client = Client(client_id=client_id, institution_id=institution.id, name=name,
                            auth_method=method, redirect_uris=uris, jwks=jwks, scopes=scopes,
                            resource_uri=resource, enabled=True,
                            require_par=bool(spec.require_par),
                            dpop_bound=bool(spec.dpop_bound))
            session.add(client)
            session.flush()
            audit.record(session, audit.Event(
                type="registry.client_added", actor=actor, institution=institution.id,
                client=client_id, detail=_audit_detail(client)))
    except IntegrityError:
        # PostgreSQL: a concurrent registration of the same client id won the race.
        raise taken from None
    return client


def replace_client(session: Session, client_id: str, spec: ClientSpec, *, actor: str) -> Client:
    """Replace every registered value of a client (RFC 7592 §2.2) under the rules of
    :func:`add_client`. Its id and institution never change; it stays enabled or disabled."""
    method, uris, jwks = _check_auth(spec)
    name = rules.check_name(spec.name)
    resource_taken = Conflict(f"resource URI {spec.resource_uri!r} is already registered")
    try:
        with write(session):
            client = get_client(session, client_id)
            if spec.institution != client.institution_id:
                raise InvalidInput("a client's institution cannot change")
            scopes, resource = _check_for_institution(session, spec, client.institution, uris,
                                                      method=method, current=client_id)
            client.name, client.auth_method, client.redirect_uris = name, method, uris
            client.jwks, client.scopes, client.resource_uri = jwks, scopes, resource
            client.require_par, client.dpop_bound = bool(spec.require_par), bool(spec.dpop_bound)
            session.flush()
            audit.record(session, audit.Event(
                type="registry.client_replaced", actor=actor, institution=client.institution_id,
                client=client_id, detail=_audit_detail(client)))
    except IntegrityError:
        raise resource_taken from None
    return client


def _check_auth(spec: ClientSpec) -> tuple[str, list[str], dict[str, Any] | None]:
    """The checks that need no database: auth method, redirect URIs, keys."""
    method = rules.check_auth_method(spec.auth_method)
    public = method == "none"
    uris = rules.check_redirect_uris(spec.redirect_uris, public=public)
    return method, uris, rules.check_jwks(spec.jwks, auth_method=method)


def _check_for_institution(session: Session, spec: ClientSpec, institution: Institution,
                           uris: list[str], *, method: str,
                           current: str | None) -> tuple[list[str], str | None]:
    """Scopes and resource URI for a client of ``institution`` (``current``: the client being
    replaced, whose own resource URI is not a conflict)."""
    scopes = rules.check_scopes(spec.scope, auth_method=method,
                                institution_type=institution.type)
    if not uris and "openid" in scopes:
        raise InvalidInput("a client with the openid scope needs a redirect URI")
    if spec.require_par and not uris:
        raise InvalidInput("requiring pushed authorization requests needs a client with a"
                           " redirect URI (it concerns authorization requests)")
    resource = rules.check_resource_uri(spec.resource_uri, institution_type=institution.type)
    if resource and session.execute(
            select(Client.client_id).where(Client.resource_uri == resource,
                                           Client.client_id != current)).first():
        raise Conflict(f"resource URI {resource!r} is already registered")
    return scopes, resource


def _audit_detail(client: Client) -> dict[str, Any]:
    return {"auth_method": client.auth_method, "scopes": list(client.scopes),
            "redirect_uris": list(client.redirect_uris),
            "require_par": int(client.require_par), "dpop_bound": int(client.dpop_bound)}


def get_client(session: Session, client_id: str) -> Client:
    found = session.get(Client, client_id)
    if found is None:
        raise NotFound(f"no client {client_id!r}")
    return found


def list_clients(session: Session, institution: str | None = None) -> list[Client]:
    query = select(Client).order_by(Client.created_at, Client.client_id)
    if institution:
        query = query.where(Client.institution_id == institution)
    return list(session.execute(query).scalars())


def set_client_enabled(session: Session, client_id: str, enabled: bool, *, actor: str) -> Client:
    with write(session):
        client = get_client(session, client_id)
        if client.enabled != enabled:
            client.enabled = enabled
            session.flush()
            audit.record(session, audit.Event(
                type="registry.client_enabled" if enabled else "registry.client_disabled",
                actor=actor, institution=client.institution_id, client=client_id))
    return client


def delete_client(session: Session, client_id: str, *, actor: str) -> None:
    with write(session):
        client = get_client(session, client_id)
        institution = client.institution_id
        session.delete(client)
        session.flush()
        audit.record(session, audit.Event(
            type="registry.client_deleted", actor=actor, institution=institution,
            client=client_id))
