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
import json
import os
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
        # Straight to the driver: exec_driver_sql's bookkeeping cost more than the BEGIN.
        raw: Any = conn.connection.driver_connection
        raw.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


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


# -- statements straight to the driver ----------------------------------------------------------
# On the hot paths (token endpoint, introspection, the audit append) SQLAlchemy's bookkeeping
# per execution costs several times a primary-key statement on SQLite. Measured in-process, the
# reads and the write transaction of a client-credentials request: 820 us through the session
# and Core, 290 us this way (docs/decisions.md, "Token endpoint and introspection").


class SQL:
    """One statement written with ``?`` placeholders, in the paramstyle of each driver."""

    def __init__(self, text: str) -> None:
        self.sqlite = text
        self.postgresql = text.replace("?", "%s")


@dataclass(frozen=True)
class Driver:
    """The DBAPI connection (sqlite3 or psycopg) under a session, with the conversions that
    SQLAlchemy's column types would make (UTC times, JSON)."""

    postgres: bool
    connection: Any

    def execute(self, statement: SQL, params: Sequence[Any] = ()) -> Any:
        """Run ``statement``; returns the driver's cursor."""
        if self.postgres:
            return self.connection.execute(statement.postgresql, params)
        return self.connection.execute(statement.sqlite, params)

    def time_param(self, moment: datetime) -> Any:
        """A parameter for a :class:`UTCDateTime` column."""
        if moment.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        utc = moment.astimezone(UTC)
        if self.postgres:
            return utc
        # The text SQLAlchemy stores for SQLite: rows of both compare in time order.
        return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {utc.hour:02d}:{utc.minute:02d}"
                f":{utc.second:02d}.{utc.microsecond:06d}")

    def time_value(self, value: Any) -> datetime | None:
        """A :class:`UTCDateTime` column's value as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def json_param(self, value: Any) -> str:
        """A parameter for a JSON column."""
        return json.dumps(value)

    def json_value(self, value: Any) -> Any:
        """A JSON column's value (psycopg decodes JSON itself, sqlite3 returns the text)."""
        return value if self.postgres or value is None else json.loads(value)


def driver(session: Session | scoped_session[Session]) -> Driver:
    """The driver connection of the session's transaction (begun if none is open)."""
    connection = real(session).connection()
    return Driver(connection.dialect.name == "postgresql", connection.connection.driver_connection)


@contextmanager
def reader(session: Session | scoped_session[Session]) -> Iterator[Driver]:
    """A driver connection for reads of committed state (no cache: read when asked).

    SQLite: a connection borrowed from the engine's pool for the duration (5 us), unless the
    session has a transaction open, whose writes the read must see. The session then opens no
    read transaction that :func:`write` would roll back before it can begin: that pair cost
    about 80 us of SQLAlchemy bookkeeping per request. PostgreSQL: the session's connection,
    since every borrowed one would add round trips (ping, rollback) to the server.
    """
    session = real(session)
    bind = session.get_bind()
    if (session.in_transaction() or not isinstance(bind, Engine)
            or bind.dialect.name != "sqlite"):
        yield driver(session)
        return
    borrowed = bind.raw_connection()
    try:
        yield Driver(False, borrowed.driver_connection)
    finally:
        borrowed.close()  # back to the pool


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
