"""Re-hash the chain, recompute the Merkle roots, check the signed checkpoints, and name the
first entry that does not fit: in the live database, in an export, and against an auditor's
earlier copy of the checkpoints.

Speed: each record's stored canonical bytes are hashed as they are; the few fields the chain
needs (``seq``, ``prev``) and the indexed columns are checked by locating them in those bytes
(:func:`record_links`, :func:`columns_match`), which is exact for records ``build_record`` wrote
and falls back to a JSON parse whenever the bytes look any different.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.audit import merkle
from authz.audit.checkpoints import CHECKPOINT_TYP
from authz.audit.checkpoints import Checkpoint
from authz.audit.events import parse
from authz.audit.models import GENESIS_HASH
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditHead
from authz.database import dialect_name
from authz.errors import AuthzError

BATCH = 5000
PROGRESS_EVERY = 100_000
Progress = Callable[[int], None]
_PREV = b',"prev":"'
_SEQ = b',"seq":'


# Raw driver queries (paramstyles differ): the time column formatted as records write it.
_ROWS_POSTGRESQL = (
    "SELECT seq, record, hash, type, outcome, institution_id, patient_id,"
    " to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    " FROM audit_events WHERE seq > %s ORDER BY seq LIMIT %s")
_ROWS_SQLITE = (
    "SELECT seq, record, hash, type, outcome, institution_id, patient_id,"
    " replace(time, ' ', 'T') || 'Z' FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")


class StoredRow(NamedTuple):
    seq: int
    record: bytes
    hash: bytes
    type: str
    outcome: str
    institution_id: str | None
    patient_id: str | None
    time: str  # RFC 3339 UTC with microseconds, as the record writes it


@dataclass(frozen=True)
class Verdict:
    ok: bool
    count: int
    bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0
    bad_checkpoint: int | None = None

    def describe(self) -> str:
        if self.ok:
            return (f"audit chain intact: {self.count} entries, {self.checkpoints} checkpoints"
                    " verified")
        if self.bad_seq is None and self.bad_checkpoint is not None:
            return f"audit checkpoint {self.bad_checkpoint} is bad: {self.problem}"
        return f"audit chain broken at entry {self.bad_seq}: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "bad_seq": self.bad_seq,
                "problem": self.problem, "checkpoints": self.checkpoints,
                "bad_checkpoint": self.bad_checkpoint}


class Broken(Exception):
    def __init__(self, seq: int | None, problem: str, checkpoint: int | None = None) -> None:
        super().__init__(problem)
        self.seq, self.problem, self.checkpoint = seq, problem, checkpoint


# -- reading fields out of canonical bytes -----------------------------------------------------

def record_links(record: bytes, seq: int, prev: bytes) -> bool:
    """True when the record names ``seq`` and links to ``prev``.

    Top-level keys are sorted and only ``detail`` can nest, and it sorts before ``prev``; so the
    last ``,"prev":"`` and the last ``,"seq":`` in the bytes are the top-level members.
    """
    at = record.rfind(_PREV)
    if at > 0 and record[at + 9:at + 73] == prev.hex().encode() and record[at + 73:at + 74] \
            == b'"':
        tail = record.rfind(_SEQ)
        if tail > at and record.startswith(b"%d," % seq, tail + 7):
            return True
    try:
        body = parse(record)
    except ValueError:
        return False
    return body.get("seq") == seq and body.get("prev") == prev.hex()


@functools.lru_cache(maxsize=8192)  # identifiers repeat: types, outcomes, institutions
def _json(value: str) -> bytes:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode() + b'"'
    return json.dumps(value, ensure_ascii=False).encode()


@functools.lru_cache(maxsize=65536)
def _segment(institution: str | None, outcome: str, patient: str | None) -> bytes:
    """The bytes the indexed columns take in a record: ``"institution":..,"outcome":..[..]``."""
    segment = b'"outcome":' + _json(outcome)
    if institution is not None:
        segment = b'"institution":' + _json(institution) + b"," + segment
    if patient is not None:
        segment += b',"patient":' + _json(patient)
    return segment


def _member_before(record: bytes, key: bytes, end: int) -> int:
    """Where a string member ``key`` ends right at ``end`` (its value free of quotes), or -1."""
    at = record.rfind(key, 0, end)
    if at < 0 or record[end - 1] != 34 or record.find(b'"', at + len(key), end - 1) >= 0:
        return -1
    return at


def columns_match(row: StoredRow) -> bool:
    """The indexed columns say what the record says (an edited column hides an event)."""
    record = row.record
    at = record.rfind(_PREV)
    if at > 0 and record.find(b',"time":"' + row.time.encode() + b'","type":' + _json(row.type)
                              + b',"v":', at) > 0:
        pv = _member_before(record, b',"policy_version":"', at)
        end = pv if pv > 0 else at
        segment = _segment(row.institution_id, row.outcome, row.patient_id)
        start = end - len(segment)
        # without an institution column, only a record with no "institution" key anywhere
        # is decided here (one nested in detail, or escaped oddly, goes to the parser)
        if record[start:end] == segment and record[start - 1] == 44 and (
                row.institution_id is not None or b'"institution":' not in record):
            return True
    return _parsed_columns_match(row)


def _parsed_columns_match(row: StoredRow) -> bool:
    try:
        body = parse(row.record)
    except ValueError:
        return False
    return (row.type, row.outcome, row.institution_id, row.patient_id, row.time) == (
        body.get("type"), body.get("outcome"), body.get("institution"), body.get("patient"),
        body.get("time"))


# -- keys and signatures -------------------------------------------------------------------------

def check_signature(checkpoint: Checkpoint, keys: Mapping[str, Mapping[str, Any]]) -> str | None:
    """None when the checkpoint's JWS verifies under its key and covers its fields."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey

    jwk = keys.get(checkpoint.kid)
    if jwk is None:
        return f"signed by unknown key {checkpoint.kid}"
    try:
        key = ECKey.import_key(dict(jwk))
        token = jwt.decode(checkpoint.signature, key, algorithms=["ES256"])
    except (JoseError, ValueError, TypeError):
        return "signature does not verify"
    if token.header.get("typ") != CHECKPOINT_TYP or token.header.get("kid") != checkpoint.kid:
        return "signature header is not a checkpoint's"
    if dict(token.claims) != checkpoint.claims():
        return "signature covers other values"
    return None


# -- the streaming core --------------------------------------------------------------------------

@dataclass
class Base:
    """Where the remaining log starts after retention: entry ``size`` and the tree over 1..size."""

    size: int = 0
    last_hash: bytes = GENESIS_HASH
    frontier: list[bytes] = field(default_factory=list)


@dataclass
class Expectations:
    checkpoints: list[Checkpoint]
    keys: Mapping[str, Mapping[str, Any]]
    auditor: list[Checkpoint] = field(default_factory=list)
    base: Base = field(default_factory=Base)
    head: tuple[int, bytes] | None = None
    # stored leaf hashes (0-based index -> hash) to pinpoint an entry inside a checkpoint range
    leaves: Callable[[int, int], dict[int, bytes]] | None = None
    consistency: Callable[[int, int], list[bytes]] | None = None


def _check_checkpoints(exp: Expectations) -> None:
    sizes = [c.tree_size for c in exp.checkpoints]
    for previous, size in zip(sizes, sizes[1:], strict=False):
        if size <= previous:
            raise Broken(None, "checkpoints are not in increasing order", size)
    for checkpoint in exp.checkpoints:
        problem = check_signature(checkpoint, exp.keys)
        if problem:
            raise Broken(None, problem, checkpoint.tree_size)
    if exp.consistency is not None:
        for a, b in zip(exp.checkpoints, exp.checkpoints[1:], strict=False):
            try:
                merkle.verify_consistency(a.tree_size, b.tree_size, a.root_hash, b.root_hash,
                                          exp.consistency(a.tree_size, b.tree_size))
            except merkle.ProofError as error:
                raise Broken(None, f"not consistent with checkpoint {a.tree_size}: {error}",
                             b.tree_size) from None
            except AuthzError as error:  # e.g. stored tree nodes missing
                raise Broken(None, error.description, b.tree_size) from None


def verify_stream(rows: Iterable[Any], exp: Expectations, progress: Progress | None = None,
                  check_row: Callable[[Any, bytes], bool] | None = None) -> Verdict:
    """Verify rows in order against the expectations: ``row[0]`` is the sequence number,
    ``row[1]`` the record bytes; ``check_row(row, sha256(record))`` checks anything else a row
    carries."""
    try:
        _check_checkpoints(exp)
        count = _stream(rows, exp, progress, check_row)
    except Broken as broken:
        done = (broken.seq - 1) if broken.seq else 0
        return Verdict(False, max(done, 0), broken.seq, broken.problem,
                       bad_checkpoint=broken.checkpoint)
    return Verdict(True, count, checkpoints=len(exp.checkpoints))


def _targets(exp: Expectations) -> list[tuple[int, Checkpoint | None, Checkpoint | None]]:
    """Tree sizes to check during the stream: (size, our checkpoint, the auditor's)."""
    ours = {c.tree_size: c for c in exp.checkpoints}
    theirs = {c.tree_size: c for c in exp.auditor}
    sizes = sorted(s for s in set(ours) | set(theirs) if s > exp.base.size)
    return [(s, ours.get(s), theirs.get(s)) for s in sizes]


def _stream(rows: Iterable[Any], exp: Expectations, progress: Progress | None,
            check_row: Callable[[Any, bytes], bool] | None) -> int:
    base = exp.base
    frontier = merkle.Frontier(base.size, base.frontier)
    targets = _targets(exp)
    target_at = 0
    next_size = targets[0][0] if targets else -1
    last_good = base.size  # the last size whose roots agreed
    prev = base.last_hash
    expected = base.size + 1
    sha256 = hashlib.sha256
    leaf_prefix = merkle.LEAF_PREFIX
    add = frontier.add
    window: list[bytes] = []  # leaf hashes since the last agreeing checkpoint
    last_leaf: bytes | None = None
    rows = iter(rows)
    for row in rows:
        seq, record = row[0], row[1]
        if seq != expected:
            if seq < expected:
                raise Broken(seq, f"entry {seq} appears again after {expected - 1} (inserted or"
                             " reordered)")
            raise Broken(expected, f"entry missing or out of order (found {seq} next)")
        digest = sha256(record).digest()
        leaf = sha256(leaf_prefix + record).digest()
        if not record_links(record, seq, prev):
            raise _link_broken(exp, seq, record, last_leaf, rows)
        if check_row is not None and not check_row(row, digest):
            raise Broken(seq, "stored hash or indexed columns differ from the record")
        prev, last_leaf = digest, leaf
        add(leaf)
        window.append(leaf)
        if seq == next_size:
            ours, theirs = targets[target_at][1], targets[target_at][2]
            root = frontier.root()
            for label, checkpoint in (("the auditor's copy of checkpoint", theirs),
                                      ("checkpoint", ours)):
                if checkpoint is None:
                    continue
                if checkpoint.root_hash != root or checkpoint.head_hash != prev:
                    raise _mismatch(exp, last_good, seq, window, f"{label} {seq}")
            last_good = seq
            window = []
            target_at += 1
            next_size = targets[target_at][0] if target_at < len(targets) else -1
        if progress is not None and seq % PROGRESS_EVERY == 0:
            progress(seq)
        expected += 1
    count = expected - 1
    if targets and target_at < len(targets):
        size, ours, theirs = targets[target_at]
        which = "the auditor's copy of checkpoint" if theirs is not None else "checkpoint"
        raise Broken(count + 1, f"{which} {size} covers {size} entries; the log ends at {count}"
                     " (entries deleted)")
    if exp.head is not None and exp.head != (count, prev):
        if exp.head[0] != count:
            raise Broken(min(exp.head[0], count) + 1,
                         f"chain head says {exp.head[0]} entries; the log ends at {count}")
        raise Broken(count, "chain head hash differs from the last entry")
    return count


def _link_broken(exp: Expectations, seq: int, record: bytes, last_leaf: bytes | None,
                 rows: Iterator[Any]) -> Broken:
    """Entry ``seq`` does not link to entry ``seq - 1``: say which of the two changed.

    A record edited with its own hash recomputed breaks the *next* link. Its sealed leaf, if
    any, shows it; otherwise, if the entry after ``seq`` still links to ``seq``, then ``seq`` is
    genuine and ``seq - 1`` is the one that changed.
    """
    edited = Broken(seq - 1, "record was edited and its hash recomputed (the next entry links"
                    " to another record)")
    if exp.leaves is not None and seq > 1 and last_leaf is not None:
        sealed = exp.leaves(seq - 2, seq - 1).get(seq - 2)
        if sealed is not None:
            return edited if sealed != last_leaf else Broken(
                seq, "record does not link to the previous entry (replaced or inserted)")
    following = next(rows, None)
    if seq > 1 and following is not None and following[0] == seq + 1 and record_links(
            following[1], seq + 1, hashlib.sha256(record).digest()):
        return edited
    return Broken(seq, "record does not link to the previous entry (reordered, replaced or"
                  " inserted)")


def _mismatch(exp: Expectations, last_good: int, seq: int, window: list[bytes],
              what: str) -> Broken:
    first = last_good + 1
    if exp.leaves is not None:
        stored = exp.leaves(first - 1, seq)
        for offset, leaf in enumerate(window):
            index = first - 1 + offset
            if index in stored and stored[index] != leaf:
                return Broken(index + 1, f"record differs from what {what} sealed (edited, with"
                              " the chain rehashed)")
    if first == seq:
        return Broken(seq, f"record differs from what {what} sealed (the log was rewritten)")
    return Broken(first, f"entries {first}..{seq} differ from what {what} sealed; the first"
                  f" change is at or after entry {first} (the log was rewritten)")


# -- the live database ---------------------------------------------------------------------------

def stored_rows(session: Session, after: int = 0, batch: int = BATCH) -> Iterator[StoredRow]:
    """Stream rows in sequence order, keyset-paginated so memory stays flat.

    Straight from the driver: the time column comes back already formatted the way records
    write it, and nothing is converted per row in Python.
    """
    postgres = dialect_name(session) == "postgresql"
    sql = _ROWS_POSTGRESQL if postgres else _ROWS_SQLITE
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    while True:
        rows = _fetch(dbapi, sql, after, batch)
        if not rows:
            return
        yield from map(StoredRow._make, rows)
        after = rows[-1][0]


def _fetch(dbapi: Any, sql: str, after: int, batch: int) -> list[Any]:
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql, (after, batch))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def prefetched_rows(session: Session, after: int = 0, batch: int = BATCH
                    ) -> Iterator[StoredRow]:
    """:func:`stored_rows` on a connection of its own, one batch ahead in a helper thread, so
    the database works on the next batch while this one is verified. The session's own
    connection stays free for the lookups verification makes on the way."""
    postgres = dialect_name(session) == "postgresql"
    sql = _ROWS_POSTGRESQL if postgres else _ROWS_SQLITE
    engine = session.get_bind()
    with engine.connect() as connection:  # type: ignore[union-attr]
        dbapi = connection.connection.dbapi_connection
        with ThreadPoolExecutor(1, thread_name_prefix="audit-verify") as pool:
            pending = pool.submit(_fetch, dbapi, sql, after, batch)
            while True:
                rows = pending.result()
                if not rows:
                    return
                pending = pool.submit(_fetch, dbapi, sql, rows[-1][0], batch)
                yield from map(StoredRow._make, rows)


def verify_rows(rows: Iterable[StoredRow], head: tuple[int, bytes] | None = None) -> Verdict:
    """Chain, hashes and index columns of ``rows`` (no checkpoints); then the head, if given."""
    return _verify_rows(rows, Expectations([], {}, head=head))


def _check_row(row: StoredRow, digest: bytes) -> bool:
    return digest == row.hash and columns_match(row)


def _verify_rows(rows: Iterable[StoredRow], exp: Expectations,
                 progress: Progress | None = None) -> Verdict:
    return verify_stream(rows, exp, progress, _check_row)


def database_expectations(session: Session, auditor: list[Checkpoint] | None = None
                          ) -> Expectations:
    from authz.audit import checkpoints as cps
    from authz.audit import retention
    from authz.keys import service as keys

    head = session.execute(select(AuditHead.seq, AuditHead.hash)
                           .where(AuditHead.id == HEAD_ID)).one_or_none()
    key_map = {k.kid: dict(k.public_jwk) for k in keys.history(session)}

    def leaves(start: int, end: int) -> dict[int, bytes]:
        return cps.stored_leaves(session, start, end)

    def consistency(first: int, second: int) -> list[bytes]:
        return [bytes.fromhex(p) for p in cps.consistency(session, first, second)["proof"]]

    return Expectations(cps.all_checkpoints(session), key_map, auditor or [],
                        retention.base(session),
                        None if head is None else (int(head.seq), bytes(head.hash)),
                        leaves, consistency)


def verify_database(session: Session, auditor: list[Checkpoint] | None = None,
                    progress: Progress | None = None) -> Verdict:
    """Verify the live log: chain, columns, checkpoint signatures, roots, consistency."""
    try:
        exp = database_expectations(session, auditor)
    except AuthzError as error:
        return Verdict(False, 0, None, error.description)
    if exp.head is None:
        return Verdict(False, 0, None, "chain head missing")
    try:
        return _verify_rows(prefetched_rows(session, exp.base.size), exp, progress)
    finally:
        session.rollback()
