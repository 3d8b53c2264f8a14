"""What a starting instance does before it serves: migrate, make sure keys and a policy exist.

Both run under one cross-process lock, so two instances starting together on one PostgreSQL
(or one SQLite file) neither race the migration nor generate two active keys.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade

from authz.database import startup_lock
from authz.extensions import db
from authz.keys import service as keys
from authz.policy import store as policy_store

log = logging.getLogger("authz.startup")


def prepare(app: Flask) -> None:
    with app.app_context():
        with startup_lock(db.engine, "authz-startup"):
            upgrade(directory=app.extensions["migrate"].directory)
            created = keys.ensure_keys(db.session(), app.config["AUTHZ_KEK_BYTES"])
            if created:
                log.info("signing keys generated", extra={"count": len(created)})
            version = policy_store.ensure_bundled(db.session())
            policy_store.current(db.session())  # compiled once here, inherited by workers
            log.info("policy active", extra={"policy_version": version})
            if app.config["AUTHZ_DEMO"]:
                from authz import demo

                demo.seed(db.session())
                cards = demo.issue_cards(Path(app.instance_path))
                demo.register_auditor(db.session(), cards)
                print(demo.describe(cards), file=sys.stderr, flush=True)  # noqa: T201
        db.session.remove()
        # Forked workers must not inherit this process's connections (SQLite forbids carrying
        # a connection across fork(); on PostgreSQL it would sit idle for the master's life).
        db.engine.dispose()
