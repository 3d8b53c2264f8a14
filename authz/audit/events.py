"""The audit spine: ``record(session, event)`` appends one hash-chained event.

Each record is canonical JSON (strings and integers) that names its sequence number and the
hash of the previous record; its own hash is ``SHA-256(record)``. The append runs inside the
caller's write transaction, so the event commits with the state change it describes, or not
at all. Appends are serialized by the chain-head row (see ``authz.database``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from authz.audit import canonical
from authz.audit.models import GENESIS_HASH
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditHead
from authz.database import SQL
from authz.database import ProgrammingError
from authz.database import driver
from authz.database import is_write_transaction
from authz.database import utcnow

HEAD = cast(Table, AuditHead.__table__)
_HEAD = SQL("SELECT seq, hash FROM audit_head WHERE id = ?")
_HEAD_LOCKED = SQL("SELECT seq, hash FROM audit_head WHERE id = ? FOR UPDATE")
_APPEND = SQL("INSERT INTO audit_events (seq, time, type, outcome, institution_id, patient_id,"
              " record, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_ADVANCE = SQL("UPDATE audit_head SET seq = ?, hash = ? WHERE id = ?")
SCHEMA_VERSION = 1
OUTCOMES = frozenset({"success", "failure", "permit", "deny"})
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class Event:
    """What happened. Identifiers only: never personal attributes, secrets or record content."""

    type: str
    actor: str
    outcome: str = "success"
    institution: str | None = None
    client: str | None = None
    patient: str | None = None
    reason: str | None = None
    request_id: str | None = None
    policy_version: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _TYPE.match(self.type) or len(self.type) > 64:
            raise ValueError(f"bad event type {self.type!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"bad outcome {self.outcome!r}")
        if not self.actor:
            raise ValueError("an event needs an actor")
        canonical.check(self.detail)


def timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-28T17:43:10.123456Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_record(event: Event, seq: int, prev: bytes, moment: datetime) -> bytes:
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "seq": seq,
        "prev": prev.hex(),
        "time": timestamp(moment),
        "type": event.type,
        "actor": event.actor,
        "outcome": event.outcome,
    }
    optional = {
        "institution": event.institution,
        "client": event.client,
        "patient": event.patient,
        "reason": event.reason,
        "request_id": event.request_id,
        "policy_version": event.policy_version,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if event.detail:
        body["detail"] = dict(event.detail)
    return canonical.dumps(body)


def record(session: Session, event: Event, *, now: datetime | None = None) -> int:
    """Append ``event`` in the caller's write transaction and return its sequence number."""
    if not is_write_transaction(session):
        raise ProgrammingError("audit.record() must run inside authz.database.write()")
    # Straight to the driver (authz.database.Driver): SQLAlchemy's bookkeeping per execution
    # cost more than the SQL itself, and this runs on every audited request.
    db = driver(session)
    row = db.execute(_HEAD_LOCKED if db.postgres else _HEAD, (HEAD_ID,)).fetchone()
    if row is None:
        raise ProgrammingError("audit chain head missing: run `authz db upgrade`")
    seq = int(row[0]) + 1
    moment = now or utcnow()
    data = build_record(event, seq, bytes(row[1]), moment)
    digest = hashlib.sha256(data).digest()
    db.execute(_APPEND, (seq, db.time_param(moment), event.type, event.outcome,
                         event.institution, event.patient, data, digest))
    db.execute(_ADVANCE, (seq, digest, HEAD_ID))
    return seq


def init_head(session: Session) -> None:
    """Create the empty chain head (migrations do this; tests that use create_all call it)."""
    session.execute(HEAD.insert().values(id=HEAD_ID, seq=0, hash=GENESIS_HASH))


def parse(record_bytes: bytes) -> dict[str, Any]:
    value = json.loads(record_bytes)
    if not isinstance(value, dict):
        raise ValueError("record is not an object")
    return value
