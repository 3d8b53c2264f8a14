"""Portal fixtures: registered institutions and a patient logged in with a card."""

from __future__ import annotations

import pytest
from card_support import login

from authz.extensions import db as flask_db
from authz.keys import service as keys
from authz.registry import service as registry


class Registry:
    """A clinic, a pharmacy and a hospital, as an operator would register them."""

    def __init__(self, app):
        with app.app_context():
            session = flask_db.session()
            keys.ensure_keys(session, app.config["AUTHZ_KEK_BYTES"])
            self.ids = {}
            for name, kind, code, roles in (
                    ("テスト診療所", "clinic", "1300000001", ("physician", "nurse")),
                    ("テスト薬局", "pharmacy", "1300000003", ("pharmacist",)),
                    ("テスト病院", "hospital", "1300000002", ("physician",))):
                self.ids[kind] = registry.add_institution(session, registry.InstitutionSpec(
                    name, kind, code, roles=roles), actor="test").id
            flask_db.session.remove()


@pytest.fixture
def places(demo_app):
    return Registry(demo_app)


@pytest.fixture
def patient(browser, issue, places):
    """The browser, logged in with a fresh card login."""
    login(browser, issue())
    return browser
