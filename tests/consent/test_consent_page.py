"""Consent captured on the authorization page: records created, rules shown, fresh login."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import timedelta

from card_support import login
from conftest import ISSUER
from conftest import REDIRECT
from conftest import b64
from sqlalchemy import func
from sqlalchemy import select

from authz.consent.models import Consent
from authz.consent.models import PairwiseSubject
from authz.extensions import db as flask_db


def _params(world, kind, categories, purpose="treatment_visit", **extra):
    verifier = secrets.token_urlsafe(48)
    return {"response_type": "code", "client_id": world.web_clients[kind],
            "redirect_uri": REDIRECT, "scope": "openid", "state": "s", "nonce": "n",
            "code_challenge": b64(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
            "authorization_details": json.dumps([{
                "type": "health_record_access", "institution": world.institutions[kind],
                "purpose": purpose, "categories": categories, **extra}])}


def _page(browser, params):
    page = browser.get("/oauth/authorize", query_string=params)
    assert page.status_code == 200, page.headers.get("Location")
    text = page.get_data(as_text=True)
    return text, re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def test_approving_details_records_one_consent_per_detail(demo_app, browser, issue, world):
    login(browser, issue())
    params = _params(world, "pharmacy", ["medication", "diagnoses", "infection"],
                     purpose="dispensing", period={"end": "2027-06-01T00:00:00Z"})
    text, csrf = _page(browser, params)
    # The rules never let a pharmacy see diagnoses or infection for dispensing: shown as
    # refused, without a box to tick.
    assert 'value="0:medication"' in text
    assert 'value="0:diagnoses"' not in text and 'value="0:infection"' not in text
    assert "同意の対象外" in text
    answer = browser.post("/oauth/authorize", query_string=params,
                          data={"csrf": csrf, "decision": "approve", "details_form": "1",
                                "detail": ["0:medication", "0:diagnoses", "0:infection"]},
                          headers={"Origin": ISSUER})
    assert answer.status_code == 302
    with demo_app.app_context():
        consents = flask_db.session.execute(select(Consent)).scalars().all()
        assert len(consents) == 1
        consent = consents[0]
        assert consent.institution_id == world.institutions["pharmacy"]
        assert consent.categories == ["medication"]
        assert consent.purpose == "dispensing" and consent.method == "card_consent_page"
        assert consent.provenance["source"] == "consent_page"
        assert flask_db.session.execute(
            select(func.count()).select_from(PairwiseSubject)).scalar() == 1
        flask_db.session.remove()


def test_a_stale_login_is_sent_back_to_the_card(demo_app, browser, issue, world, monkeypatch):
    login(browser, issue())
    from authz.consent import capture
    monkeypatch.setattr(capture, "FRESH_LOGIN", timedelta(seconds=-1))
    page = browser.get("/oauth/authorize", query_string=_params(world, "clinic", ["medication"]))
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert "fresh=1" in page.headers["Location"]
