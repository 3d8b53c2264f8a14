"""Tokens follow consent: introspection turns a token inactive once its consent is gone."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce
from test_introspection import RECORDS
from test_introspection import introspect
from test_introspection import servers  # noqa: F401 - fixture
from test_rar import details

from authz.consent import service
from authz.consent.models import Consent
from authz.database import utcnow
from authz.extensions import db as flask_db


@pytest.mark.parametrize("change", ["revoke", "narrow", "deny"])
def test_a_token_is_inactive_once_its_consent_is_gone(demo_app, logged_in, setup, servers,  # noqa: F811
                                                      change):
    verifier, challenge = pkce()
    params = authorize_params(setup["public"], challenge, resource=RECORDS,
                              authorization_details=details(
                                  setup, categories=("medication", "lab_results")))
    query = code_from(approve(logged_in, params))
    tokens = exchange(demo_app.test_client(), setup, query["code"][0], verifier).get_json()
    token = tokens["access_token"]
    client = demo_app.test_client()
    assert introspect(client, servers, RECORDS, token).get_json()["active"] is True

    with demo_app.app_context():
        session = flask_db.session()
        consent = session.execute(select(Consent)).scalar_one()
        patient, now = consent.patient_id, utcnow()
        if change == "revoke":
            service.revoke(session, consent.id, patient_id=patient, now=now)
        elif change == "narrow":
            service.narrow(session, consent.id, patient_id=patient, categories=["medication"],
                           now=now)
        else:
            service.grant(session, patient_id=patient, institution_id=None, purpose="any",
                          categories=["lab_results"], end=None, decision="deny", now=now,
                          capture=service.Capture(method="demo", acr=None, auth_time=None,
                                                  provenance={"source": "test"}))
        flask_db.session.remove()
    assert introspect(client, servers, RECORDS, token).get_json() == {"active": False}
