"""Retention: move a whole sealed prefix of the log, older than the retention period, to an
export file, keeping every checkpoint and tree node so what stays still verifies."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import IO
from typing import Any

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.audit import merkle
from authz.audit.checkpoints import LogCorrupted
from authz.audit.models import AuditRetention
from authz.audit.verify import Base
from authz.audit.verify import stored_rows
from authz.database import utcnow
from authz.database import write
from authz.errors import InvalidInput


def base(session: Session) -> Base:
    """Where the stored log starts: after the last retained prefix, or at the beginning."""
    from authz.audit.checkpoints import _fetch_nodes

    row = session.execute(select(AuditRetention).order_by(AuditRetention.through_seq.desc())
                          .limit(1)).scalar_one_or_none()
    if row is None:
        return Base()
    size = int(row.through_seq)
    nodes = merkle.Frontier.nodes(size)
    found = _fetch_nodes(session, nodes)
    return Base(size, bytes(row.last_hash), [found[n] for n in nodes])


def cutoff_size(session: Session, before: datetime) -> int:
    """The largest checkpointed tree size whose events are all older than ``before``."""
    from authz.audit.models import AuditCheckpoint
    from authz.audit.models import AuditEvent

    first_young = session.execute(select(func.min(AuditEvent.seq))
                                  .where(AuditEvent.time >= before)).scalar_one_or_none()
    limit = select(func.max(AuditCheckpoint.tree_size))
    if first_young is not None:
        limit = limit.where(AuditCheckpoint.tree_size < first_young)
    return int(session.execute(limit).scalar_one_or_none() or 0)


def retain(session: Session, before: datetime, out_path: str | Path, *, actor: str,
           retention_days: int, now: datetime | None = None) -> dict[str, Any]:
    """Move the sealed events older than ``before`` (and than the retention period) to
    ``out_path``, verify that file, then delete them; checkpoints and tree nodes stay."""
    from authz import audit
    from authz.audit import export
    from authz.audit.models import AuditEvent

    moment = now or utcnow()
    limit = min(before, moment - timedelta(days=retention_days))
    start = base(session)
    through = cutoff_size(session, limit)
    session.rollback()
    if through <= start.size:
        return {"retained": 0, "through_seq": start.size, "file": None}
    target = Path(out_path)
    if target.exists():
        raise InvalidInput(f"{target} exists; retention never overwrites a file")
    digest = hashlib.sha256()
    last_hash = start.last_hash
    try:
        with target.open("xb") as out:
            buffer = _Hashing(out, digest)
            export.write_header(buffer, session, start, through=through, kind="retained")
            for row in stored_rows(session, start.size):
                if row.seq > through:
                    break
                buffer.write(export.event_line(row.seq, bytes(row.record)))
                last_hash = bytes(row.hash)
            out.flush()
            os.fsync(out.fileno())
    except OSError as error:
        raise InvalidInput(f"cannot write {target}: {error.strerror}") from None
    finally:
        session.rollback()
    verdict = export.verify_export(target)
    if not verdict.ok or verdict.count != through:
        raise LogCorrupted(f"the retention file does not verify ({verdict.describe()});"
                           " nothing was deleted")
    with write(session):
        session.add(AuditRetention(through_seq=through, last_hash=last_hash,
                                   export_sha256=digest.hexdigest(), retained_at=moment))
        session.flush()
        session.execute(delete(AuditEvent).where(AuditEvent.seq <= through))
        audit.record(session, audit.Event(
            type="audit.retained", actor=actor,
            detail={"first_seq": start.size + 1, "through_seq": through,
                    "export_sha256": digest.hexdigest()}))
    return {"retained": through - start.size, "first_seq": start.size + 1,
            "through_seq": through, "file": str(target), "sha256": digest.hexdigest()}


class _Hashing:
    """A binary file wrapper that hashes what it writes."""

    def __init__(self, out: IO[bytes], digest: Any) -> None:
        self.out, self.digest = out, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.out.write(data)
