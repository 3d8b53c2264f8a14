"""Institutions and the OAuth clients bound to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from authz.database import Base
from authz.database import UTCDateTime
from authz.database import utcnow


class Institution(Base):
    __tablename__ = "institutions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    clients: Mapped[list[Client]] = relationship(back_populates="institution")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type, "code": self.code,
                "roles": list(self.roles), "emergency": self.emergency,
                "created_at": self.created_at.isoformat()}


class Client(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    auth_method: Mapped[str] = mapped_column(String(32))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # RFC 8707: the resource identifier a resource server answers for (token ``aud``).
    resource_uri: Mapped[str | None] = mapped_column(String(2000), unique=True, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # FAPI 2.0: this client must push its authorization requests (RFC 9126 §6) and present
    # DPoP-bound tokens (RFC 9449) everywhere, whatever the global settings say.
    require_par: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    dpop_bound: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    institution: Mapped[Institution] = relationship(back_populates="clients")

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "institution": self.institution_id,
                "name": self.name, "auth_method": self.auth_method,
                "redirect_uris": list(self.redirect_uris), "scopes": list(self.scopes),
                "jwks": self.jwks, "resource_uri": self.resource_uri, "enabled": self.enabled,
                # RFC 9126 §6 and RFC 9449 §5.2 client metadata names
                "require_pushed_authorization_requests": bool(self.require_par),
                "dpop_bound_access_tokens": bool(self.dpop_bound),
                "created_at": self.created_at.isoformat()}


class RegistrationToken(Base):
    """An RFC 7591 §3 initial access token, made by the operator for one institution.

    Only the SHA-256 of the token is kept; every client it registers belongs to
    ``institution_id``, whatever the request says.
    """

    __tablename__ = "registration_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    uses_left: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "institution": self.institution_id,
                "expires_at": self.expires_at.isoformat(), "uses_left": self.uses_left,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


class ClientRegistration(Base):
    """RFC 7592: a dynamically registered client's registration access token (its hash).

    Deleted with the client, and when the client deletes its own registration.
    """

    __tablename__ = "client_registrations"

    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The initial access token that registered the client: which operator hand-out it came from.
    token_id: Mapped[str] = mapped_column(
        ForeignKey("registration_tokens.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
