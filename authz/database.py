"""Database plumbing without Flask: the declarative base, engine set-up and write transactions.

Writers must hold the database's write lock from their first statement, so that the audit
sequencer (``authz.audit``) sees a stable chain head:

- PostgreSQL: the audit append locks the chain-head row (``SELECT ... FOR UPDATE``).
- SQLite: the transaction starts with ``BEGIN IMMEDIATE`` (WAL mode, busy timeout). A deferred
  transaction that read first would fail with ``SQLITE_BUSY_SNAPSHOT`` when it tries to write.

Use :func:`write` for every unit of work that changes state.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import DateTime
from sqlalchemy import Engine
from sqlalchemy import MetaData
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session
from sqlalchemy.types import TypeDecorator

from authz.errors import AuthzError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
WRITE_OPTION = "authz_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which keeps naive text) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ProgrammingError(AuthzError):
    """A write was attempted outside :func:`write`; a bug, never user input."""


def configure_engine(engine: Engine) -> None:
    """Attach SQLite pragmas and explicit transaction control; no-op on PostgreSQL."""
    if engine.dialect.name != "sqlite" or getattr(engine, "_authz_configured", False):
        return
    engine._authz_configured = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable in WAL mode at commit boundaries
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write(session: Session | scoped_session[Session]) -> Iterator[Session]:
    """One unit of work that holds the write lock from its first statement, then commits.

    A read-only transaction already open on the session is ended first; pending unflushed
    changes there would be a bug, so they raise instead of being committed silently.
    """
    session = real(session)
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise ProgrammingError("write() called with unflushed changes pending")
        if is_write_transaction(session):
            yield session  # nested unit of work joins the outer one
            return
        session.rollback()
    session.connection(execution_options={WRITE_OPTION: True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def real(session: Session | scoped_session[Session]) -> Session:
    """The session behind Flask-SQLAlchemy's scoped proxy (or the session itself)."""
    return session() if isinstance(session, scoped_session) else session


def is_write_transaction(session: Session | scoped_session[Session]) -> bool:
    session = real(session)
    if not session.in_transaction():
        return False
    return bool(session.connection().get_execution_options().get(WRITE_OPTION))


def dialect_name(session: Session) -> str:
    bind = session.get_bind()
    return bind.dialect.name


@contextmanager
def startup_lock(engine: Engine, name: str, lock_dir: Path | None = None) -> Iterator[None]:
    """A lock across processes (and, on PostgreSQL, machines) for migrations and first start.

    PostgreSQL: a session advisory lock on its own connection. SQLite: ``flock`` on a file
    beside the database (all instances of a SQLite deployment share one machine).
    """
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    import fcntl

    database = engine.url.database
    folder = lock_dir or (Path(database).parent if database and database != ":memory:" else None)
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".{name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
