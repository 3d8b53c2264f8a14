"""The offline export (JSON Lines) and its verification.

Line kinds, in this order: one ``header`` (format, version, where the log starts after
retention), every ``key`` of the key history (public parts only), every ``checkpoint``, a
``consistency`` proof between each pair of consecutive checkpoints, then one ``event`` per
record. An event line is ``{"kind":"event","seq":N,"record":RECORD}`` with the stored canonical
bytes of the record embedded verbatim, so the verifier hashes exactly those bytes, slicing them
out of the line without parsing or re-serializing anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from typing import Any
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.audit import checkpoints as cps
from authz.audit import retention
from authz.audit.events import timestamp
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditHead
from authz.audit.verify import Base
from authz.audit.verify import Broken
from authz.audit.verify import Expectations
from authz.audit.verify import Progress
from authz.audit.verify import Verdict
from authz.audit.verify import stored_rows
from authz.audit.verify import verify_stream
from authz.database import utcnow
from authz.errors import InvalidInput

FORMAT = "authz-audit-export"
VERSION = 1
EVENT_PREFIX = b'{"kind":"event","seq":'
RECORD_KEY = b',"record":'


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def event_line(seq: int, record: bytes) -> bytes:
    return EVENT_PREFIX + str(seq).encode() + RECORD_KEY + record + b"}\n"


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def write_header(out: Sink, session: Session, base: Base, *, through: int,
                 kind: str = "export") -> list[cps.Checkpoint]:
    """Header, keys, checkpoints up to ``through`` and their consistency proofs."""
    from authz.keys import service as keys

    out.write(_line({"kind": "header", "format": FORMAT, "version": VERSION, "content": kind,
                     "exported_at": timestamp(utcnow()),
                     "base": {"size": base.size, "last_hash": base.last_hash.hex(),
                              "frontier": [h.hex() for h in base.frontier]}}))
    for key in keys.history(session):
        out.write(_line({"kind": "key", "kid": key.kid, "state": key.state,
                         "public_jwk": dict(key.public_jwk)}))
    sealed = [c for c in cps.all_checkpoints(session) if c.tree_size <= through]
    for checkpoint in sealed:
        out.write(_line({"kind": "checkpoint", **checkpoint.to_dict()}))
    for first, second in zip(sealed, sealed[1:], strict=False):
        proof = cps.consistency(session, first.tree_size, second.tree_size)["proof"]
        out.write(_line({"kind": "consistency", "first": first.tree_size,
                         "second": second.tree_size, "proof": proof}))
    return sealed


def export(session: Session, out_path: str | Path, progress: Progress | None = None
           ) -> dict[str, int]:
    """Write the whole stored log to ``out_path``; return what was written."""
    head = int(session.execute(select(AuditHead.seq).where(AuditHead.id == HEAD_ID))
               .scalar_one())
    base = retention.base(session)
    target = Path(out_path)
    tmp = target.with_name(f".{target.name}.partial")
    count = 0
    try:
        with tmp.open("wb") as out:
            sealed = write_header(out, session, base, through=head)
            for row in stored_rows(session, base.size):
                if row.seq > head:
                    break
                out.write(event_line(row.seq, bytes(row.record)))
                count += 1
                if progress is not None and count % 100_000 == 0:
                    progress(count)
        tmp.replace(target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {target}: {error.strerror}") from None
    finally:
        session.rollback()
    return {"events": count, "checkpoints": len(sealed), "first_seq": base.size + 1,
            "last_seq": base.size + count}


class ExportError(InvalidInput):
    code = "bad_export"


def _events(handle: IO[bytes], first: bytes | None, base: int) -> Iterator[tuple[int, bytes]]:
    line = first
    seq = base
    while line:
        at = line.find(RECORD_KEY, 22, 60) if line.startswith(EVENT_PREFIX) else -1
        end = -2 if line.endswith(b"}\n") else -1
        try:
            if at < 0 or not line.endswith(b"}", 0, len(line) + end + 1):
                raise ValueError("not an event line")
            seq = int(line[22:at])
        except ValueError:
            raise Broken(seq + 1, f"the line after entry {seq} is not an event line") from None
        yield seq, line[at + 10:end]
        line = handle.readline()


def read_header(handle: IO[bytes]) -> tuple[dict[str, Any], Expectations, bytes | None]:
    """Everything before the first event line; returns it and the first event line."""
    header: dict[str, Any] | None = None
    keys: dict[str, dict[str, Any]] = {}
    checkpoints: list[cps.Checkpoint] = []
    proofs: dict[tuple[int, int], list[bytes]] = {}
    line = handle.readline()
    number = 1
    while line and not line.startswith(EVENT_PREFIX):
        try:
            value = json.loads(line)
            kind = value["kind"]
            if kind == "header":
                header = value
            elif kind == "key":
                keys[str(value["kid"])] = dict(value["public_jwk"])
            elif kind == "checkpoint":
                checkpoints.append(cps.parse_checkpoint(value))
            elif kind == "consistency":
                proofs[(int(value["first"]), int(value["second"]))] = [
                    bytes.fromhex(p) for p in value["proof"]]
            else:
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError):
            raise ExportError(f"line {number} is not an export line") from None
        line = handle.readline()
        number += 1
    if header is None or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ExportError("not an authz audit export (no header line)")
    try:
        raw = header["base"]
        base = Base(int(raw["size"]), bytes.fromhex(raw["last_hash"]),
                    [bytes.fromhex(h) for h in raw["frontier"]])
        if len(base.frontier) != base.size.bit_count() or len(base.last_hash) != 32:
            raise ValueError("frontier")
    except (ValueError, KeyError, TypeError):
        raise ExportError("the header's base is malformed") from None

    def consistency(first: int, second: int) -> list[bytes]:
        return proofs.get((first, second), [])

    return header, Expectations(checkpoints, keys, base=base, consistency=consistency), line


def verify_export(path: str | Path, auditor: list[cps.Checkpoint] | None = None,
                  progress: Progress | None = None) -> Verdict:
    """Verify an export file offline: chain, signatures, roots, consistency, auditor's copy."""
    try:
        handle = Path(path).open("rb")
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}") from None
    with handle:
        _header, exp, first = read_header(handle)
        exp.auditor = list(auditor or [])
        return verify_stream(_events(handle, first, exp.base.size), exp, progress)
