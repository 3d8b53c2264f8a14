"""The clickable demo story through the test client: wallet, clinic app, portal, auditor console."""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from conftest import ISSUER
from conftest import ORIGIN
from conftest import card_link
from conftest import csrf
from sqlalchemy import select

from authz import demo
from authz.consent.models import Consent
from authz.extensions import db as flask_db


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _decision(page) -> str:
    return re.search(r'data-decision="(\w+)"', page.get_data(as_text=True)).group(1)


def _login_through_wallet(browser, login_page, card="hanako.json"):
    """The login page's wallet link, the PIN form, back to the login page."""
    body = login_page.get_data(as_text=True)
    wallet_href = re.search(r'id="demo-wallet" href="([^"]+)"', body).group(1)
    wallet = browser.get(wallet_href.replace("&amp;", "&"))
    assert wallet.status_code == 200
    code = re.search(r'id="short-code">(\d{6})<', body).group(1)
    assert f'id="wallet-code">{code}<' in wallet.get_data(as_text=True)
    back = re.search(r'name="back" value="([^"]+)"', wallet.get_data(as_text=True)).group(1)
    signed = browser.post("/demo/wallet", headers=ORIGIN, data={
        "csrf": csrf(wallet), "link": card_link(login_page), "card": card,
        "pin": demo.DEMO_PIN, "password": demo.DEMO_PASSWORD,
        "back": back.replace("&amp;", "&")})
    assert signed.status_code == 200, signed.get_data(as_text=True)
    assert 'data-result="accepted"' in signed.get_data(as_text=True)
    again = re.search(r'id="wallet-back" href="([^"]+)"', signed.get_data(as_text=True))
    return again.group(1).replace("&amp;", "&")


def _clinic_consent(app) -> str:
    with app.app_context():
        found = flask_db.session.execute(select(Consent.id).where(
            Consent.patient_id != demo.DEMO_PATIENT, Consent.status == "active")).scalars().all()
        flask_db.session.remove()
    assert len(found) == 1
    return found[0]


def _clinic_reads(app, consent_id):
    """The patient's access history: the clinic's reads (what the portal page lists)."""
    from authz.audit import history

    with app.app_context():
        session = flask_db.session()
        consent = session.get(Consent, consent_id)
        entries, _cursor = history.history(session, consent.patient_id,
                                           history.parse_query({"kind": "access"}))
        flask_db.session.remove()
    return [e for e in entries if e["institution"]["id"] == consent.institution_id]


def test_the_whole_story_clicks_through(seeded):
    browser = seeded.test_client()
    landing = browser.get("/")
    assert landing.status_code == 200
    for href in ("/demo/clinic", "/demo/wallet", "/portal", "/auditor"):
        assert f'href="{href}' in landing.get_data(as_text=True)

    clinic = browser.get("/demo/clinic")
    started = browser.post("/demo/clinic/start", headers=ORIGIN, data={"csrf": csrf(clinic)})
    assert started.status_code == 303
    location = started.headers["Location"]
    assert location.startswith(f"{ISSUER}/oauth/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and "authorization_details" in query

    to_login = browser.get(_path(location))
    assert to_login.status_code == 302 and "/login" in to_login.headers["Location"]
    login_page = browser.get(_path(to_login.headers["Location"]))
    assert login_page.status_code == 200
    back = _login_through_wallet(browser, login_page)

    to_authorize = browser.get(back)
    assert to_authorize.status_code == 302, to_authorize.get_data(as_text=True)
    consent_page = browser.get(_path(to_authorize.headers["Location"]))
    assert consent_page.status_code == 200
    approved = browser.post(_path(to_authorize.headers["Location"]), headers=ORIGIN,
                            data={"csrf": csrf(consent_page), "decision": "approve"})
    assert approved.status_code == 302
    callback = approved.headers["Location"]
    assert callback.startswith(f"{ISSUER}/demo/clinic/callback?")

    first = browser.get(_path(callback))
    assert first.status_code == 200, first.get_data(as_text=True)
    assert _decision(first) == "permit"
    assert browser.get(_path(callback)).status_code == 400  # the sign-in is finished

    consent_id = _clinic_consent(seeded)
    confirm = browser.get(f"/portal/consents/{consent_id}/revoke")
    assert confirm.status_code == 200
    proposal = re.search(r'name="proposal" value="([^"]+)"',
                         confirm.get_data(as_text=True)).group(1)
    revoked = browser.post("/portal/apply", headers=ORIGIN, data={
        "csrf": csrf(confirm), "proposal": proposal, "confirm": "revoke"})
    assert revoked.status_code == 303

    clinic = browser.get("/demo/clinic")
    second = browser.post("/demo/clinic/read", headers=ORIGIN, data={"csrf": csrf(clinic)})
    assert second.status_code == 200
    assert _decision(second) == "deny"

    history = browser.get("/portal/history")
    assert history.status_code == 200
    reads = _clinic_reads(seeded, consent_id)
    assert [r["outcome"] for r in reads] == ["deny", "permit"]  # newest first
    # the patient is no auditor: the console offers a login with an auditor's card
    refused = browser.get("/auditor")
    assert refused.status_code == 403
    login_href = re.search(r'id="auditor-login" href="([^"]+)"',
                           refused.get_data(as_text=True)).group(1).replace("&amp;", "&")
    login_page = browser.get(login_href)
    back = _login_through_wallet(browser, login_page, card=demo.AUDITOR_CARD)
    assert browser.get(back).headers["Location"] == "/auditor/"
    console = browser.get("/auditor")
    assert console.status_code == 200
    verified = browser.post("/auditor/verify", headers=ORIGIN, data={"csrf": csrf(console)})
    assert 'id="audit-verdict" data-ok="true"' in verified.get_data(as_text=True)
