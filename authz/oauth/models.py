"""OAuth state: grants, authorization codes, refresh-token families, issued access tokens.

Codes and refresh tokens are stored only as SHA-256 hashes; access tokens are JWTs, recorded by
``jti`` so introspection and revocation can refuse them before they expire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authz.database import Base
from authz.database import UTCDateTime
from authz.database import utcnow


class Grant(Base):
    """What a patient approved for a client on the consent page (or a client for itself)."""

    __tablename__ = "oauth_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"),
                                           index=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True,
                                                   nullable=True)
    scope: Mapped[str] = mapped_column(Text)
    resource: Mapped[list[str]] = mapped_column(JSON, default=list)
    # RFC 9396: the health_record_access details the patient approved (categories ticked)
    authorization_details: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON, nullable=True)
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amr: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    login_session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # OIDC Core §5.5: the approved ``claims`` request (userinfo / id_token members), or None
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuthorizationCode(Base):
    """Single use, 60 seconds: a replayed code revokes everything its grant issued."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("oauth_grants.id", ondelete="CASCADE"),
                                          index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    # RFC 9449 §10: the DPoP key the token request must prove, when the client named one
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # failed exchanges (wrong verifier, redirect URI, DPoP key): a few are tolerated, see
    # docs/decisions.md "failed code exchange"
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RefreshToken(Base):
    """One generation of a rotating family (the family is the grant)."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("oauth_grants.id", ondelete="CASCADE"),
                                          index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(Text)
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AccessToken(Base):
    """An issued JWT access token, by ``jti``: what introspection and revocation look at."""

    __tablename__ = "oauth_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True, nullable=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    audience: Mapped[list[str]] = mapped_column(JSON)
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def claims_view(self) -> dict[str, Any]:
        return {"jti": self.jti, "client_id": self.client_id, "sub": self.subject,
                "scope": self.scope, "aud": list(self.audience)}


class PushedRequest(Base):
    """RFC 9126: an authorization request pushed by its client, used by ``request_uri``.

    Dead once an authorization under it completes (approved or denied), or when it expires.
    """

    __tablename__ = "oauth_pushed_requests"

    handle_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    params: Mapped[list[list[str]]] = mapped_column(JSON)  # [[name, value], ...]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
