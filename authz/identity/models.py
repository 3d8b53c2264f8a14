"""Accounts, their certificates and proofing records, card transactions and login sessions.

Never stored: PINs, private keys, raw certificates, certificate serials in clear, the My Number.
Attributes and certificate references are AES-GCM sealed; certificates are found by keyed hash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authz.database import Base
from authz.database import UTCDateTime
from authz.database import utcnow

# Account assurance: what verified claims may be released.
VERIFIED = "verified"  # proofed with a signature certificate that is still good
LOGIN_ONLY = "login_only"  # no signature certificate (e.g. under 15): no verified claims
REPROOFING = "reproofing_required"  # the proofing certificate was revoked (moved, renamed)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    person_link_id: Mapped[str] = mapped_column(String(64), unique=True)
    assurance: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountCertificate(Base):
    """A certificate that answered for an account: keyed hash, sealed reference for re-checks."""

    __tablename__ = "account_certificates"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    medium: Mapped[str] = mapped_column(String(8))  # card or phone
    policy: Mapped[str] = mapped_column(String(64))
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    reference: Mapped[bytes] = mapped_column(LargeBinary)  # sealed {"anchor", "serial"}
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Verification(Base):
    """One identity proofing (OIDC4IDA ``verification``); history is kept, one is current."""

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # verification_process
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    trust_framework: Mapped[str] = mapped_column(String(200))
    evidence_ref: Mapped[str] = mapped_column(String(32))
    certificate: Mapped[str] = mapped_column(ForeignKey("account_certificates.fingerprint"))
    attributes: Mapped[bytes] = mapped_column(LargeBinary)  # sealed JSON
    current: Mapped[bool] = mapped_column(default=True)


class CardTransaction(Base):
    """One card login (and the proofing step that may follow), bound to one browser session."""

    __tablename__ = "card_transactions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    browser: Mapped[str] = mapped_column(String(64))  # SHA-256 of the browser binding
    purpose: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    nonce: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[int] = mapped_column(Integer)
    short_code: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    responses: Mapped[int] = mapped_column(Integer, default=0)
    bad_codes: Mapped[int] = mapped_column(Integer, default=0)
    person_link_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    account_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    medium: Mapped[str | None] = mapped_column(String(8), nullable=True)  # card or phone
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amr: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginSession(Base):
    """A server-side login session: listed to the patient and ended by them or by expiry."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
