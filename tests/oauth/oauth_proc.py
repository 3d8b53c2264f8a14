"""Work that the OAuth tests run in separate OS processes (spawned, so each builds its own app)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any


def remember_once(database_url: str, instance: str, key: str, expires_at: datetime,
                  now: datetime, start: Any) -> bool:
    """Ask the replay store about ``key`` once, after every worker is ready."""
    os.environ["AUTHZ_INSTANCE_PATH"] = instance
    from tests_support import base_config

    from authz import create_app
    from authz.extensions import db
    from authz.oauth import replay

    app = create_app(base_config(database_url))
    with app.app_context():
        session = db.session()
        session.connection()  # connect before the start line, so the race is on the INSERT
        session.rollback()
        start.wait(timeout=60)
        return replay.remember(session, "dpop", key, expires_at, now)
