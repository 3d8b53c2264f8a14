"""Fixtures for card flows: the demo app's simulator, card issuing, a browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from card_support import ADULT
from card_support import PASSWORD
from card_support import PIN

from authz.sim import lifecycle
from authz.sim.authority import SimAuthority
from authz.sim.card import VirtualCard


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
