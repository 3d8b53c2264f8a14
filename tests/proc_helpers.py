"""Work that tests run in separate OS processes (spawned, so each builds its own app)."""

from __future__ import annotations

import os
from typing import Any


def _app(database_url: str, instance: str) -> Any:
    os.environ["AUTHZ_INSTANCE_PATH"] = instance
    from tests_support import base_config

    from authz import create_app

    return create_app(base_config(database_url))


def append_events(database_url: str, instance: str, worker: int, count: int,
                  start: Any) -> list[int]:
    """Append ``count`` events, one transaction each, after all workers are ready."""
    from authz import audit
    from authz.database import write
    from authz.extensions import db

    app = _app(database_url, instance)
    seqs = []
    with app.app_context():
        session = db.session()
        start.wait()
        for i in range(count):
            with write(session):
                seqs.append(audit.record(session, audit.Event(
                    type="test.concurrent", actor=f"worker:{worker}", detail={"i": i})))
    return seqs


def ensure_keys(database_url: str, instance: str, start: Any) -> list[str]:
    from authz.extensions import db
    from authz.keys import service

    app = _app(database_url, instance)
    with app.app_context():
        start.wait()
        return service.ensure_keys(db.session(), app.config["AUTHZ_KEK_BYTES"])


def run_jobs(database_url: str, instance: str, worker: int, start: Any) -> list[str]:
    from datetime import timedelta

    from authz import audit
    from authz.database import write
    from authz.extensions import db
    from authz.jobs import runner

    def work(ctx: runner.JobContext) -> None:
        with write(ctx.session):
            audit.record(ctx.session, audit.Event(type="test.job_ran", actor=f"worker:{worker}"))

    job = runner.Job("test.once", timedelta(hours=1), work)
    app = _app(database_url, instance)
    with app.app_context():
        start.wait()
        outcomes = runner.run_due(db.session(), app.config, holder=f"worker-{worker}",
                                  jobs=[job])
        return [o.status for o in outcomes]
