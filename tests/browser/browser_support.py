"""Helpers of the browser tests: screenshots and the card login through the card app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

from authz.demo import DEMO_PASSWORD
from authz.demo import DEMO_PIN

CHROMIUM = "/usr/bin/chromium"
AUTHZ = str(Path(sys.executable).parent / "authz")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"  # git-ignored; CI keeps them as artifacts


@dataclass
class Service:
    base: str
    env: dict[str, str]
    cards: Path

    def card(self, name: str) -> Path:
        path = self.cards / name
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return path


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def card_login(page: Page, service: Service, target: str, card: str = "hanako.json") -> None:
    """Open ``target``, answer the login page's card link with the card app, land on target."""
    page.goto(service.base + target)
    assert "/login" in page.url
    respond(page, service, card)
    # login.js notices the answer and reloads; without JavaScript the button does the same
    page.wait_for_url(lambda url: "/login" not in url, timeout=15_000)


def respond(page: Page, service: Service, card: str = "hanako.json") -> None:
    """What the patient does on the phone: the card app answers the login page's link."""
    if page.locator("[data-card-link]").count() == 0:
        raise AssertionError(f"no card link on {page.url}: {page.content()[:600]}")
    link = page.get_attribute("[data-card-link]", "data-card-link")
    assert link
    answered = subprocess.run(
        [AUTHZ, "card", "respond", "--card", str(service.card(card)), "--pin", DEMO_PIN,
         "--password", DEMO_PASSWORD, "--link", link],
        env={**os.environ, **service.env}, capture_output=True, text=True, timeout=60)
    assert answered.returncode == 0, answered.stderr
