"""``audit``: how fast the hash-chained audit log appends and verifies.

Each repeat starts from a fresh database with the real migrations applied, then measures, in
this order on the same database:

- ``append_batched``: ``events`` appends through ``authz.audit.record``, ``batch_size`` per
  ``authz.database.write`` transaction (bulk work such as an import).
- ``seal``: one signed Merkle checkpoint over those rows (``authz.audit.checkpoints.seal``:
  leaf hashes of the stored bytes, about two tree nodes stored per event).
- ``verify``: ``authz.audit.verify.verify_database`` over those rows: chain, indexed columns,
  checkpoint signature, Merkle root, consistency.
- ``verify_export``: ``authz audit export`` of the same log, then the offline verification of
  that file (``authz audit verify --export``); the export time is not counted.
- ``append_single``: ``single_events`` appends, one per transaction, the way a request records
  one decision (each pays a commit and, on SQLite, ``BEGIN IMMEDIATE``).

SQLite always runs; PostgreSQL too when ``--database-url`` or ``AUTHZ_TEST_DATABASE_URL`` names
one. There each repeat gets a temporary database (``CREATE DATABASE ... TEMPLATE`` of a migrated
one), dropped at the end; the given database itself is not touched, unless the role may not
create databases and the URL is the test suite's own disposable ``AUTHZ_TEST_DATABASE_URL``, whose
schema is then reset just as the suite resets it. Figures are medians over the repeats.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy.pool import NullPool

from authz import create_app
from authz.audit import Event
from authz.audit import checkpoints
from authz.audit import record
from authz.audit.export import export
from authz.audit.export import verify_export
from authz.audit.verify import verify_database
from authz.database import write
from authz.extensions import db
from authz.keys import service as keys
from benchmarks.common import BenchmarkError
from benchmarks.common import figure
from benchmarks.common import log
from benchmarks.common import median

FULL = {"events": 100_000, "single_events": 2_000}
QUICK = {"events": 5_000, "single_events": 200}
SECRET = "benchmark-secret-key-0123456789abcdef-0123456789"
KEK = base64.urlsafe_b64encode(bytes(range(32))).decode()

Fresh = Callable[[], str]  # returns the URL of a new, migrated, empty database


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL",
                        help="also measure this PostgreSQL server (default: env"
                        " AUTHZ_TEST_DATABASE_URL); its database is left untouched")
    parser.add_argument("--events", type=int, metavar="N",
                        help=f"rows appended in batches, then verified (default:"
                        f" {FULL['events']}; --quick: {QUICK['events']})")
    parser.add_argument("--batch-size", type=int, default=1000, metavar="N",
                        help="events per transaction in the batched append (default: 1000)")
    parser.add_argument("--single-events", type=int, metavar="N",
                        help=f"events appended one per transaction (default:"
                        f" {FULL['single_events']}; --quick: {QUICK['single_events']})")
    parser.add_argument("--repeats", type=int, default=3, metavar="N",
                        help="fresh-database repeats; medians are reported (default: 3)")


# -- databases ---------------------------------------------------------------------------------

def build_app(database_url: str, instance: Path) -> Flask:
    """An authz app on ``database_url`` (as tests/conftest.py builds one)."""
    previous = os.environ.get("AUTHZ_INSTANCE_PATH")
    os.environ["AUTHZ_INSTANCE_PATH"] = str(instance)
    try:
        return create_app({"AUTHZ_DATABASE_URL": database_url, "AUTHZ_SECRET_KEY": SECRET,
                           "AUTHZ_KEY_ENCRYPTION_KEY": KEK, "AUTHZ_LOG_LEVEL": "WARNING",
                           "AUTHZ_ISSUER": "http://127.0.0.1:8000", "AUTHZ_REDIS_URL": None,
                           "TESTING": True})
    finally:
        if previous is None:
            os.environ.pop("AUTHZ_INSTANCE_PATH", None)
        else:
            os.environ["AUTHZ_INSTANCE_PATH"] = previous


def migrate(database_url: str, instance: Path) -> None:
    app = build_app(database_url, instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()


@contextlib.contextmanager
def sqlite_databases(workdir: Path) -> Iterator[Fresh]:
    """Migrate once into a template file; each fresh database is a copy of it."""
    template = workdir / "template" / "authz.db"
    template.parent.mkdir(parents=True)
    migrate(f"sqlite:///{template}", workdir / "instance")
    counter = itertools.count(1)

    def fresh() -> str:
        target = workdir / f"run-{next(counter)}" / "authz.db"
        target.parent.mkdir(parents=True)
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"

    yield fresh


def with_database(url: str, name: str) -> str:
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def redact(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def postgres_databases(url: str, workdir: Path) -> Iterator[Fresh]:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    prefix = f"authz_bench_{os.getpid()}_{secrets.token_hex(3)}"
    created: list[str] = []
    counter = itertools.count(1)

    def create(name: str, template: str | None = None) -> None:
        clause = f' TEMPLATE "{template}"' if template else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{clause}'))
        created.append(name)

    try:
        try:
            create(f"{prefix}_template")
        except sa.exc.DBAPIError as error:
            if url != os.environ.get("AUTHZ_TEST_DATABASE_URL"):
                reason = str(error.orig).strip().splitlines()[0]
                raise BenchmarkError(f"cannot create a scratch database on {redact(url)}:"
                                     f" {reason}") from None
            log("no CREATEDB privilege: resetting the test suite's disposable database")

            def fresh() -> str:
                _reset_schema(admin)
                migrate(url, workdir / "instance")
                return url
        else:
            migrate(with_database(url, f"{prefix}_template"), workdir / "instance")

            def fresh() -> str:
                name = f"{prefix}_{next(counter)}"
                create(name, template=f"{prefix}_template")
                return with_database(url, name)

        yield fresh
    finally:
        with admin.connect() as conn:
            for name in reversed(created):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _reset_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))


# -- measuring ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Repeat:
    batched_per_s: float
    single_per_s: float
    seal_per_s: float
    verify_per_s: float
    verify_export_per_s: float
    verified: int
    ok: bool


def _event(n: int) -> Event:
    """A decision-sized event: identifiers and a small detail map, like real callers write."""
    return Event(type="decision.evaluated", actor=f"client:bench-{n % 7}",
                 outcome="permit" if n % 5 else "deny", institution=f"inst-{n % 13:04d}",
                 client=f"bench-client-{n % 7}", patient=f"patient-{n % 1009:06d}",
                 request_id=f"{n:024x}", policy_version="2026-11-01",
                 detail={"resource": "Observation", "purpose": "treatment", "n": n})


def one_repeat(database_url: str, instance: Path, events: int, batch_size: int,
               single_events: int) -> Repeat:
    app = build_app(database_url, instance)
    with app.app_context():
        session = db.session()
        try:
            kek = app.config["AUTHZ_KEK_BYTES"]
            keys.ensure_keys(session, kek)  # the checkpoint signing key (two events)
            started = time.perf_counter()
            for first in range(0, events, batch_size):
                with write(session):
                    for n in range(first, min(first + batch_size, events)):
                        record(session, _event(n))
            batched_s = time.perf_counter() - started

            started = time.perf_counter()
            checkpoints.seal(session, kek)
            seal_s = time.perf_counter() - started

            started = time.perf_counter()
            verdict = verify_database(session)
            verify_s = time.perf_counter() - started
            session.rollback()

            instance.mkdir(parents=True, exist_ok=True)
            exported = instance / f"export-{secrets.token_hex(4)}.jsonl"
            export(session, exported)
            started = time.perf_counter()
            offline = verify_export(exported)
            verify_export_s = time.perf_counter() - started
            exported.unlink()

            started = time.perf_counter()
            for n in range(events, events + single_events):
                with write(session):
                    record(session, _event(n))
            single_s = time.perf_counter() - started
        finally:
            db.session.remove()
            db.engine.dispose()
    for what, result in (("verify", verdict), ("verify --export", offline)):
        if not result.ok:
            log(f"  {what} failed: {result.describe()}")
    total = events + 2
    return Repeat(batched_per_s=events / batched_s, single_per_s=single_events / single_s,
                  seal_per_s=total / seal_s, verify_per_s=verdict.count / verify_s,
                  verify_export_per_s=offline.count / verify_export_s, verified=verdict.count,
                  ok=verdict.ok and verdict.count == total and offline.ok
                  and offline.count == total and verdict.checkpoints == 1)


def measure(fresh: Fresh, workdir: Path, events: int, batch_size: int, single_events: int,
            repeats: int, label: str) -> tuple[dict[str, Any], int]:
    runs: list[Repeat] = []
    for index in range(repeats):
        url = fresh()
        run = one_repeat(url, workdir / "instance", events, batch_size, single_events)
        log(f"  {label} {index + 1}/{repeats}: batched {run.batched_per_s:.0f}/s, single"
            f" {run.single_per_s:.0f}/s, seal {run.seal_per_s:.0f}/s, verify"
            f" {run.verify_per_s:.0f}/s, verify export {run.verify_export_per_s:.0f}/s"
            f"{'' if run.ok else ' (VERIFY FAILED)'}")
        runs.append(run)
    figures = {
        "append_batched": {"events": events, "batch_size": batch_size,
                           "per_s": figure(median([r.batched_per_s for r in runs]), 1),
                           "runs_per_s": [figure(r.batched_per_s, 1) for r in runs]},
        "append_single": {"events": single_events,
                          "per_s": figure(median([r.single_per_s for r in runs]), 1),
                          "runs_per_s": [figure(r.single_per_s, 1) for r in runs]},
        "seal": {"records": events,
                 "per_s": figure(median([r.seal_per_s for r in runs]), 1),
                 "runs_per_s": [figure(r.seal_per_s, 1) for r in runs]},
        # records: the events appended; the log also holds the two key-generation events
        "verify": {"records": events, "rows": events + 2, "ok": all(r.ok for r in runs),
                   "per_s": figure(median([r.verify_per_s for r in runs]), 1),
                   "runs_per_s": [figure(r.verify_per_s, 1) for r in runs]},
        "verify_export": {"records": events,
                          "per_s": figure(median([r.verify_export_per_s for r in runs]), 1),
                          "runs_per_s": [figure(r.verify_export_per_s, 1) for r in runs]},
    }
    return figures, sum(1 for r in runs if not r.ok)


def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = QUICK if args.quick else FULL
    events = args.events or defaults["events"]
    single_events = args.single_events or defaults["single_events"]
    if min(events, single_events, args.batch_size, args.repeats) < 1:
        raise BenchmarkError("--events, --single-events, --batch-size and --repeats must be >= 1")
    postgres_url = args.database_url or os.environ.get("AUTHZ_TEST_DATABASE_URL")
    databases: dict[str, Any] = {}
    errors = 0
    with tempfile.TemporaryDirectory(prefix="authz-bench-audit-") as folder:
        workdir = Path(folder)
        targets: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Fresh]]]] = [
            ("sqlite", lambda: sqlite_databases(workdir / "sqlite"))]
        if postgres_url:
            targets.append(("postgresql",
                            lambda: postgres_databases(postgres_url, workdir / "postgresql")))
        for label, databases_of in targets:
            log(f"{label}: {events} batched + {single_events} single appends,"
                f" {args.repeats} repeats")
            with databases_of() as fresh:
                figures, failed = measure(fresh, workdir / label, events, args.batch_size,
                                          single_events, args.repeats, label)
            if label == "postgresql" and postgres_url:
                figures["server"] = redact(postgres_url)
            databases[label] = figures
            errors += failed
    return {"repeats": args.repeats, "databases": databases, "errors": errors}
