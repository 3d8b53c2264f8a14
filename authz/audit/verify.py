"""Re-hash the chain and name the first entry that does not fit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.audit.events import parse
from authz.audit.events import timestamp
from authz.audit.models import GENESIS_HASH
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditEvent
from authz.audit.models import AuditHead

BATCH = 5000


class StoredRow(NamedTuple):
    seq: int
    record: bytes
    hash: bytes
    type: str
    outcome: str
    institution_id: str | None
    patient_id: str | None
    time: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    count: int
    bad_seq: int | None = None
    problem: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.count} entries"
        return f"audit chain broken at entry {self.bad_seq}: {self.problem}"


def stored_rows(session: Session, batch: int = BATCH) -> Iterator[StoredRow]:
    """Stream rows in sequence order, keyset-paginated so memory stays flat."""
    after = 0
    while True:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.record, AuditEvent.hash, AuditEvent.type,
                   AuditEvent.outcome, AuditEvent.institution_id, AuditEvent.patient_id,
                   AuditEvent.time)
            .where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        for r in rows:
            yield StoredRow(r.seq, bytes(r.record), bytes(r.hash), r.type, r.outcome,
                            r.institution_id, r.patient_id, timestamp(r.time))
        after = rows[-1].seq


def verify_rows(rows: Iterable[StoredRow], head: tuple[int, bytes] | None = None) -> Verdict:
    """Check hashes, links, sequence numbers and index columns; then the head, if given."""
    prev = GENESIS_HASH
    expected = 1
    for row in rows:
        if row.seq != expected:
            return Verdict(False, expected - 1, expected,
                           f"entry missing or out of order (found {row.seq} next)")
        if hashlib.sha256(row.record).digest() != row.hash:
            return Verdict(False, expected - 1, row.seq, "record does not match its hash")
        try:
            body = parse(row.record)
        except ValueError:
            return Verdict(False, expected - 1, row.seq, "record is not valid JSON")
        if body.get("seq") != row.seq or body.get("prev") != prev.hex():
            return Verdict(False, expected - 1, row.seq,
                           "record does not link to the previous entry (reordered or replaced)")
        columns = (row.type, row.outcome, row.institution_id, row.patient_id, row.time)
        named = (body.get("type"), body.get("outcome"), body.get("institution"),
                 body.get("patient"), body.get("time"))
        if columns != named:
            return Verdict(False, expected - 1, row.seq, "indexed columns differ from the record")
        prev = row.hash
        expected += 1
    count = expected - 1
    if head is not None and head != (count, prev):
        bad = min(head[0], count) + 1 if head[0] != count else count
        return Verdict(False, count, bad,
                       f"chain head says {head[0]} entries; the log ends at {count}"
                       if head[0] != count else "chain head hash differs from the last entry")
    return Verdict(True, count)


def verify_database(session: Session) -> Verdict:
    row = session.execute(
        select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)
    ).one_or_none()
    if row is None:
        return Verdict(False, 0, None, "chain head missing")
    return verify_rows(stored_rows(session), (row.seq, bytes(row.hash)))
