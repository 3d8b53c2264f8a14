"""Consent records, their version history, and the pairwise-subject index.

A consent is data looked up by index during a decision, never a Casbin policy line. Every change
(grant, narrow, extend, revoke) bumps ``version`` and appends the full canonical snapshot to
``consent_versions``; the row itself always holds the latest version, so a decision reads one
row per (patient, institution) pair.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authz.database import Base
from authz.database import UTCDateTime
from authz.database import utcnow

PERMIT = "permit"
DENY = "deny"
ACTIVE = "active"
REVOKED = "revoked"
EXPIRED = "expired"  # never stored: an active consent whose end has passed reads as expired


class Consent(Base):
    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_patient_institution", "patient_id", "institution_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    # None only for a deny directive that applies to every institution; a permit always names
    # exactly one grantee.
    institution_id: Mapped[str | None] = mapped_column(ForeignKey("institutions.id"),
                                                       nullable=True)
    decision: Mapped[str] = mapped_column(String(8))
    purpose: Mapped[str] = mapped_column(String(32))
    categories: Mapped[list[str]] = mapped_column(JSON)
    category_mask: Mapped[int] = mapped_column(BigInteger)
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(32))
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConsentVersion(Base):
    """One version of a consent: the canonical JSON snapshot the receipt signs."""

    __tablename__ = "consent_versions"

    consent_id: Mapped[str] = mapped_column(ForeignKey("consents.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    change: Mapped[str] = mapped_column(String(16))
    record: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PairwiseSubject(Base):
    """Which account a pairwise ``sub`` names for one institution (OIDC Core §8.1 is one-way)."""

    __tablename__ = "pairwise_subjects"

    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), primary_key=True)
    sub: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmergencyAccess(Base):
    """A 24-hour emergency viewing window opened by the first emergency decision.

    Queued for auditor review until ``reviewed_at`` is set; the patient is notified.
    """

    __tablename__ = "emergency_accesses"
    __table_args__ = (Index("ix_emergency_patient_institution", "patient_id", "institution_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"))
    practitioner: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True,
                                                         index=True)
    reviewer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    review_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
