"""ES256 signing keys. Private parts are encrypted with the key-encryption key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from authz.database import Base
from authz.database import UTCDateTime
from authz.database import utcnow

STATES = ("next", "active", "retiring", "retired")


class SigningKey(Base):
    """Lifecycle next -> active -> retiring -> retired.

    ``slot`` is ``"active"`` or ``"next"`` for the one key in that state and NULL otherwise; its
    unique constraint lets the database, not a process, guarantee a single active key even when
    two instances generate keys at first start.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16), default="ES256")
    state: Mapped[str] = mapped_column(String(16), index=True)
    slot: Mapped[str | None] = mapped_column(String(16), unique=True, nullable=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retiring_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {"kid": self.kid, "alg": self.alg, "state": self.state,
                "created_at": iso(self.created_at), "activated_at": iso(self.activated_at),
                "retiring_at": iso(self.retiring_at), "retired_at": iso(self.retired_at),
                "public_jwk": dict(self.public_jwk)}
