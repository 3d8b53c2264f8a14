"""Unbound extension singletons, wired to an app in ``create_app``."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from authz.database import Base

db = SQLAlchemy(model_class=Base, disable_autonaming=True)
migrate = Migrate()
# Later endpoints add their own limits (per client, per transaction). Without AUTHZ_REDIS_URL the
# counters live in each process; with it they are shared. If Redis is unreachable the limiter
# falls back to per-process memory counters rather than letting requests through unlimited.
limiter = Limiter(key_func=get_remote_address, default_limits=[],
                  in_memory_fallback_enabled=True)
