"""Rich Authorization Requests (RFC 9396): health_record_access shown item by item."""

from __future__ import annotations

import json
import re

import jwt
import pytest
from oauth_support import ISSUER
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce


def details(setup, categories=("medication", "infection"), **extra):
    return json.dumps([{"type": "health_record_access", "institution": setup["institution"],
                        "purpose": "treatment_visit", "categories": list(categories),
                        **extra}])


def page_and_csrf(browser, params):
    page = browser.get("/oauth/authorize", query_string=params)
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    text = page.get_data(as_text=True)
    return text, re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def test_sensitive_categories_are_shown_but_never_preselected(demo_app, logged_in, setup):
    _verifier, challenge = pkce()
    text, _csrf = page_and_csrf(logged_in, authorize_params(
        setup["public"], challenge, authorization_details=details(setup)))
    medication = re.search(r'<input type="checkbox" name="detail" value="0:medication"[^>]*>',
                           text).group(0)
    infection = re.search(r'<input type="checkbox" name="detail" value="0:infection"[^>]*>',
                          text).group(0)
    assert "checked" in medication
    assert "checked" not in infection
    assert "感染症" in text
    assert "薬剤情報" in text
    assert "受診中の診療" in text


@pytest.mark.parametrize(("form", "expected"), [
    ({}, ["medication"]),  # a bare approve: what was pre-selected
    ({"details_form": "1", "detail": ["0:medication", "0:infection"]},
     ["medication", "infection"]),  # the patient ticked the sensitive one too
    ({"details_form": "1", "detail": ["0:infection"]}, ["infection"]),
])
def test_approved_details_reach_the_tokens(demo_app, logged_in, setup, form, expected):
    verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge,
                              authorization_details=details(setup))
    _text, csrf = page_and_csrf(logged_in, params)
    response = logged_in.post("/oauth/authorize", query_string=params,
                              data={"csrf": csrf, "decision": "approve", **form},
                              headers={"Origin": ISSUER})
    code = code_from(response)["code"][0]
    tokens = exchange(demo_app.test_client(), setup, code, verifier).get_json()
    assert tokens["authorization_details"][0]["categories"] == expected
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["authorization_details"] == tokens["authorization_details"]


@pytest.mark.parametrize("bad", [
    "not json",
    "[]",
    json.dumps([{"type": "other"}]),
    json.dumps([{"type": "health_record_access", "\"évil\\": 1}]),
    json.dumps([{"type": "health_record_access", "institution": "*",
                 "purpose": "treatment_visit", "categories": ["medication"]}]),
    json.dumps([{"type": "health_record_access", "institution": "INSTITUTION",
                 "purpose": "marketing", "categories": ["medication"]}]),
    json.dumps([{"type": "health_record_access", "institution": "INSTITUTION",
                 "purpose": "treatment_visit", "categories": ["everything"]}]),
    json.dumps([{"type": "health_record_access", "institution": "INSTITUTION",
                 "purpose": "treatment_visit", "categories": ["medication"],
                 "period": {"end": "tomorrow"}}]),
])
def test_invalid_details_are_refused(demo_app, logged_in, setup, bad):
    _verifier, challenge = pkce()
    response = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge,
        authorization_details=bad.replace("INSTITUTION", setup["institution"])))
    assert code_from(response)["error"] == ["invalid_authorization_details"]
    pushed = demo_app.test_client().post("/oauth/par", data=authorize_params(
        setup["public"], challenge,
        authorization_details=bad.replace("INSTITUTION", setup["institution"])))
    assert pushed.status_code == 400
    assert pushed.get_json()["error"] == "invalid_authorization_details"
