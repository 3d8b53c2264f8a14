"""Demo pages only in demo mode; the wallet's form refuses forged, wrong and foreign input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ISSUER
from conftest import ORIGIN
from conftest import card_link
from conftest import csrf
from sqlalchemy import select

from authz import demo
from authz.extensions import db as flask_db
from authz.identity.models import CardTransaction
from authz.sim.card import AUTH_PIN
from authz.sim.card import VirtualCard

DEMO_PAGES = ("/demo/wallet", "/demo/clinic", "/demo/clinic/callback?state=x&code=y")


@pytest.mark.parametrize("path", DEMO_PAGES)
def test_demo_pages_are_404_outside_demo_mode(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/demo/wallet", "/demo/clinic/start", "/demo/clinic/read"])
def test_demo_forms_are_404_outside_demo_mode(client, path):
    assert client.post(path, headers=ORIGIN, data={"csrf": "x"}).status_code == 404


def test_the_root_is_a_short_service_page_outside_demo_mode(client):
    page = client.get("/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "/portal" in body and "demo-wallet" not in body and "/demo/" not in body
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("path", ["/", *DEMO_PAGES[:2]])
def test_demo_pages_answer_in_demo_mode(seeded, path):
    page = seeded.test_client().get(path)
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"


def _english(app):
    """A browser that asks for English: the refusals below are matched in English words."""
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return browser


def _login_page(browser):
    page = browser.get("/login")
    assert page.status_code == 200
    assert 'id="demo-wallet"' in page.get_data(as_text=True)
    return page


def _state(app, link):
    txn_id = link.split("/jpki/transactions/")[1].split("/")[0]
    with app.app_context():
        state = flask_db.session.execute(select(CardTransaction.state).where(
            CardTransaction.id == txn_id)).scalar_one()
        flask_db.session.remove()
    return state


def _tries(app):
    card = VirtualCard.load(Path(app.instance_path) / "demo-cards" / "hanako.json")
    return card._pin(AUTH_PIN).tries_left


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_the_wallet_form_needs_the_session_token(seeded, token):
    browser = seeded.test_client()
    link = card_link(_login_page(browser))
    form = {"link": link, "card": "hanako.json", "pin": demo.DEMO_PIN,
            "password": demo.DEMO_PASSWORD}
    if token is not None:
        form["csrf"] = token
    refused = browser.post("/demo/wallet", headers=ORIGIN, data=form)
    assert refused.status_code == 400
    assert _state(seeded, link) == "pending"  # nothing was signed
    assert _tries(seeded) == 3


def test_the_wallet_refuses_a_post_from_another_origin(seeded):
    browser = seeded.test_client()
    page = _login_page(browser)
    refused = browser.post("/demo/wallet", headers={"Origin": "https://evil.example"}, data={
        "csrf": csrf(page), "link": card_link(page), "card": "hanako.json",
        "pin": demo.DEMO_PIN})
    assert refused.status_code in (400, 403)
    assert _state(seeded, card_link(page)) == "pending"


def test_the_pin_is_never_in_a_url(seeded):
    page = seeded.test_client().get("/demo/wallet")
    body = page.get_data(as_text=True)
    assert 'method="post"' in body and 'name="pin" type="password"' in body


def test_a_wrong_pin_is_refused_with_the_tries_left(seeded):
    browser = seeded.test_client()
    page = _login_page(browser)
    wallet = browser.get("/demo/wallet")
    answer = browser.post("/demo/wallet", headers=ORIGIN, data={
        "csrf": csrf(wallet), "link": card_link(page), "card": "hanako.json", "pin": "9999"})
    assert answer.status_code == 400
    assert "2 tries left" in answer.get_data(as_text=True)
    assert _tries(seeded) == 2
    assert browser.get("/login").status_code == 200  # not logged in


@pytest.mark.parametrize(("card", "link", "message"), [
    ("../secret_key", None, "choose one of the demo cards"),
    ("hanako.json", "https://evil.example/jpki/transactions/abcdefgh/card?code=123456",
     "not a card link of this service"),
    ("hanako.json", f"{ISSUER}/jpki/transactions/abcdefgh/card?code=12", "not a card link"),
    ("hanako.json", f"{ISSUER}/jpki/transactions/abcdefghij/card?code=123456",
     "unknown, expired or already used"),
    ("hanako.json", f"{ISSUER}/jpki/transactions/a\x01b/card?code=123456", "not a card link"),
    ("hanako.json", f"{ISSUER}/jpki/transactions/{'a' * 600}/card?code=123456",
     "not a card link"),
])
def test_the_wallet_refuses_bad_input_clearly(seeded, card, link, message):
    browser = _english(seeded)
    page = _login_page(browser)
    wallet = browser.get("/demo/wallet")
    answer = browser.post("/demo/wallet", headers=ORIGIN, data={
        "csrf": csrf(wallet), "link": link or card_link(page), "card": card,
        "pin": demo.DEMO_PIN})
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert _state(seeded, card_link(page)) == "pending"
    assert _tries(seeded) == 3


def test_a_refusal_is_in_the_page_language(seeded):
    browser = seeded.test_client()  # no Accept-Language: Japanese, the default
    page = _login_page(browser)
    wallet = browser.get("/demo/wallet")
    answer = browser.post("/demo/wallet", headers=ORIGIN, data={
        "csrf": csrf(wallet), "link": card_link(page), "card": "../secret_key",
        "pin": demo.DEMO_PIN})
    assert answer.status_code == 400
    assert "署名できませんでした：デモ用カードを一つ選んでください" in answer.get_data(as_text=True)


def test_a_used_link_shows_a_clear_message_in_the_wallet(seeded):
    browser = _english(seeded)
    page = _login_page(browser)
    wallet = browser.get("/demo/wallet", query_string={"link": card_link(page)})
    assert re.search(r'id="wallet-code">\d{6}<', wallet.get_data(as_text=True))
    signed = browser.post("/demo/wallet", headers=ORIGIN, data={
        "csrf": csrf(wallet), "link": card_link(page), "card": "hanako.json",
        "pin": demo.DEMO_PIN, "password": demo.DEMO_PASSWORD})
    assert signed.status_code == 200
    again = browser.get("/demo/wallet", query_string={"link": card_link(page)})
    assert again.status_code == 400
    assert "already used" in again.get_data(as_text=True)
    assert browser.get("/login").status_code == 302  # the login page logs the browser in


def test_the_clinic_callback_refuses_a_forged_state(seeded):
    browser = seeded.test_client()
    clinic = browser.get("/demo/clinic")
    started = browser.post("/demo/clinic/start", headers=ORIGIN, data={"csrf": csrf(clinic)})
    assert started.status_code == 303
    forged = browser.get("/demo/clinic/callback",
                         query_string={"state": "forged", "code": "x", "iss": ISSUER})
    assert forged.status_code == 400
    assert "state does not match" in forged.get_data(as_text=True)
    assert browser.get("/demo/clinic/callback").status_code == 400  # the attempt is over


def test_the_clinic_refuses_reads_before_sign_in_and_without_token(seeded):
    browser = _english(seeded)
    clinic = browser.get("/demo/clinic")
    assert browser.post("/demo/clinic/read", headers=ORIGIN,
                        data={"csrf": "forged"}).status_code == 400
    before = browser.post("/demo/clinic/read", headers=ORIGIN, data={"csrf": csrf(clinic)})
    assert before.status_code == 400 and "sign in first" in before.get_data(as_text=True)
    assert browser.post("/demo/clinic/start", headers=ORIGIN,
                        data={"csrf": "forged"}).status_code == 400


def test_a_forged_clinic_cookie_is_ignored(seeded):
    browser = _english(seeded)
    browser.set_cookie("demo_clinic", "eyJzdWIiOiJ4In0.forged", path="/demo/clinic")
    clinic = browser.get("/demo/clinic")
    answer = browser.post("/demo/clinic/read", headers=ORIGIN, data={"csrf": csrf(clinic)})
    assert answer.status_code == 400 and "sign in first" in answer.get_data(as_text=True)


def test_the_clinic_app_explains_when_the_demo_was_not_seeded(demo_app):
    browser = _english(demo_app)
    clinic = browser.get("/demo/clinic")
    answer = browser.post("/demo/clinic/start", headers=ORIGIN, data={"csrf": csrf(clinic)})
    assert answer.status_code == 503
    assert "demo clinic is not registered" in answer.get_data(as_text=True)


def test_a_denied_consent_reaches_the_clinic_as_a_clear_refusal(seeded):
    from test_demo_pages import _login_through_wallet
    from test_demo_pages import _path

    browser = seeded.test_client()
    clinic = browser.get("/demo/clinic")
    started = browser.post("/demo/clinic/start", headers=ORIGIN, data={"csrf": csrf(clinic)})
    login_page = browser.get(_path(browser.get(_path(started.headers["Location"]))
                                   .headers["Location"]))
    authorize = _path(browser.get(_login_through_wallet(browser, login_page)).headers["Location"])
    consent_page = browser.get(authorize)
    denied = browser.post(authorize, headers=ORIGIN,
                          data={"csrf": csrf(consent_page), "decision": "deny"})
    assert denied.status_code == 302
    answer = browser.get(_path(denied.headers["Location"]))
    assert answer.status_code == 400
    assert "the authorization was refused: access_denied" in answer.get_data(as_text=True)
    assert "read-again" not in answer.get_data(as_text=True)
