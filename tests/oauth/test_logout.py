"""RP-initiated logout: confirmation, the session ends, back to a registered URI only."""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from oauth_support import ISSUER
from oauth_support import REDIRECT
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce


def id_token(demo_app, browser, setup):
    verifier, challenge = pkce()
    code = code_from(approve(browser, authorize_params(setup["public"], challenge)))["code"][0]
    return exchange(demo_app.test_client(), setup, code, verifier).get_json()["id_token"]


def confirm(browser, params):
    page = browser.get("/oauth/logout", query_string=params)
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return browser.post("/oauth/logout", query_string=params, data={"csrf": csrf},
                        headers={"Origin": ISSUER})


def test_logout_ends_the_session_and_returns_to_the_client(demo_app, logged_in, setup):
    hint = id_token(demo_app, logged_in, setup)
    done = confirm(logged_in, {"id_token_hint": hint, "post_logout_redirect_uri": REDIRECT,
                               "state": "bye"})
    assert done.status_code == 302
    location = urlsplit(done.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert parse_qs(location.query)["state"] == ["bye"]
    assert logged_in.get("/account").status_code == 302  # no session any more


def test_an_unregistered_return_uri_is_never_followed(demo_app, logged_in, setup):
    hint = id_token(demo_app, logged_in, setup)
    done = confirm(logged_in, {"id_token_hint": hint,
                               "post_logout_redirect_uri": "https://evil.example/"})
    assert done.status_code == 200
    assert "Location" not in done.headers
    assert "ログアウトしました" in done.get_data(as_text=True)


def test_logout_needs_the_confirmation_form(demo_app, logged_in, setup):
    forged = logged_in.post("/oauth/logout", data={"csrf": "forged"},
                            headers={"Origin": ISSUER})
    assert forged.status_code == 400
    assert logged_in.get("/account").status_code == 200  # still logged in
