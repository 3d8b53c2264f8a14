"""A failed code exchange does not use the code up (nor revoke the grant); every failure is
audited, a few kill the code, and a real replay still revokes. The authorization request that
reaches a logged-in patient is audited too."""

from __future__ import annotations

import json

import sqlalchemy as sa
from card_support import events as raw_events
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce

from authz.audit.verify import verify_database
from authz.extensions import db as flask_db
from authz.oauth.models import AccessToken
from authz.oauth.models import Grant


def events(session, kind):
    return [json.loads(record) for record in raw_events(session, kind)]


def a_code(browser, setup):
    verifier, challenge = pkce()
    code = code_from(approve(browser, authorize_params(setup["public"], challenge)))["code"][0]
    return code, verifier


def test_a_wrong_verifier_leaves_the_code_for_the_right_one(demo_app, logged_in, setup):
    code, verifier = a_code(logged_in, setup)
    client = demo_app.test_client()
    wrong = exchange(client, setup, code, "x" * 43)
    assert (wrong.status_code, wrong.get_json()["error"]) == (400, "invalid_grant")
    right = exchange(client, setup, code, verifier)
    assert right.status_code == 200, right.get_json()
    with demo_app.app_context():
        session = flask_db.session()
        assert session.execute(sa.select(Grant.revoked_at)).scalar_one() is None
        failures = events(session, "oauth.code_exchange")
        assert len(failures) == 1
        assert failures[0]["outcome"] == "failure"
        assert failures[0]["reason"] == "invalid_grant"
        assert failures[0]["client"] == setup["public"]
        assert failures[0]["detail"]["attempt"] == 1
        assert verify_database(session).ok
    # after the success the code is used: presenting it again is a replay, and revokes
    again = exchange(client, setup, code, verifier)
    assert again.get_json()["error"] == "invalid_grant"
    with demo_app.app_context():
        session = flask_db.session()
        assert session.execute(sa.select(Grant.revoked_reason)).scalar_one() == "code_replayed"
        assert all(t.revoked_at is not None
                   for t in session.execute(sa.select(AccessToken)).scalars())


def test_three_failures_kill_the_code_without_revoking(demo_app, logged_in, setup):
    code, verifier = a_code(logged_in, setup)
    client = demo_app.test_client()
    for change in ({"code_verifier": "y" * 43}, {"redirect_uri": "https://app.example/other"},
                   {"code_verifier": None}):
        data = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": "https://app.example/cb", "client_id": setup["public"],
                "code_verifier": verifier, **change}
        response = client.post("/oauth/token",
                               data={k: v for k, v in data.items() if v is not None})
        assert response.status_code == 400
        assert response.get_json()["error"] in ("invalid_grant", "invalid_request")
    dead = exchange(client, setup, code, verifier)
    assert (dead.status_code, dead.get_json()["error"]) == (400, "invalid_grant")
    with demo_app.app_context():
        session = flask_db.session()
        assert session.execute(sa.select(Grant.revoked_at)).scalar_one() is None  # no replay
        assert session.execute(sa.select(sa.func.count()).select_from(AccessToken)).scalar() == 0
        attempts = [e["detail"]["attempt"] for e in events(session, "oauth.code_exchange")]
        assert attempts == [1, 2, 3]


def test_the_consent_page_audits_the_request_once_per_showing(demo_app, logged_in, browser,
                                                              setup):
    _verifier, challenge = pkce()
    page = logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge))
    assert page.status_code == 200
    with demo_app.app_context():
        session = flask_db.session()
        [event] = events(session, "oauth.authorization_requested")
        assert event["client"] == setup["public"]
        assert event["patient"].startswith("pat_")
        assert event["detail"] == {"scope": "openid profile offline_access", "pushed": 0,
                                   "details": 0}
        assert "name" not in str(event)  # identifiers only


def test_requests_that_reach_no_patient_are_not_audited(demo_app, setup):
    anonymous = demo_app.test_client()
    _verifier, challenge = pkce()
    for _ in range(3):
        response = anonymous.get("/oauth/authorize", query_string=authorize_params(
            setup["public"], challenge))
        assert response.status_code == 302  # to the card login
    bad = anonymous.get("/oauth/authorize", query_string={"client_id": "nobody"})
    assert bad.status_code == 400
    with demo_app.app_context():
        assert events(flask_db.session(), "oauth.authorization_requested") == []
