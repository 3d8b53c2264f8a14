"""Card login and proofing through the HTTP API, with the real simulator and real crypto."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from card_support import PASSWORD
from card_support import answer
from card_support import card_path
from card_support import events
from card_support import login
from card_support import sign
from card_support import start

from authz.audit.verify import verify_database
from authz.extensions import db as flask_db
from authz.identity.models import Account
from authz.identity.models import Verification
from authz.sim import lifecycle
from authz.sim.card import SIGN_PIN
from authz.sim.card import VirtualCard


def test_first_login_proofs_and_creates_a_verified_account(demo_app, browser, issue):
    card = issue()
    txn = start(browser)
    assert txn["link"].startswith("http://127.0.0.1:8000/jpki/transactions/")
    assert f"code={txn['short_code']}" in txn["link"]
    card_client = demo_app.test_client()
    response = answer(card_client, txn["link"], card)
    assert response.get_json() == {"status": "accepted"}
    assert browser.get(f"/jpki/transactions/{txn['id']}").get_json()["status"] == "accepted"
    with demo_app.app_context():
        session = flask_db.session()
        account = session.execute(sa.select(Account)).scalar_one()
        assert account.assurance == "verified"
        assert session.execute(sa.select(sa.func.count()).select_from(Verification)).scalar() == 1
        assert verify_database(session).ok


def test_browser_login_page_logs_in_after_the_card_answered(demo_app, browser, issue):
    done = login(browser, issue())
    assert done.status_code == 302
    assert done.headers["Location"].endswith("/account")
    page = browser.get("/account").get_data(as_text=True)
    assert "山田 花子" in page
    assert "urn:mdx:acr:jpki-auth" in page


def test_second_login_needs_only_the_pin(demo_app, browser, issue):
    card = issue()
    login(browser, card)
    other = demo_app.test_client()
    txn = start(other)
    path = card_path(txn["link"])
    view = demo_app.test_client().get(path).get_json()
    response = demo_app.test_client().post(path, json=sign(card, "login", view["tbs"]))
    assert response.get_json() == {"status": "accepted"}


def test_under_15_gets_a_login_only_account(demo_app, browser, issue):
    child = issue(birthdate="2015-06-01", password=None)
    assert not child.has(SIGN_PIN)
    assert login(browser, child).status_code == 302
    with demo_app.app_context():
        account = flask_db.session().execute(sa.select(Account)).scalar_one()
        assert account.assurance == "login_only"
        assert flask_db.session().execute(sa.select(Verification)).first() is None


def test_move_reduces_assurance_until_reproofing(demo_app, browser, issue, sim):
    card = issue()
    login(browser, card)
    lifecycle.move(sim, card, address="大阪府大阪市北区梅田一丁目1番1号", password=PASSWORD)
    card = VirtualCard.load(card.path)
    second = demo_app.test_client()
    assert login(second, card).status_code == 302
    with demo_app.app_context():
        account = flask_db.session().execute(sa.select(Account)).scalar_one()
        assert account.assurance == "reproofing_required"
    page = second.get("/account").get_data(as_text=True)
    assert "山田 花子" not in page  # verified claims withheld until re-proofing
    # re-proofing with the new signature certificate restores assurance, same account
    third = demo_app.test_client()
    txn = start(third, "proofing")
    assert answer(demo_app.test_client(), txn["link"], card).get_json() == {"status": "accepted"}
    with demo_app.app_context():
        session = flask_db.session()
        account = session.execute(sa.select(Account)).scalar_one()
        assert account.assurance == "verified"
        history = session.execute(sa.select(Verification.current)).scalars().all()
        assert sorted(history) == [False, True]
        changed = [json.loads(r) for r in events(session, "identity.proofed")]
        assert changed[-1]["detail"]["attributes_changed"] == 1


def test_renewal_keeps_the_same_account(demo_app, browser, issue, sim):
    card = issue()
    login(browser, card)
    lifecycle.renew(sim, card, password=PASSWORD)
    card = VirtualCard.load(card.path)
    assert login(demo_app.test_client(), card).status_code == 302
    with demo_app.app_context():
        assert flask_db.session().execute(
            sa.select(sa.func.count()).select_from(Account)).scalar() == 1


def test_another_browser_cannot_see_or_complete_the_transaction(demo_app, browser, issue):
    txn = start(browser)
    intruder = demo_app.test_client()
    assert intruder.get(f"/jpki/transactions/{txn['id']}").status_code == 404
    answer(demo_app.test_client(), txn["link"], issue())
    assert intruder.get("/login").status_code == 200  # a login page of its own, not logged in
    assert intruder.get("/account").status_code == 302


@pytest.mark.parametrize("mutation", ["wrong_code", "replay", "wrong_audience", "wrong_purpose"])
def test_refused_responses_are_audited_and_change_nothing(demo_app, browser, issue, mutation):
    card = issue()
    txn = start(browser)
    path = card_path(txn["link"])
    client = demo_app.test_client()
    view = client.get(path).get_json()
    tbs = view["tbs"]
    if mutation == "wrong_audience":
        tbs = tbs.replace("http://127.0.0.1:8000", "https://evil.example")
    if mutation == "wrong_purpose":
        tbs = tbs.replace('"purpose":"login"', '"purpose":"proofing"')
    body = sign(card, "login", tbs)
    if mutation == "wrong_code":
        code = txn["short_code"]
        path = path.replace(f"code={code}", f"code={(int(code) + 1) % 10**6:06d}")
    if mutation == "replay":
        first = client.post(path, json=body)
        assert first.get_json()["status"] == "proofing_required"
    response = client.post(path, json=body)
    assert response.status_code in (400, 404, 410)
    problem = response.get_json()
    assert "reason" not in json.dumps(problem)
    with demo_app.app_context():
        session = flask_db.session()
        if mutation != "replay":
            assert session.execute(sa.select(Account)).first() is None
        failures = [json.loads(r) for r in events(session, "identity.card_response")
                    if json.loads(r)["outcome"] == "failure"]
        assert failures, "every response the service received is audited"
        assert verify_database(session).ok


def test_revoked_authentication_certificate_is_refused(demo_app, browser, issue, sim):
    card = issue()
    lifecycle.revoke(sim, card, "auth", "keyCompromise")
    txn = start(browser)
    response = answer(demo_app.test_client(), txn["link"], card)
    assert response.status_code == 400
    with demo_app.app_context():
        reasons = [json.loads(r).get("reason") for r in
                   events(flask_db.session(), "identity.card_response")]
        assert "revoked:key_compromise" in reasons


def test_transaction_creation_needs_json_and_same_origin(demo_app, browser):
    assert browser.post("/jpki/transactions", data="purpose=login").status_code == 400
    cross = browser.post("/jpki/transactions", json={"purpose": "login"},
                         headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert browser.post("/jpki/transactions", json={"purpose": "admin"}).status_code == 400


def test_card_login_is_unavailable_without_configuration(client):
    response = client.post("/jpki/transactions", json={"purpose": "login"})
    assert response.status_code == 503


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "/\t/evil.example/", "/\\evil.example",
    "/\n/evil.example", "javascript:alert(1)", "/ok path", "／evil",
])
def test_login_never_redirects_off_site(target):
    from authz.web.pages import safe_next

    assert safe_next("/account?x=1") == "/account?x=1"
    from flask import Flask

    app = Flask(__name__)
    app.add_url_rule("/account", "web.account", lambda: "")
    with app.test_request_context():
        assert safe_next(target) == "/account"
