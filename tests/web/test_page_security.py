"""Page security (CSP, framing, cookies, fixation, URLs) and languages on the portal pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from card_support import ADULT
from card_support import login
from portal_support import csrf

TEMPLATES = Path(__file__).resolve().parents[2] / "authz" / "templates"
PAGES = ("/portal", "/portal/grant", "/portal/history", "/portal/devices")


def test_every_page_has_the_strict_csp_and_refuses_framing(patient):
    for path in (*PAGES, "/account", "/login"):
        page = patient.get(path, follow_redirects=True)
        assert page.status_code == 200, path
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        html = page.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\ssrc=)", html), path  # no inline script
        assert "<style" not in html and " style=" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers


def test_no_template_holds_inline_script_or_style():
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\ssrc=)", text), template
        assert "<style" not in text and " style=" not in text, template
        assert not re.search(r"\son[a-z]+=", text), template


def test_every_form_carries_a_csrf_token(patient):
    for path in PAGES:
        html = patient.get(path).get_data(as_text=True)
        for form in re.findall(r"<form\b.*?</form>", html, re.S):
            if 'method="get"' in form:
                continue
            assert 'name="csrf"' in form, (path, form[:80])


def test_every_control_has_a_label(patient):
    for path in PAGES:
        html = patient.get(path).get_data(as_text=True)
        labels = set(re.findall(r'<label for="([^"]+)"', html))
        for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in control:
                continue
            found = re.search(r'id="([^"]+)"', control)
            assert found and found.group(1) in labels, (path, control)


def test_cookies_are_httponly_and_samesite_and_secure_on_https(app_factory):
    # any response that stores the session: here the switch refusing a form without a token
    plain = app_factory().test_client().post("/lang", data={"lang": "en"})
    cookie = plain.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = app_factory(AUTHZ_ISSUER="https://authz.example").test_client().post(
        "/lang", data={"lang": "en"}, base_url="https://authz.example")
    cookie = secure.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_a_session_planted_before_login_is_not_logged_in_afterwards(demo_app, browser, issue,
                                                                    places):
    browser.get("/login")
    planted = browser.get_cookie("authz_session").value
    login(browser, issue())
    assert browser.get("/portal").status_code == 200
    assert browser.get_cookie("authz_session").value != planted
    attacker = demo_app.test_client()
    attacker.set_cookie("authz_session", planted)
    assert attacker.get("/portal").status_code == 302


def test_no_personal_attribute_in_any_address(patient, places):
    form = patient.get("/portal/grant")
    patient.post("/portal/apply", data={"csrf": csrf(form), "proposal": "x"})
    addresses = []
    for path in PAGES:
        page = patient.get(path)
        addresses += re.findall(r'(?:href|action)="([^"]+)"', page.get_data(as_text=True))
    assert addresses
    for value in ADULT.values():
        for part in value.split("\u3000"):
            assert all(part not in address for address in addresses), part


def test_japanese_by_default_with_japanese_dates(patient, places):
    page = patient.get("/portal/devices").get_data(as_text=True)
    assert '<html lang="ja">' in page and "セッションとアプリ" in page
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}", page)


def test_accept_language_then_the_switch_choose_english(patient, places):
    english = patient.get("/portal", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in english.get_data(as_text=True)
    assert "My consents" in english.get_data(as_text=True)
    page = patient.get("/portal/devices")
    switched = patient.post("/lang", data={"csrf": csrf(page), "lang": "en",
                                           "next": "/portal/devices"})
    assert switched.status_code == 303 and switched.headers["Location"] == "/portal/devices"
    text = patient.get("/portal/devices", headers={"Accept-Language": "ja"}).get_data(
        as_text=True)
    assert "Sessions and apps" in text and re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:", text)
    back = patient.post("/lang", data={"csrf": csrf(page), "lang": "ja", "next": "//evil.example"})
    assert back.headers["Location"] == "/account"  # never an open redirect
    assert "わたしの同意" in patient.get("/portal").get_data(as_text=True)


@pytest.mark.parametrize("token", [None, "forged"])
def test_the_switch_needs_the_csrf_token(patient, places, token):
    data = {"lang": "en", "next": "/portal"}
    if token:
        data["csrf"] = token
    assert patient.post("/lang", data=data).status_code == 400
    assert "わたしの同意" in patient.get("/portal").get_data(as_text=True)
