"""Alembic environment for authz (used through Flask-Migrate: `authz db upgrade`).

Logging is left to authz: alembic's usual fileConfig() would disable the service's loggers when
`authz serve` migrates in-process.
"""

from __future__ import annotations

from alembic import context
from flask import current_app

import authz.audit.models  # noqa: F401 - import every model so metadata is complete
import authz.consent.models  # noqa: F401
import authz.identity.models  # noqa: F401
import authz.jobs.models  # noqa: F401
import authz.keys.models  # noqa: F401
import authz.oauth.models  # noqa: F401
import authz.oauth.replay  # noqa: F401
import authz.policy.models  # noqa: F401
import authz.registry.models  # noqa: F401
from authz.database import Base

config = context.config


def run_migrations_offline() -> None:
    context.configure(url=current_app.config["SQLALCHEMY_DATABASE_URI"],
                      target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = current_app.extensions["migrate"].db.engine
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
