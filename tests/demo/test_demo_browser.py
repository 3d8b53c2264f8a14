"""The demo story clicked through in Chromium against a real `authz serve` in demo mode."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright
from test_serve import serving
from tests_support import free_port

from authz.demo import AUDITOR_CARD
from authz.demo import DEMO_PASSWORD
from authz.demo import DEMO_PIN

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    instance = tmp_path_factory.mktemp("demo-browser") / "instance"
    port = free_port()
    env = {"AUTHZ_INSTANCE_PATH": str(instance), "AUTHZ_DEMO": "1",
           "AUTHZ_ISSUER": f"http://127.0.0.1:{port}"}
    with serving(env, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(locale="ja-JP", viewport={"width": 1024, "height": 900})
        context.set_default_timeout(20_000)
        yield context.new_page()
        context.close()
        browser.close()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_demo_story_in_one_browser(base: str, page: Page) -> None:
    page.goto(base + "/")
    _shot(page, "demo-landing")
    page.get_by_role("link", name="デモ内科クリニックのアプリ").click()
    page.locator("#clinic-start").click()
    expect(page.locator("[data-card-link]")).to_be_visible()
    code = page.locator("#short-code").inner_text()
    page.locator("#demo-wallet").click()
    expect(page.locator("#wallet-code")).to_have_text(code)  # the same code as the login page
    page.locator("#pin").fill(DEMO_PIN)
    page.locator("#password").fill(DEMO_PASSWORD)
    _shot(page, "demo-wallet")
    page.locator(".wallet-form button[type=submit]").click()
    expect(page.locator("#wallet-result")).to_have_attribute("data-result", "accepted")
    page.locator("#wallet-back").click()
    page.locator('button[name="decision"][value="approve"]').click()
    result = page.locator("#decision-result")
    expect(result).to_have_attribute("data-decision", "permit")
    _shot(page, "demo-clinic")

    page.goto(base + "/portal")
    page.locator("a[href*='/revoke']").first.click()
    page.locator("button[name=confirm][value=revoke]").click()
    page.goto(base + "/demo/clinic")
    page.locator("#read-again").click()
    expect(page.locator("#decision-result")).to_have_attribute("data-decision", "deny")

    page.goto(base + "/portal/history")
    body = page.content()
    assert len(re.findall("デモ内科クリニック", body)) >= 2
    page.goto(base + "/auditor")  # the patient is no auditor: log in with the auditor's card
    page.locator("#auditor-login").click()
    page.locator("#demo-wallet").click()
    page.locator(f"input[name=card][value='{AUDITOR_CARD}']").check()
    page.locator("#pin").fill(DEMO_PIN)
    page.locator("#password").fill(DEMO_PASSWORD)
    page.locator(".wallet-form button[type=submit]").click()
    expect(page.locator("#wallet-result")).to_have_attribute("data-result", "accepted")
    page.locator("#wallet-back").click()
    page.wait_for_url(re.compile(r".*/auditor/?$"))
    page.get_by_role("button", name=re.compile("今すぐ検証|Verify now")).click()
    expect(page.locator("#audit-verdict")).to_have_attribute("data-ok", "true")
    _shot(page, "demo-auditor")
