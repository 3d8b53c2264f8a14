"""The auditor console in a real browser: search, an event's inclusion proof, verification, a
patient refused, keyboard-only use and the language switch.

Selectors use the pages' ids and data attributes rather than their words, so the tests hold in
either language; only the language test reads labels.
"""

from __future__ import annotations

import json
import time

import pytest
from browser_support import Service
from browser_support import card_login
from browser_support import respond
from browser_support import shot
from playwright.sync_api import Page
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

AUDITOR = "kansa.json"
STATUS_LINK = "nav.portal-nav li:first-child a"
SEAL_WAIT = 60  # seconds; the served instance's job seals every ~5 s


def column(page: Page, index: int) -> list[str]:
    """The texts of one column (0-based) of the events table."""
    return [text.strip() for text in page.locator(f"#events tbody td:nth-child({index + 1})")
            .all_inner_texts()]


def search(page: Page) -> None:
    """Submit the search form and wait for the new results (the old page has a table too)."""
    with page.expect_navigation():
        page.locator("#event-search button[type=submit]").click()
    expect(page.locator("#events, #no-events")).to_be_visible()


def wait_until_sealed(page: Page) -> None:
    """Reload the event page until a checkpoint covers the event."""
    deadline = time.monotonic() + SEAL_WAIT
    while page.locator("#proof-status[data-ok]").count() == 0:
        assert time.monotonic() < deadline, "no checkpoint sealed the event"
        page.wait_for_timeout(1000)
        page.reload()


def focused_outline(page: Page) -> str:
    return str(page.locator(":focus").evaluate("e => getComputedStyle(e).outlineStyle"))


def test_auditor_searches_opens_a_sealed_event_and_verifies(page: Page, service: Service) -> None:
    card_login(page, service, "/auditor", card=AUDITOR)
    expect(page.locator("#log-status")).to_be_visible()
    assert int(page.locator("#event-count").inner_text()) > 0
    shot(page, "auditor-status")

    page.locator("nav a[href='/auditor/events']").click()
    expect(page.locator("#events")).to_be_visible()
    everything = column(page, 2)
    assert any(not kind.startswith("identity.") for kind in everything)
    page.locator("#type").fill("identity.*")
    search(page)
    kinds = column(page, 2)
    assert kinds and all(kind.startswith("identity.") for kind in kinds)
    assert "identity.session_started" in kinds  # the auditor's own login

    page.locator("#type").fill("")
    clinic = page.locator("#institution option", has_text="Demo Clinic")
    name = clinic.inner_text().strip()
    page.locator("#institution").select_option(clinic.get_attribute("value"))
    search(page)
    places = column(page, 4)
    assert places and set(places) == {name}
    assert len(places) < len(everything)

    page.locator("#type").fill("consent.*")
    search(page)
    assert set(column(page, 4)) == {name}
    assert column(page, 2) and all(kind.startswith("consent.") for kind in column(page, 2))
    with page.expect_download() as download:
        page.locator(".exports a[href*='format=jsonl']").click()
    lines = download.value.path().read_text().splitlines()
    assert len(lines) == len(column(page, 2))
    assert all(json.loads(line)["type"].startswith("consent.") for line in lines)
    shot(page, "auditor-search")

    first = page.locator("#events tbody a").first
    seq = first.inner_text().strip()
    first.click()
    page.wait_for_url(f"**/auditor/events/{seq}")
    expect(page.locator("h1")).to_contain_text(seq)
    expect(page.locator("#event")).to_contain_text("consent.")
    wait_until_sealed(page)
    expect(page.locator("#proof-status")).to_have_attribute("data-ok", "true")
    expect(page.locator("ol.proof li").first).to_be_visible()
    shot(page, "auditor-event")

    page.locator(STATUS_LINK).click()
    page.locator("form[action='/auditor/verify'] button[type=submit]").click()
    expect(page.locator("#audit-verdict")).to_have_attribute("data-ok", "true")


def test_a_patient_is_refused_until_an_auditor_card_logs_in(page: Page, service: Service) -> None:
    card_login(page, service, "/auditor", card="hanako.json")
    for path in ("/auditor", "/auditor/events", "/auditor/events/1", "/auditor/checkpoints",
                 "/auditor/emergency"):
        response = page.goto(service.base + path)
        assert response is not None
        assert response.status == 403, path
        expect(page.get_by_role("alert")).not_to_be_empty()
        for console in ("#log-status", "#audit-verdict", "form[action='/auditor/verify']",
                        "#event-search", "#events", "#event", "#proof-status", "#checkpoints",
                        "#reviews"):
            expect(page.locator(console)).to_have_count(0)

    page.goto(service.base + "/auditor")
    page.locator("#auditor-login").click()  # the refusal offers a login with another card
    respond(page, service, AUDITOR)
    page.wait_for_url(lambda url: "/login" not in url)
    expect(page.locator("#log-status")).to_be_visible()


def test_search_and_open_an_event_by_keyboard_only(page: Page, service: Service) -> None:
    card_login(page, service, "/auditor/events", card=AUDITOR)
    fields = []
    for _ in range(20):
        page.keyboard.press("Tab")
        current = page.evaluate("document.activeElement.id")
        # a date input is three stops in Chromium (year, month, day): count each field once
        if current in ("since", "until", "institution", "patient", "type") \
                and current not in fields:
            fields.append(current)
        if current == "type":
            break
    assert fields == ["since", "until", "institution", "patient", "type"]
    assert focused_outline(page) != "none"
    page.keyboard.type("identity.*")
    page.keyboard.press("Enter")
    page.wait_for_url("**/auditor/events?*type=identity.*")
    expect(page.locator("#type")).to_have_value("identity.*")
    kinds = column(page, 2)
    assert kinds and all(kind.startswith("identity.") for kind in kinds)

    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("!!document.activeElement.closest('#events')"):
            break
    focused = page.locator(":focus")
    expect(focused).to_have_text(page.locator("#events tbody a").first.inner_text())
    assert focused_outline(page) != "none"
    seq = focused.inner_text().strip()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/auditor/events/{seq}")
    expect(page.locator("#event")).to_contain_text("identity.")


def test_the_language_switch_shows_the_console_in_english(page: Page, service: Service) -> None:
    card_login(page, service, "/auditor/events", card=AUDITOR)
    page.goto(service.base + "/auditor/events?type=identity.*")
    assert page.locator("html").get_attribute("lang") == "ja"
    expect(page.locator("label[for=institution]")).to_have_text("機関")
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.url.endswith("/auditor/events?type=identity.*")  # back on the same search
    expect(page.locator("h1")).to_have_text("Audit events")
    for field, label in (("since", "From"), ("until", "To"), ("institution", "Institution"),
                         ("patient", "Patient (internal id)"), ("type", "Event type"),
                         ("outcome", "Outcome")):
        expect(page.locator(f"label[for={field}]")).to_have_text(label)
    expect(page.locator("#institution option").first).to_have_text("All institutions")
    expect(page.locator("#event-search button[type=submit]")).to_have_text("Search")
    expect(page.locator("nav.portal-nav")).to_contain_text("Log status")
    page.locator(STATUS_LINK).click()
    expect(page.locator("h1")).to_have_text("Audit log status")
    expect(page.locator("form[action='/auditor/verify'] button")).to_have_text("Verify now")
    shot(page, "auditor-english")
    page.get_by_role("button", name="日本語").click()
    expect(page.locator("html")).to_have_attribute("lang", "ja")


def test_the_console_reads_on_a_phone_with_enough_contrast(page: Page, service: Service) -> None:
    from test_portal_browser import CONTRAST

    page.set_viewport_size({"width": 375, "height": 740})
    card_login(page, service, "/auditor", card=AUDITOR)
    page.goto(service.base + "/auditor/events/1")
    wait_until_sealed(page)  # the page at its widest: with the proof
    for path in ("/auditor", "/auditor/events", "/auditor/events/1", "/auditor/checkpoints",
                 "/auditor/emergency?status=all"):
        page.goto(service.base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, path  # nothing wider than the screen, hashes and tables included
        assert page.evaluate(CONTRAST) == [], path
    shot(page, "auditor-phone")
