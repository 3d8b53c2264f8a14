"""Jobs run under database leases: one runner per due job among many instances."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import proc_helpers
import pytest
import sqlalchemy as sa

from authz.audit.models import AuditEvent
from authz.cli import authz_cli
from authz.database import utcnow
from authz.jobs import runner
from authz.jobs.models import JobLease


@pytest.fixture
def cli_runner(app):
    return app.test_cli_runner()


def test_exactly_one_of_several_instances_runs_a_due_job(db, database_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(4) as pool:
            pending = [pool.apply_async(proc_helpers.run_jobs,
                                        (database_url, str(tmp_path / f"i{w}"), w, start))
                       for w in range(4)]
            start.set()
            statuses = [s for p in pending for s in p.get(timeout=120)]
    assert sorted(statuses) == ["ran", "skipped", "skipped", "skipped"]
    ran = db.execute(sa.select(sa.func.count()).select_from(AuditEvent)
                     .where(AuditEvent.type == "test.job_ran")).scalar()
    assert ran == 1


def test_a_job_runs_again_only_after_its_interval(db, app):
    calls = []
    job = runner.Job("test.tick", timedelta(minutes=5), lambda ctx: calls.append(ctx.now))
    now = utcnow()
    assert [o.status for o in runner.run_due(db, app.config, jobs=[job], now=now)] == ["ran"]
    later = now + timedelta(minutes=1)
    assert [o.status for o in runner.run_due(db, app.config, jobs=[job], now=later)] == [
        "skipped"]
    much_later = now + timedelta(minutes=6)
    assert [o.status for o in runner.run_due(db, app.config, jobs=[job], now=much_later)] == [
        "ran"]
    assert len(calls) == 2


def test_a_failing_job_releases_its_lease_and_records_the_failure(db, app):
    def boom(ctx):
        raise RuntimeError("no")

    job = runner.Job("test.boom", timedelta(minutes=5), boom)
    assert [o.status for o in runner.run_due(db, app.config, jobs=[job])] == ["failed"]
    lease = db.get(JobLease, "test.boom")
    assert lease.holder is None and lease.last_status == "failed"
    assert lease.last_error == "RuntimeError"


def test_a_dead_holders_lease_expires(db, app):
    job = runner.Job("test.stuck", timedelta(seconds=1), lambda ctx: None,
                     lease=timedelta(minutes=1))
    now = utcnow()
    assert runner.try_acquire(db, job, "dead-instance", now)  # never released
    assert not runner.try_acquire(db, job, "other", now + timedelta(seconds=30))
    assert runner.try_acquire(db, job, "other", now + timedelta(minutes=2))


def test_jobs_run_once_and_list(cli_runner, db):
    result = cli_runner.invoke(authz_cli, ["jobs", "run", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert '"job": "keys.retire", "status": "ran"' in result.output
    listed = cli_runner.invoke(authz_cli, ["jobs", "list", "--json"])
    assert '"last_status": "ok"' in listed.output
    assert '"job": "oauth.purge_replay"' in listed.output
