"""Policy versions (content-addressed) and disaster-mode declarations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authz.database import Base
from authz.database import UTCDateTime
from authz.database import utcnow


class PolicyVersion(Base):
    """A policy bundle (model and rule files) by the SHA-256 of its canonical form.

    The active version is the one activated last; every instance converges on it.
    """

    __tablename__ = "policy_versions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    files: Mapped[str] = mapped_column(Text)  # canonical JSON {name: text}
    source: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True,
                                                          index=True)


class DisasterDeclaration(Base):
    """An operator's disaster-mode switch: bounded in time and to named institutions."""

    __tablename__ = "disaster_declarations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    institutions: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
