"""Simulator state on disk: the SQLite store, cross-process file locks and atomic writes."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS persons (
    id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cards (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons (id),
    token TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS certs (
    ca TEXT NOT NULL CHECK (ca IN ('sign', 'auth')),
    serial INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    person_id TEXT NOT NULL REFERENCES persons (id),
    card_id TEXT NOT NULL REFERENCES cards (id),
    variant TEXT NOT NULL CHECK (variant IN ('card', 'phone')),
    prefecture TEXT NOT NULL,
    city TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    PRIMARY KEY (ca, serial)
);
CREATE INDEX IF NOT EXISTS certs_person ON certs (person_id);
CREATE INDEX IF NOT EXISTS certs_dp ON certs (ca, generation, prefecture, city);
CREATE TABLE IF NOT EXISTS revocations (
    ca TEXT NOT NULL,
    serial INTEGER NOT NULL,
    reason TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY (ca, serial),
    FOREIGN KEY (ca, serial) REFERENCES certs (ca, serial)
);
CREATE TABLE IF NOT EXISTS links (
    ca TEXT NOT NULL,
    old_serial INTEGER NOT NULL,
    new_serial INTEGER NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (ca, old_serial)
);
CREATE TABLE IF NOT EXISTS faults (name TEXT PRIMARY KEY, set_at INTEGER NOT NULL);
"""


class Store:
    """The simulator's SQLite file; one short-lived connection per operation (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves (see ``write``).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def create_schema(self) -> None:
        """Create the tables if missing and switch the file to WAL (persistent)."""
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        finally:
            conn.close()
        os.chmod(self.path, 0o600)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction (a consistent snapshot in WAL mode)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.rollback()
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taking the write lock up front, so it never fails mid-way."""
        conn = self._connect()
        try:
            # A deferred transaction that read first would get SQLITE_BUSY_SNAPSHOT on upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            conn.close()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), across processes."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
