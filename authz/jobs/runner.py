"""Periodic jobs under database leases: among N instances exactly one runs each due job.

A job is due when its interval has passed since its last run. An instance takes the lease with
one conditional UPDATE (due and not leased), so the database decides who runs it; the lease
expires by itself if the holder dies mid-run.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from authz.database import dialect_name
from authz.database import utcnow
from authz.database import write
from authz.jobs.models import JobLease

log = logging.getLogger("authz.jobs")


@dataclass(frozen=True)
class JobContext:
    session: Session
    settings: Mapping[str, Any]
    now: datetime


@dataclass(frozen=True)
class Job:
    name: str
    interval: timedelta
    run: Callable[[JobContext], object]
    lease: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "ran", "failed", "skipped"
    result: object = None


_REGISTRY: dict[str, Job] = {}


def register(job: Job) -> Job:
    """Add a job to the registry (later capabilities add sealing, purging, expiry)."""
    _REGISTRY[job.name] = job
    return job


def registered() -> list[Job]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _ensure_row(session: Session, name: str) -> None:
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    with write(session):
        session.execute(dialect.insert(JobLease).values(name=name).on_conflict_do_nothing())


def try_acquire(session: Session, job: Job, holder: str, now: datetime) -> bool:
    _ensure_row(session, job.name)
    with write(session):
        result = session.execute(
            update(JobLease)
            .where(
                JobLease.name == job.name,
                or_(JobLease.lease_until.is_(None), JobLease.lease_until < now),
                or_(JobLease.last_run_at.is_(None), JobLease.last_run_at <= now - job.interval),
            )
            .values(holder=holder, lease_until=now + job.lease)
        )
        return bool(getattr(result, "rowcount", 0) == 1)


def _release(session: Session, job: Job, holder: str, started: datetime, status: str,
             error: str | None) -> None:
    with write(session):
        session.execute(
            update(JobLease)
            .where(and_(JobLease.name == job.name, JobLease.holder == holder))
            .values(holder=None, lease_until=None, last_run_at=started, last_status=status,
                    last_error=error)
        )


def run_due(session: Session, settings: Mapping[str, Any], *, holder: str | None = None,
            jobs: list[Job] | None = None, now: datetime | None = None) -> list[Outcome]:
    """Run every due job whose lease this instance wins; return what happened to each."""
    me = holder or holder_name()
    outcomes = []
    for job in jobs if jobs is not None else registered():
        started = now or utcnow()
        if not try_acquire(session, job, me, started):
            outcomes.append(Outcome(job.name, "skipped"))
            continue
        try:
            result = job.run(JobContext(session, settings, started))
        except Exception as exc:
            session.rollback()
            log.exception("job failed", extra={"job": job.name})
            _release(session, job, me, started, "failed", type(exc).__name__)
            outcomes.append(Outcome(job.name, "failed"))
            continue
        _release(session, job, me, started, "ok", None)
        outcomes.append(Outcome(job.name, "ran", result))
    return outcomes


def leases(session: Session) -> list[JobLease]:
    return list(session.execute(select(JobLease).order_by(JobLease.name)).scalars())
