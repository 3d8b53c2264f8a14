"""A real ``authz serve`` in demo mode and Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_support import CHROMIUM
from browser_support import Service
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import sync_playwright
from test_serve import serving
from tests_support import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    instance = tmp_path_factory.mktemp("browser") / "instance"
    port = free_port()
    env = {"AUTHZ_INSTANCE_PATH": str(instance), "AUTHZ_DEMO": "1",
           "AUTHZ_ISSUER": f"http://127.0.0.1:{port}"}
    with serving(env, port):
        yield Service(f"http://127.0.0.1:{port}", env, instance / "demo-cards")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser profile that prefers Japanese."""
    context = chromium.new_context(locale="ja-JP", viewport={"width": 1024, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    yield tab
    context.close()
