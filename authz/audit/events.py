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
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from authz.audit import canonical
from authz.audit.models import GENESIS_HASH
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditEvent
from authz.audit.models import AuditHead
from authz.database import ProgrammingError
from authz.database import dialect_name
from authz.database import is_write_transaction
from authz.database import utcnow

EVENTS = cast(Table, AuditEvent.__table__)
HEAD = cast(Table, AuditHead.__table__)
ADVANCE = update(HEAD).where(HEAD.c.id == HEAD_ID).values(
    seq=bindparam("seq"), hash=bindparam("hash"))
HEAD_ROW = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID)
HEAD_ROW_LOCKED = HEAD_ROW.with_for_update()
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
    # Statements built once and run on the connection: the session's execute path and a
    # statement built per call cost more than the SQL itself (hot path of every endpoint).
    connection = session.connection()
    head = HEAD_ROW_LOCKED if dialect_name(session) == "postgresql" else HEAD_ROW
    row = connection.execute(head).one_or_none()
    if row is None:
        raise ProgrammingError("audit chain head missing: run `authz db upgrade`")
    seq = int(row.seq) + 1
    moment = now or utcnow()
    data = build_record(event, seq, bytes(row.hash), moment)
    digest = hashlib.sha256(data).digest()
    # Table-level statements: the ORM-enabled forms cost several times more per event.
    connection.execute(EVENTS.insert(), {
        "seq": seq, "time": moment, "type": event.type, "outcome": event.outcome,
        "institution_id": event.institution, "patient_id": event.patient,
        "record": data, "hash": digest})
    connection.execute(ADVANCE, {"seq": seq, "hash": digest})
    return seq


def init_head(session: Session) -> None:
    """Create the empty chain head (migrations do this; tests that use create_all call it)."""
    session.execute(HEAD.insert().values(id=HEAD_ID, seq=0, hash=GENESIS_HASH))


def parse(record_bytes: bytes) -> dict[str, Any]:
    value = json.loads(record_bytes)
    if not isinstance(value, dict):
        raise ValueError("record is not an object")
    return value
