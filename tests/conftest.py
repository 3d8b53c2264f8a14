"""Fixtures: ``app``, ``client``, ``runner``, ``db`` and factories.

The schema always comes from the real migrations. SQLite (default): migrations run once into a
template file that each test copies. PostgreSQL (``AUTHZ_TEST_DATABASE_URL``): migrations run
once per session and each test starts from truncated tables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from card_support import ADULT
from card_support import PASSWORD
from card_support import PIN
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy.orm import Session
from tests_support import base_config

from authz import create_app
from authz.extensions import db as flask_db
from authz.registry import service as registry
from authz.sim import lifecycle
from authz.sim.authority import SimAuthority
from authz.sim.card import VirtualCard

PG_URL = os.environ.get("AUTHZ_TEST_DATABASE_URL")
DB_FIXTURES = {"app", "db", "client", "runner", "database_url", "create_institution", "demo_app",
               "create_client", "app_factory"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that touches the database is marked ``db`` (.ci/run repeats them on PG)."""
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def migrate(database_url: str, instance: Path) -> None:
    app = _build(database_url, instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        flask_db.engine.dispose()


def _build(database_url: str, instance: Path, **overrides: Any) -> Flask:
    old = os.environ.get("AUTHZ_INSTANCE_PATH")
    os.environ["AUTHZ_INSTANCE_PATH"] = str(instance)
    try:
        return create_app({**base_config(database_url), **overrides})
    finally:
        if old is None:
            os.environ.pop("AUTHZ_INSTANCE_PATH", None)
        else:
            os.environ["AUTHZ_INSTANCE_PATH"] = old


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if PG_URL:
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
        migrate(PG_URL, tmp_path_factory.mktemp("pg-instance"))
        return None
    folder = tmp_path_factory.mktemp("template")
    migrate(f"sqlite:///{folder / 'authz.db'}", folder)
    return folder / "authz.db"


def reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [t for t in conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            if t != "alembic_version"]
        conn.execute(sa.text("SET session_replication_role = replica"))  # bypass append-only
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        conn.execute(sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"),
                     {"h": bytes(32)})
    engine.dispose()


@pytest.fixture
def database_url(_template: Path | None, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for this test."""
    from authz.oauth import inspection
    from authz.oauth import signing
    from authz.policy import store as policy_store

    signing.forget()  # key caches must not outlive the keys of the last test
    inspection.forget_keys()
    policy_store.forget()  # nor the active policy hash: PostgreSQL tests share one URL
    if PG_URL:
        reset_postgres(PG_URL)
        yield PG_URL
        return
    assert _template is not None
    target = tmp_path / "db" / "authz.db"
    target.parent.mkdir()
    shutil.copyfile(_template, target)
    yield f"sqlite:///{target}"


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> Callable[..., Flask]:
    def build(**overrides: Any) -> Flask:
        return _build(database_url, tmp_path / "instance", **overrides)

    return build


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Iterator[Flask]:
    application = app_factory()
    yield application
    with application.app_context():
        flask_db.session.remove()
        flask_db.engine.dispose()


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    """A session inside an app context; state changes go through ``authz.database.write``."""
    with app.app_context():
        yield flask_db.session()
        flask_db.session.remove()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def create_institution(db: Session) -> Callable[..., Any]:
    counter = iter(range(1, 10_000))

    def create(**overrides: Any) -> Any:
        spec = {"name": "テスト病院", "type": "hospital", "code": f"13{next(counter):08d}",
                "roles": (), "emergency": False, **overrides}
        return registry.add_institution(db, registry.InstitutionSpec(**spec), actor="test")

    return create


@pytest.fixture
def create_client(db: Session, create_institution: Callable[..., Any]) -> Callable[..., Any]:
    def create(**overrides: Any) -> Any:
        institution = overrides.pop("institution", None) or create_institution().id
        spec = {"institution": institution, "name": "Test app", "auth_method": "none",
                "redirect_uris": ["https://app.example/cb"], "scope": "openid consents",
                **overrides}
        return registry.add_client(db, registry.ClientSpec(**spec), actor="test")

    return create


@pytest.fixture(scope="session")
def sim_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulator CAs made once per session (four RSA keys take a moment); copy per test."""
    from authz.sim.authority import SimAuthority

    folder = tmp_path_factory.mktemp("sim-state") / "jpki-sim"
    SimAuthority.open(folder)
    return folder


@pytest.fixture
def demo_app(app_factory: Callable[..., Flask], sim_template: Path,
             tmp_path: Path) -> Iterator[Flask]:
    """An app in demo mode whose in-process simulator starts from the session's CAs."""
    shutil.copytree(sim_template, tmp_path / "instance" / "jpki-sim")
    application = app_factory(AUTHZ_DEMO=True)
    yield application
    with application.app_context():
        flask_db.session.remove()
        flask_db.engine.dispose()


@pytest.fixture
def sim(demo_app):
    return SimAuthority.open(Path(demo_app.instance_path) / "jpki-sim")


@pytest.fixture
def issue(sim, tmp_path):
    counter = iter(range(1, 1000))

    def make(**overrides):
        out = tmp_path / f"card-{next(counter)}.json"
        lifecycle.issue_card(sim, **{**ADULT, "pin": PIN, "password": PASSWORD, "out": out,
                                     **overrides})
        return VirtualCard.load(out)

    return make


@pytest.fixture
def browser(demo_app):
    return demo_app.test_client()
