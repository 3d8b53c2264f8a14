"""authz: consent and access-control authorization service for health data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from authz import config
from authz import extensions
from authz import logs
from authz.database import configure_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Assemble the service: config -> extensions -> blueprints -> errors -> CLI. No I/O."""
    app = Flask(__name__, instance_path=_instance_path(), instance_relative_config=True)
    config.load(app.config, app.instance_path, test_config)
    logs.configure(app.config["AUTHZ_LOG_LEVEL"])
    extensions.db.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(MIGRATIONS))
    extensions.limiter.init_app(app)
    with app.app_context():
        configure_engine(extensions.db.engine)
    if app.config["AUTHZ_TRUSTED_PROXIES"]:
        hops = app.config["AUTHZ_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    from authz.api import register_api
    from authz.oauth.server import init_oauth
    from authz.web import register_web

    init_oauth(app)
    register_api(app)
    register_web(app)
    if app.config["AUTHZ_DEMO"]:
        # DESIGN 3: in demo mode the simulated issuing side (CRL, OCSP, link) is mounted too.
        from authz.sim.http import register as mount_simulator

        mount_simulator(app, Path(app.instance_path) / "jpki-sim")
    return app


def _instance_path() -> str | None:
    configured = os.environ.get("AUTHZ_INSTANCE_PATH")
    return str(Path(configured).resolve()) if configured else None
