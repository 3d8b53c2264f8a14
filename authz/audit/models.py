"""Audit tables: the append-only event log and its single chain-head row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import CheckConstraint
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authz.database import Base
from authz.database import UTCDateTime

GENESIS_HASH = bytes(32)
HEAD_ID = 1


class AuditHead(Base):
    """The sequencer: appends lock this row, so they are totally ordered."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditEvent(Base):
    """One event. ``record`` is the canonical JSON that was hashed; the other columns index it."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_patient_seq", "patient_id", "seq"),
        Index("ix_audit_events_institution_seq", "institution_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    institution_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    record: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
