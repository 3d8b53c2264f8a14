"""Demo fixtures: a demo app prepared as ``make run`` prepares it (keys, policy, seed, cards)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authz import demo
from authz.extensions import db as flask_db
from authz.keys import service as keys
from authz.policy import store as policy_store

ISSUER = "http://127.0.0.1:8000"
ORIGIN = {"Origin": ISSUER}


@pytest.fixture
def seeded(demo_app):
    """The demo app after its start: institutions, consents, the clinic's clients, cards."""
    with demo_app.app_context():
        session = flask_db.session()
        keys.ensure_keys(session, demo_app.config["AUTHZ_KEK_BYTES"])
        policy_store.ensure_bundled(session)
        demo.seed(session)
        demo.register_auditor(session, demo.issue_cards(Path(demo_app.instance_path)))
        flask_db.session.remove()
    return demo_app


def csrf(response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def card_link(response) -> str:
    found = re.search(r'data-card-link="([^"]+)"', response.get_data(as_text=True)).group(1)
    return found.replace("&amp;", "&")
