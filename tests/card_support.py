"""Helpers for card flows in tests: sign like the card app, drive the API like a browser."""

from __future__ import annotations

import base64
import re

import sqlalchemy as sa

from authz.audit.models import AuditEvent
from authz.sim.card import AUTH_CERT
from authz.sim.card import AUTH_KEY
from authz.sim.card import AUTH_PIN
from authz.sim.card import SIGN_CERT
from authz.sim.card import SIGN_KEY
from authz.sim.card import SIGN_PIN
from authz.sim.card import digest_info

PIN, PASSWORD = "1234", "ABCD1234"
ADULT = {"name": "山田\u3000花子", "birthdate": "1985-03-15", "gender": "female",
         "address": "東京都千代田区霞が関一丁目1番1号"}


def b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def start(browser, purpose="login"):
    """Create a card transaction as the browser's page would."""
    response = browser.post("/jpki/transactions", json={"purpose": purpose})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def card_path(link):
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


def sign(card, step, tbs, *, pin=PIN, password=PASSWORD):
    """What the card app posts for ``step``: certificate and signature over ``tbs``."""
    card.select_ap()
    if step == "login":
        card.verify(AUTH_PIN, pin)
        cert, key = card.read(AUTH_CERT), AUTH_KEY
    else:
        card.verify(SIGN_PIN, password)
        cert, key = card.read(SIGN_CERT), SIGN_KEY
    signature = card.sign(key, digest_info(tbs.encode()))
    return {"cert": b64(cert), "signature": b64(signature), "tbs": tbs, "token": card.token,
            "uv": "pin"}


def answer(client, link, card, **kw):
    """Play the card app against ``link`` through a test client; returns the last response."""
    path = card_path(link)
    view = client.get(path).get_json()
    response = client.post(path, json=sign(card, view["step"], view["tbs"], **kw))
    body = response.get_json()
    if response.status_code == 200 and body["status"] == "proofing_required":
        if not card.has(SIGN_PIN):
            return client.post(path, json={"decline": "no_signature_certificate"})
        response = client.post(path, json=sign(card, "proofing", body["tbs"], **kw))
    return response


def events(db_session, kind):
    return db_session.execute(sa.select(AuditEvent.record).where(AuditEvent.type == kind)
                              .order_by(AuditEvent.seq)).scalars().all()


def login(browser, card, **kw):
    """A full browser login: the page, the card (a client without cookies), the page again."""
    page = browser.get("/login")
    link = re.search(r'data-card-link="([^"]+)"', page.get_data(as_text=True)).group(1)
    card_client = browser.application.test_client()
    assert answer(card_client, link.replace("&amp;", "&"), card, **kw).status_code == 200
    return browser.get("/login")
