"""Signed Merkle checkpoints over the audit log, and the proofs the API serves.

``seal()`` extends the tree from the last checkpoint to the current chain head: it hashes each
new record's stored canonical bytes into a leaf, stores the perfect subtree roots that complete
(``audit_nodes``; about two rows per event, each written once), signs ``(tree size, root, chain
head, time)`` with the service's active ES256 key under its own JWS ``typ``, and stores the
checkpoint. After the commit the checkpoint is appended to a file outside the database, so
whoever holds the database and the key cannot quietly rewrite what was already published.
Proofs read O(log n) nodes in one query; nothing here ever recomputes the whole tree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import tuple_
from sqlalchemy.orm import Session

from authz.audit import merkle
from authz.audit.events import timestamp
from authz.audit.models import GENESIS_HASH
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditCheckpoint
from authz.audit.models import AuditEvent
from authz.audit.models import AuditHead
from authz.audit.models import AuditNode
from authz.database import dialect_name
from authz.database import utcnow
from authz.database import write
from authz.errors import Conflict
from authz.errors import InvalidInput
from authz.errors import NotFound

log = logging.getLogger("authz.audit")
CHECKPOINT_TYP = "authz-audit-checkpoint+jwt"
NODES = cast(Table, AuditNode.__table__)
BATCH = 5000
# One seal covers at most this many new events, so a backlog (the first seal of a large log)
# never holds the write lock for long; the next run continues from there.
MAX_PER_SEAL = 200_000
# pg_advisory_xact_lock key: one sealer at a time (SQLite: BEGIN IMMEDIATE already serializes)
SEAL_LOCK = int.from_bytes(hashlib.sha256(b"authz.audit.seal").digest()[:8], "big", signed=True)


_INSERT_NODE_PG = "INSERT INTO audit_nodes (level, idx, hash) VALUES (%s, %s, %s)"
_INSERT_NODE_SQLITE = "INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)"


class LogCorrupted(Conflict):
    code = "audit_log_corrupted"
    description = "The audit log does not verify; it was not sealed."


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root_hash: bytes
    head_hash: bytes
    time: str
    kid: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex(),
                "head_hash": self.head_hash.hex(), "time": self.time, "kid": self.kid,
                "signature": self.signature}

    def claims(self) -> dict[str, Any]:
        """What the signature covers."""
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex(),
                "head_hash": self.head_hash.hex(), "time": self.time}

    @classmethod
    def from_row(cls, row: AuditCheckpoint) -> Checkpoint:
        return cls(int(row.tree_size), bytes(row.root_hash), bytes(row.head_hash),
                   timestamp(row.time), row.kid, row.signature)


def _fetch_nodes(session: Session, nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    wanted = sorted(set(nodes))
    found: dict[merkle.Node, bytes] = {}
    for first in range(0, len(wanted), 500):
        chunk = wanted[first:first + 500]
        rows = session.execute(
            select(NODES.c.level, NODES.c.idx, NODES.c.hash)
            .where(tuple_(NODES.c.level, NODES.c.idx).in_(chunk))).all()
        found.update({(int(r.level), int(r.idx)): bytes(r.hash) for r in rows})
    missing = set(wanted) - set(found)
    if missing:
        raise LogCorrupted(f"audit tree nodes missing: {sorted(missing)[:3]}")
    return found


def latest(session: Session) -> Checkpoint | None:
    row = session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc())
                          .limit(1)).scalar_one_or_none()
    return Checkpoint.from_row(row) if row else None


def get(session: Session, tree_size: int) -> Checkpoint:
    row = session.get(AuditCheckpoint, tree_size)
    if row is None:
        raise NotFound(f"no checkpoint of tree size {tree_size}")
    return Checkpoint.from_row(row)


def listing(session: Session, *, after: int = 0, limit: int = 100) -> list[Checkpoint]:
    rows = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.tree_size > after)
                           .order_by(AuditCheckpoint.tree_size).limit(limit)).scalars()
    return [Checkpoint.from_row(r) for r in rows]


def newest(session: Session, *, before: int | None = None, limit: int = 100) -> list[Checkpoint]:
    """Checkpoints newest first, those below tree size ``before`` when given."""
    statement = select(AuditCheckpoint)
    if before is not None:
        statement = statement.where(AuditCheckpoint.tree_size < before)
    rows = session.execute(statement.order_by(AuditCheckpoint.tree_size.desc())
                           .limit(limit)).scalars()
    return [Checkpoint.from_row(r) for r in rows]


def all_checkpoints(session: Session) -> list[Checkpoint]:
    rows = session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)).scalars()
    return [Checkpoint.from_row(r) for r in rows]


def seal(session: Session, kek: bytes, *, now: datetime | None = None,
         checkpoint_file: str | Path | None = None) -> Checkpoint | None:
    """Checkpoint every event appended since the last checkpoint; None if there are none."""
    from authz.audit.verify import record_links  # (verify imports this module)
    from authz.oauth import signing  # the service's key cache; no Flask behind it

    with write(session):
        if dialect_name(session) == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEAL_LOCK})
        previous = latest(session)
        start = previous.tree_size if previous else 0
        head = session.execute(select(AuditHead.seq, AuditHead.hash)
                               .where(AuditHead.id == HEAD_ID)).one()
        end = min(int(head.seq), start + MAX_PER_SEAL)
        if end <= start:
            return None
        frontier_nodes = merkle.Frontier.nodes(start)
        stored = _fetch_nodes(session, frontier_nodes)
        frontier = merkle.Frontier(start, [stored[n] for n in frontier_nodes])
        prev_hash = previous.head_hash if previous else GENESIS_HASH
        insert = _INSERT_NODE_PG if dialect_name(session) == "postgresql" else _INSERT_NODE_SQLITE
        dbapi = session.connection().connection.dbapi_connection
        assert dbapi is not None
        for rows in _records(session, start, end):
            made: list[tuple[int, int, bytes]] = []
            for seq, record, stored_hash in rows:
                digest = hashlib.sha256(record).digest()
                if digest != stored_hash or not record_links(record, seq, prev_hash):
                    raise LogCorrupted(f"entry {seq} does not verify; run `authz audit verify`")
                prev_hash = digest
                for (level, idx), value in frontier.append(merkle.leaf_hash(record)):
                    made.append((level, idx, value))
            # the driver directly: SQLAlchemy's per-row parameter handling costs more than
            # the hashing (same transaction, same connection)
            cursor = dbapi.cursor()
            try:
                cursor.executemany(insert, made)
            finally:
                cursor.close()
        if frontier.size != end or (end == int(head.seq) and prev_hash != bytes(head.hash)):
            raise LogCorrupted("the audit log does not end at its chain head")
        moment = now or utcnow()
        checkpoint = Checkpoint(end, frontier.root(), prev_hash, timestamp(moment), "", "")
        token = signing.sign(session, kek, checkpoint.claims(), CHECKPOINT_TYP)
        kid = json.loads(_b64decode(token.split(".", 1)[0]))["kid"]
        checkpoint = Checkpoint(end, checkpoint.root_hash, prev_hash, checkpoint.time, kid,
                                token)
        session.add(AuditCheckpoint(tree_size=end, root_hash=checkpoint.root_hash,
                                    head_hash=prev_hash, time=moment, kid=kid, signature=token))
        session.flush()
    if checkpoint_file is not None:
        append_to_file(checkpoint_file, [checkpoint])
    return checkpoint


def _records(session: Session, start: int, end: int) -> Iterable[list[tuple[int, bytes, bytes]]]:
    after = start
    while after < end:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.record, AuditEvent.hash)
            .where(AuditEvent.seq > after, AuditEvent.seq <= end)
            .order_by(AuditEvent.seq).limit(BATCH)).all()
        if not rows:
            raise LogCorrupted(f"entry {after + 1} is missing; run `authz audit verify`")
        batch = [(int(r.seq), bytes(r.record), bytes(r.hash)) for r in rows]
        if batch[0][0] != after + 1 or batch[-1][0] != after + len(batch):
            raise LogCorrupted(f"entries after {after} are missing or out of order")
        yield batch
        after = batch[-1][0]


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def append_to_file(path: str | Path, checkpoints: Iterable[Checkpoint]) -> None:
    """Append checkpoints as JSON lines, under an exclusive lock, synced to disk."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = "".join(json.dumps(c.to_dict(), sort_keys=True) + "\n" for c in checkpoints)
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        # The database copy is committed; `authz audit seal` re-syncs the file later.
        log.error("cannot append to checkpoint file", extra={"path": str(target),
                                                              "error": error.strerror})


def sync_file(session: Session, path: str | Path) -> int:
    """Append the checkpoints the file is missing (after a failed write); return how many."""
    have = 0
    target = Path(path)
    if target.exists():
        for checkpoint in read_file(target):
            have = max(have, checkpoint.tree_size)
    missing = [c for c in all_checkpoints(session) if c.tree_size > have]
    if missing:
        append_to_file(target, missing)
    return len(missing)


def read_file(path: str | Path) -> list[Checkpoint]:
    """Checkpoints from a checkpoint file or an auditor's copy (JSON lines)."""
    result = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read checkpoint file {path}: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result.append(parse_checkpoint(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            raise InvalidInput(f"{path}:{number}: not a checkpoint line") from None
    return result


def parse_checkpoint(value: dict[str, Any]) -> Checkpoint:
    size = value["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError("bad tree_size")
    root, head = bytes.fromhex(value["root_hash"]), bytes.fromhex(value["head_hash"])
    if len(root) != 32 or len(head) != 32:
        raise ValueError("bad hash")
    return Checkpoint(size, root, head, str(value["time"]), str(value["kid"]),
                      str(value["signature"]))


# -- proofs -----------------------------------------------------------------------------------

def _resolve(session: Session, tree_size: int | None) -> Checkpoint:
    if tree_size is None:
        checkpoint = latest(session)
        if checkpoint is None:
            raise NotFound("no checkpoint yet")
        return checkpoint
    return get(session, tree_size)


def inclusion(session: Session, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """An RFC 9162 inclusion proof of entry ``seq`` in a checkpointed tree."""
    checkpoint = _resolve(session, tree_size)
    if not 1 <= seq <= checkpoint.tree_size:
        raise NotFound(f"entry {seq} is not in the checkpoint of tree size"
                       f" {checkpoint.tree_size}")
    ranges = merkle.inclusion_ranges(seq - 1, checkpoint.tree_size)
    found = _fetch_nodes(session, merkle.nodes_for(ranges) | {(0, seq - 1)})
    proof = merkle.prove(lambda level, idx: found[(level, idx)], ranges)
    return {"seq": seq, "leaf_index": seq - 1, "tree_size": checkpoint.tree_size,
            "leaf_hash": found[(0, seq - 1)].hex(), "proof": [p.hex() for p in proof],
            "checkpoint": checkpoint.to_dict()}


def consistency(session: Session, first: int, second: int | None = None) -> dict[str, Any]:
    """An RFC 9162 consistency proof that checkpoint ``first`` is a prefix of ``second``."""
    later = _resolve(session, second)
    if not 1 <= first <= later.tree_size:
        raise InvalidInput(f"first must be between 1 and {later.tree_size}")
    earlier = get(session, first)
    ranges = merkle.consistency_ranges(first, later.tree_size)
    found = _fetch_nodes(session, merkle.nodes_for(ranges))
    proof = merkle.prove(lambda level, idx: found[(level, idx)], ranges)
    return {"first": first, "second": later.tree_size, "proof": [p.hex() for p in proof],
            "first_checkpoint": earlier.to_dict(), "second_checkpoint": later.to_dict()}


def stored_leaves(session: Session, start: int, end: int) -> dict[int, bytes]:
    """Sealed leaf hashes of leaves [start, end) (0-based), as far as they were sealed."""
    rows = session.execute(select(NODES.c.idx, NODES.c.hash).where(
        NODES.c.level == 0, NODES.c.idx >= start, NODES.c.idx < end)).all()
    return {int(r.idx): bytes(r.hash) for r in rows}


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one())
