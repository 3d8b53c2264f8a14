"""``acr_values`` / essential ``acr``, ``login_hint`` and ``ui_locales`` at the authorization
endpoint (OIDC Core §3.1.2.1, §5.5.1.1; OpenID Connect Unmet Authentication Requirements)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt
import pytest
from card_support import PASSWORD
from card_support import PIN
from card_support import answer
from card_support import login
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce

from authz.sim import lifecycle
from authz.sim.card import VirtualCard

CARD = "urn:mdx:acr:jpki-auth"
PHONE = "urn:mdx:acr:jpki-auth-phone"


@pytest.fixture
def phone_user(demo_app, browser, issue, sim, tmp_path, setup):
    """A patient logged in with smartphone credentials (acr jpki-auth-phone), and the card."""
    card = issue()
    out = tmp_path / "phone.json"
    lifecycle.issue_phone(sim, card, card_password=PASSWORD, pin=PIN, password=PASSWORD,
                          out=out)
    login(browser, VirtualCard.load(out))
    return browser, VirtualCard.load(card.path), VirtualCard.load(out)


def fresh_login(browser, location, card):
    """Follow the authorization's redirect to a new card login, answer it, and come back."""
    assert "fresh=1" in location, location
    page = browser.get(location)
    link = re.search(r'data-card-link="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert answer(browser.application.test_client(), link.replace("&amp;", "&"),
                  card).status_code == 200
    done = browser.get(location)
    assert done.status_code == 302
    return done.headers["Location"]


def id_token_of(demo_app, setup, response, verifier):
    body = exchange(demo_app.test_client(), setup, code_from(response)["code"][0],
                    verifier).get_json()
    return jwt.decode(body["id_token"], options={"verify_signature": False})


def consent(browser, location):
    """Approve on the consent page the authorization redirect led back to."""
    page = browser.get(location)
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return browser.post(location, data={"csrf": csrf, "decision": "approve"},
                        headers={"Origin": "http://127.0.0.1:8000"})


def test_acr_values_a_phone_login_cannot_meet_asks_for_a_card_login(demo_app, phone_user,
                                                                    setup):
    browser, card, _phone = phone_user
    verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge, acr_values=CARD)
    first = browser.get("/oauth/authorize", query_string=params)
    assert first.status_code == 302
    back = fresh_login(browser, first.headers["Location"], card)
    claims = id_token_of(demo_app, setup, consent(browser, back), verifier)
    assert claims["acr"] == CARD  # the ID token tells the login that happened
    assert claims["amr"] == ["hwk", "sc", "pin", "mfa"]


def test_met_acr_values_need_no_new_login(demo_app, phone_user, setup):
    browser, _card, _phone = phone_user
    verifier, challenge = pkce()
    response = approve(browser, authorize_params(setup["public"], challenge,
                                                 acr_values=f"{CARD} {PHONE}"))
    assert id_token_of(demo_app, setup, response, verifier)["acr"] == PHONE


def test_voluntary_acr_values_still_unmet_after_a_new_login_go_on(demo_app, phone_user, setup):
    browser, _card, phone = phone_user
    verifier, challenge = pkce()
    first = browser.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, acr_values=CARD))
    back = fresh_login(browser, first.headers["Location"], phone)  # the phone again
    assert id_token_of(demo_app, setup, consent(browser, back), verifier)["acr"] == PHONE


def test_an_essential_acr_still_unmet_after_a_new_login_is_an_error(demo_app, phone_user,
                                                                     setup):
    browser, _card, phone = phone_user
    _verifier, challenge = pkce()
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [CARD]}}})
    first = browser.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, claims=claims))
    back = fresh_login(browser, first.headers["Location"], phone)
    refused = browser.get(back)
    assert refused.status_code == 302
    query = parse_qs(urlsplit(refused.headers["Location"]).query)
    assert query["error"] == ["unmet_authentication_requirements"]
    assert query["state"] == ["st-1"] and "code" not in query


def test_an_essential_acr_nobody_can_meet_is_refused_at_once(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    claims = json.dumps({"id_token": {"acr": {"essential": True, "value": "urn:other:loa4"}}})
    response = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, claims=claims))
    assert response.status_code == 302
    assert "error=unmet_authentication_requirements" in response.headers["Location"]
    # voluntary, the same value changes nothing: the card login goes on
    ok = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, acr_values="urn:other:loa4"))
    assert ok.status_code == 200


def test_login_hint_of_another_account_asks_for_a_new_login(demo_app, logged_in, setup):
    verifier, challenge = pkce()
    mine = id_token_of(demo_app, setup, approve(logged_in, authorize_params(
        setup["public"], challenge)), verifier)["sub"]
    _verifier, challenge = pkce()
    same = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, login_hint=mine, nonce="n-2"))
    assert same.status_code == 200, same.headers.get("Location")  # the hint is this account
    other = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, login_hint="someone-else", nonce="n-2"))
    assert other.status_code == 302 and "/login?" in other.headers["Location"]
    assert "fresh=1" in other.headers["Location"]
    silent = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, login_hint="someone-else", prompt="none", nonce="n-2"))
    assert "error=login_required" in silent.headers["Location"]


@pytest.mark.parametrize(("ui_locales", "lang"), [
    ("en-US ja", "en"), ("fr en", "en"), ("ja-JP", "ja"), ("de", "ja"), (None, "ja")])
def test_ui_locales_choose_the_language_shown_first(demo_app, logged_in, setup, ui_locales,
                                                    lang):
    _verifier, challenge = pkce()
    page = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, ui_locales=ui_locales))
    html = page.get_data(as_text=True)
    assert f'<html lang="{lang}">' in html
    first, second = ("Allow access", "アクセスの許可")[::1 if lang == "en" else -1]
    assert html.index(f"<h1><span lang=\"{lang}\">") >= 0
    assert html.index(first, html.index("<h1>")) < html.index(second, html.index("<h1>"))


def test_ui_locales_reach_the_login_page(demo_app, browser, setup):
    _verifier, challenge = pkce()
    response = browser.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge, ui_locales="en"))
    assert response.status_code == 302 and "lang=en" in response.headers["Location"]
    page = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert '<html lang="en">' in page
    assert page.index("Log in with your card") < page.index("マイナンバーカードでログイン")
