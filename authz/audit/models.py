"""Audit tables: the append-only event log and its single chain-head row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import CheckConstraint
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
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


class AuditNode(Base):
    """A perfect Merkle subtree root: ``(level, idx)`` covers leaves [idx·2^level, (idx+1)·2^level).

    Written once when the subtree completes (about two rows per event), never updated; proofs
    and roots fold O(log n) of them (``authz.audit.merkle``).
    """

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed tree head: the first ``tree_size`` events have Merkle root ``root_hash``.

    ``head_hash`` is the chain hash of entry ``tree_size``; ``signature`` is a compact JWS (ES256,
    ``typ`` ``authz-audit-checkpoint+jwt``) over all of these.
    """

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kid: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


class AuditRetention(Base):
    """A sealed prefix of the log moved out to an export file (``authz audit retain``).

    Verification of what stays starts after ``through_seq``: from ``last_hash`` for the chain and
    from the stored Merkle nodes (never deleted) for the roots.
    """

    __tablename__ = "audit_retentions"

    through_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    export_sha256: Mapped[str] = mapped_column(String(64))
    retained_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Auditor(Base):
    """A person the operator registered as auditor, by the link id of their card."""

    __tablename__ = "auditors"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    person_link_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # enabled | disabled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "status": self.status,
                "created_at": self.created_at.isoformat(),
                "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None}
