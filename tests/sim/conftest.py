"""Fixtures for the simulator: a CA set made once per session, copied per test; card factories."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim_support import ADULT
from sim_support import PASSWORD
from sim_support import PIN
from stub_service import StubService

from authz.sim import lifecycle
from authz.sim.authority import SimAuthority
from authz.sim.card import VirtualCard


@pytest.fixture(scope="session")
def _sim_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Four RSA CA keys take a moment; make them once and copy the folder for each test.
    folder = tmp_path_factory.mktemp("sim-template") / "jpki-sim"
    SimAuthority.open(folder)
    return folder


@pytest.fixture
def sim_dir(_sim_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "jpki-sim"
    shutil.copytree(_sim_template, target)
    return target


@pytest.fixture
def sim(sim_dir: Path) -> SimAuthority:
    return SimAuthority.open(sim_dir)


@pytest.fixture
def issue(sim: SimAuthority, tmp_path: Path) -> Callable[..., VirtualCard]:
    """Issue a card file (adult with both certificates by default) and load it."""
    counter = iter(range(1, 10_000))

    def make(**overrides: Any) -> VirtualCard:
        out = tmp_path / f"card-{next(counter)}.json"
        spec = {**ADULT, "pin": PIN, "password": PASSWORD, "out": out, **overrides}
        lifecycle.issue_card(sim, **spec)
        return VirtualCard.load(out)

    return make


@pytest.fixture
def issue_phone(sim: SimAuthority, tmp_path: Path) -> Callable[..., VirtualCard]:
    """Issue phone credentials from a card."""
    counter = iter(range(1, 10_000))

    def make(card: VirtualCard, **overrides: Any) -> VirtualCard:
        out = tmp_path / f"phone-{next(counter)}.json"
        spec = {"card_password": PASSWORD, "pin": "5678", "password": "PHONE123", "out": out,
                **overrides}
        lifecycle.issue_phone(sim, card, **spec)
        return VirtualCard.load(out)

    return make


@pytest.fixture
def service(sim: SimAuthority) -> Iterator[StubService]:
    """A stub of the service's card link on 127.0.0.1 (the real one is built elsewhere)."""
    stub = StubService(sim).start()
    yield stub
    stub.stop()
