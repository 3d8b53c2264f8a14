"""The decision API's behaviour: deny directives, emergency, disaster, self view, batches,
and the audit event behind every decision."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest
from conftest import REDIRECT
from conftest import bearer
from sqlalchemy import func
from sqlalchemy import select

from authz.audit.models import AuditEvent
from authz.consent.models import EmergencyAccess
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.policy.models import DisasterDeclaration


def events(app, kind):
    with app.app_context():
        records = [json.loads(r) for r in flask_db.session.execute(
            select(AuditEvent.record).where(AuditEvent.type == kind)
            .order_by(AuditEvent.seq)).scalars()]
        flask_db.session.remove()
    return records


def emergency_rows(app):
    with app.app_context():
        rows = flask_db.session.execute(select(EmergencyAccess.id, EmergencyAccess.reason,
                                               EmergencyAccess.practitioner)).all()
        flask_db.session.remove()
    return [tuple(row) for row in rows]


def by_category(answer):
    return {r["category"]: r for r in answer["results"]}


def decide(browser, token, body):
    response = browser.post("/v1/decisions", headers=bearer(token), json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def grant(browser, token, **body):
    response = browser.post("/v1/me/consents", headers=bearer(token), json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def clinic(world, patient):
    return world.system_token(patient[0], "clinic")


@pytest.fixture
def hospital(world, patient):
    world.know(patient[2], "hospital")
    return world.system_token(patient[0], "hospital")


def test_every_decision_is_audited_with_its_policy_version(demo_app, world, patient, clinic):
    browser, token, account = patient
    consent = grant(browser, token, institution=world.institutions["clinic"],
                    purpose="treatment_visit", categories=["medication"])
    answer = decide(browser, clinic, world.ask(account, "clinic",
                                                categories=["medication", "surgery"]))
    assert len(answer["policy_version"]) == 64
    assert answer["decision_id"].startswith("dcs_")
    results = by_category(answer)
    assert results["medication"] == {
        "category": "medication", "decision": "permit", "reason": "consent",
        "rule": "physician-treatment", "consent_ids": [consent["id"]],
        "obligations": {"lookback_days": 1095}}
    assert results["surgery"]["decision"] == "deny"
    assert results["surgery"]["reason"] == "no_consent"
    assert results["surgery"]["consent_ids"] == []

    denied = decide(browser, clinic, world.ask(account, "clinic", categories=["surgery"]))
    audited = events(demo_app, "decision.evaluated")
    assert [e["outcome"] for e in audited] == ["permit", "deny"]
    for event, sent in zip(audited, (answer, denied), strict=True):
        assert event["policy_version"] == sent["policy_version"]
        assert event["detail"]["decision_id"] == sent["decision_id"]
        assert event["client"] == world.systems["clinic"]
        assert event["institution"] == world.institutions["clinic"]
        assert event["patient"] == account  # the account id, never the pairwise sub
        assert event["detail"]["practitioner"] == "dr-001"
        assert event["detail"]["role"] == "physician"
    assert audited[0]["detail"]["permitted"] == ["medication"]
    assert audited[0]["detail"]["denied"] == ["surgery"]
    assert audited[0]["detail"]["consent_ids"] == [consent["id"]]


def test_nurse_sees_less_than_a_physician(demo_app, world, patient, clinic):
    browser, token, account = patient
    grant(browser, token, institution=world.institutions["clinic"], purpose="treatment_visit",
          categories=["medication", "surgery", "infection"])
    answer = by_category(decide(browser, clinic, world.ask(
        account, "clinic", role="nurse", categories=["medication", "surgery", "infection"])))
    assert {c: r["decision"] for c, r in answer.items()} == {
        "medication": "permit", "surgery": "deny", "infection": "deny"}
    assert answer["surgery"]["reason"] == "not_permitted"
    physician = by_category(decide(browser, clinic, world.ask(
        account, "clinic", categories=["medication", "surgery", "infection"])))
    assert {r["decision"] for r in physician.values()} == {"permit"}


def test_consent_for_one_purpose_does_not_permit_another(demo_app, world, patient, clinic):
    browser, token, account = patient
    grant(browser, token, institution=world.institutions["clinic"], purpose="treatment_visit",
          categories=["medication"])
    answer = decide(browser, clinic, world.ask(account, "clinic",
                                                purpose="treatment_referral"))
    assert answer["results"][0]["decision"] == "deny"
    # nor does consent to the clinic permit the pharmacy
    pharmacy = world.system_token(browser, "pharmacy")
    world.know(account, "pharmacy")
    answer = decide(browser, pharmacy, world.ask(account, "pharmacy", role="pharmacist",
                                                  purpose="dispensing"))
    assert answer["results"][0]["decision"] == "deny"


def test_explicit_deny_directive_overrides_a_permit(demo_app, world, patient, clinic):
    browser, token, account = patient
    permit = grant(browser, token, institution=world.institutions["clinic"],
                   purpose="treatment_visit", categories=["medication", "lab_results"])
    ask = world.ask(account, "clinic", categories=["medication", "lab_results"])
    assert {r["decision"] for r in decide(browser, clinic, ask)["results"]} == {"permit"}

    deny = grant(browser, token, decision="deny", categories=["medication"])
    assert deny["institution"] is None and deny["decision"] == "deny"
    answer = by_category(decide(browser, clinic, ask))
    assert answer["medication"]["decision"] == "deny"
    assert answer["medication"]["reason"] == "patient_deny"
    assert answer["medication"]["rule"] == "patient-deny"
    assert answer["medication"]["consent_ids"] == [deny["id"]]
    assert answer["lab_results"]["decision"] == "permit"
    assert answer["lab_results"]["consent_ids"] == [permit["id"]]

    # revoking the directive restores the permit
    browser.post(f"/v1/me/consents/{deny['id']}/revoke", headers=bearer(token))
    assert by_category(decide(browser, clinic, ask))["medication"]["decision"] == "permit"


def test_deny_directive_for_one_purpose_only(demo_app, world, patient, clinic):
    browser, token, account = patient
    grant(browser, token, institution=world.institutions["clinic"], purpose="treatment_visit",
          categories=["medication"])
    grant(browser, token, decision="deny", purpose="secondary_use", categories=["medication"])
    answer = decide(browser, clinic, world.ask(account, "clinic"))
    assert answer["results"][0]["decision"] == "permit"


EMERGENCY = {"purpose": "emergency", "role": "emergency_physician", "reason": "unconscious"}


def test_emergency_access(demo_app, world, patient, hospital):
    browser, token, account = patient
    # The patient denied medication, surgery and lab results to everyone.
    deny = grant(browser, token, decision="deny",
                 categories=["medication", "surgery", "lab_results", "mental_health"])
    ask = world.ask(account, "hospital", **EMERGENCY,
                    categories=["medication", "surgery", "lab_results", "mental_health",
                                "drug_allergy"])
    first = decide(browser, hospital, ask)
    results = by_category(first)
    # the emergency summary overrides the deny; nothing else does
    for category in ("medication", "surgery", "drug_allergy"):
        assert results[category]["decision"] == "permit", category
        assert results[category]["reason"] == "emergency_access"
        assert results[category]["rule"] == "emergency-summary"
        assert results[category]["obligations"]["notify_patient"] == 1
        assert results[category]["obligations"]["auditor_review"] == 1
    assert results["medication"]["obligations"]["lookback_days"] == 90
    for category in ("lab_results", "mental_health"):
        assert results[category]["decision"] == "deny"
        assert results[category]["reason"] == "patient_deny"
        assert results[category]["consent_ids"] == [deny["id"]]
    window = first["emergency_access"]
    assert window["id"].startswith("emg_")
    assert emergency_rows(demo_app) == [(window["id"], "unconscious", "dr-001")]

    # a second decision within 24 hours reuses the window
    second = decide(browser, hospital, {**ask, "practitioner": "dr-002",
                                        "reason": "life_threatening"})
    assert second["emergency_access"] == window
    assert len(emergency_rows(demo_app)) == 1
    opened = events(demo_app, "emergency.access_opened")
    assert len(opened) == 1 and opened[0]["reason"] == "unconscious"
    audited = events(demo_app, "decision.evaluated")
    assert [e["detail"]["emergency"] for e in audited] == [1, 1]
    assert audited[0]["detail"]["emergency_access_id"] == window["id"]
    assert audited[0]["detail"]["emergency_reason"] == "unconscious"


def test_emergency_window_closes_after_24_hours(demo_app, world, patient, hospital):
    browser, _, account = patient
    ask = world.ask(account, "hospital", **EMERGENCY)
    first = decide(browser, hospital, ask)["emergency_access"]
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            session.get(EmergencyAccess, first["id"]).expires_at = utcnow() - timedelta(
                seconds=1)
        flask_db.session.remove()
    second = decide(browser, hospital, ask)["emergency_access"]
    assert second["id"] != first["id"]
    assert len(emergency_rows(demo_app)) == 2


def test_emergency_only_for_the_emergency_role_and_purpose(demo_app, world, patient, hospital):
    browser, _, account = patient
    # the emergency physician outside an emergency: nothing without consent
    answer = decide(browser, hospital, world.ask(account, "hospital",
                                                 role="emergency_physician"))
    assert answer["results"][0]["decision"] == "deny"
    # a physician asking with the emergency purpose: no emergency access
    answer = decide(browser, hospital, world.ask(account, "hospital", purpose="emergency",
                                                 reason="unconscious"))
    assert answer["results"][0]["decision"] == "deny"
    assert "emergency_access" not in answer
    assert emergency_rows(demo_app) == []


def _declare(app, institutions, *, start=None, end=None, ended=False):
    now = utcnow()
    with app.app_context():
        session = flask_db.session()
        with write(session):
            session.add(DisasterDeclaration(
                id=f"dis_{secrets.token_hex(6)}", institutions=institutions,
                start=start or now - timedelta(hours=1), end=end or now + timedelta(hours=6),
                reason="test", ended_at=now if ended else None))
        flask_db.session.remove()


def test_disaster_mode_needs_a_declaration(demo_app, world, patient, hospital):
    browser, token, account = patient
    ask = world.ask(account, "hospital", purpose="disaster",
                    categories=["medication", "lab_results"])
    assert {r["decision"] for r in decide(browser, hospital, ask)["results"]} == {"deny"}
    # declarations that do not cover the hospital now change nothing
    _declare(demo_app, [world.institutions["clinic"]])
    _declare(demo_app, [world.institutions["hospital"]],
             start=utcnow() - timedelta(hours=3), end=utcnow() - timedelta(hours=1))
    _declare(demo_app, [world.institutions["hospital"]], ended=True)
    _declare(demo_app, [world.institutions["hospital"]],
             start=utcnow() + timedelta(hours=1), end=utcnow() + timedelta(hours=3))
    assert {r["decision"] for r in decide(browser, hospital, ask)["results"]} == {"deny"}

    _declare(demo_app, [world.institutions["clinic"], world.institutions["hospital"]])
    answer = by_category(decide(browser, hospital, ask))
    assert answer["medication"]["decision"] == "permit"
    assert answer["medication"]["reason"] == "disaster_mode"
    assert answer["medication"]["rule"] == "disaster-summary"
    assert answer["medication"]["consent_ids"] == []
    assert answer["lab_results"]["decision"] == "deny"  # not in the disaster summary
    assert events(demo_app, "decision.evaluated")[-1]["detail"]["mode"] == "disaster"

    # an explicit patient deny still wins in a disaster
    grant(browser, token, decision="deny", categories=["medication"])
    assert by_category(decide(browser, hospital, ask))["medication"]["decision"] == "deny"


@pytest.fixture
def portal(demo_app, world):
    """A confidential patient-portal app that may ask for the patient's own self view."""
    world.add_system("portal", "portal", "openid consents decisions", redirect_uris=[REDIRECT])
    return world


def test_self_view_only_through_the_patients_own_token(demo_app, portal, patient,
                                                       other_patient):
    world = portal
    browser, _, account = patient
    own = world.patient_token(browser, scope="openid decisions", client="portal")
    sub = world.pairwise_at(account, world.portal)
    ask = {"patient": sub, "categories": ["diagnoses", "mental_health"], "action": "read",
           "purpose": "self_view", "role": "patient", "practitioner": "self"}
    answer = decide(browser, own, ask)
    for result in answer["results"]:
        assert result["decision"] == "permit"
        assert result["reason"] == "self_view"
        assert result["obligations"]["exclude_undisclosed_to_patient"] == 1

    # the same patient role about someone else, or from the portal's system token: refused
    other_browser, _, other_account = other_patient
    theirs = world.patient_token(other_browser, scope="openid decisions", client="portal")
    response = browser.post("/v1/decisions", headers=bearer(theirs), json=ask)
    assert response.status_code == 403
    assert response.get_json()["type"].endswith("/problems/role_not_registered")
    system = world.system_token(browser, "portal", scope="decisions")
    response = browser.post("/v1/decisions", headers=bearer(system), json=ask)
    assert response.status_code == 403
    # and the patient's own token cannot ask as a physician
    response = browser.post("/v1/decisions", headers=bearer(own),
                            json={**ask, "role": "physician", "purpose": "treatment_visit"})
    assert response.status_code == 403
    assert [e["reason"] for e in events(demo_app, "decision.refused")] == [
        "role_not_registered"] * 3


def test_batch_of_requests(demo_app, world, patient, other_patient, clinic):
    browser, token, account = patient
    other_browser, other_token, other_account = other_patient
    grant(browser, token, institution=world.institutions["clinic"], purpose="treatment_visit",
          categories=["medication"])
    grant(other_browser, other_token, institution=world.institutions["clinic"],
          purpose="treatment_visit", categories=["lab_results"])
    batch = {"requests": [
        world.ask(account, "clinic", categories=["medication", "lab_results"]),
        world.ask(other_account, "clinic", categories=["medication", "lab_results"]),
        world.ask(account, "clinic", role="nurse", practitioner="ns-7")]}
    response = browser.post("/v1/decisions", headers=bearer(clinic), json=batch)
    assert response.status_code == 200, response.get_json()
    decisions = response.get_json()["decisions"]
    assert [{r["category"]: r["decision"] for r in d["results"]} for d in decisions] == [
        {"medication": "permit", "lab_results": "deny"},
        {"medication": "deny", "lab_results": "permit"},
        {"medication": "permit"}]
    assert len({d["decision_id"] for d in decisions}) == 3
    assert len({d["policy_version"] for d in decisions}) == 1
    audited = events(demo_app, "decision.evaluated")
    assert [e["detail"]["decision_id"] for e in audited] == [d["decision_id"]
                                                             for d in decisions]
    assert [e["patient"] for e in audited] == [account, other_account, account]
    assert len({e["request_id"] for e in audited}) == 1

    # the largest batch is answered
    big = {"requests": [world.ask(account, "clinic")] * 50}
    response = browser.post("/v1/decisions", headers=bearer(clinic), json=big)
    assert response.status_code == 200 and len(response.get_json()["decisions"]) == 50


def test_revoke_is_visible_to_the_next_decision(demo_app, world, patient, clinic):
    browser, token, account = patient
    consent = grant(browser, token, institution=world.institutions["clinic"],
                    purpose="treatment_visit", categories=["medication"])
    ask = world.ask(account, "clinic")
    assert decide(browser, clinic, ask)["results"][0]["decision"] == "permit"
    browser.post(f"/v1/me/consents/{consent['id']}/revoke", headers=bearer(token))
    after = decide(browser, clinic, ask)["results"][0]
    assert after["decision"] == "deny" and after["reason"] == "no_consent"
    with demo_app.app_context():
        refused = flask_db.session.execute(
            select(func.count()).select_from(AuditEvent)
            .where(AuditEvent.type == "decision.refused")).scalar_one()
        flask_db.session.remove()
    assert refused == 0


def test_explain_names_the_rule_line_and_the_consent_state(demo_app, world, patient, clinic):
    browser, token, account = patient
    consent = grant(browser, token, institution=world.institutions["clinic"],
                    purpose="treatment_visit", categories=["medication"])
    response = browser.post("/v1/decisions?explain=1", headers=bearer(clinic),
                            json=world.ask(account, "clinic",
                                           categories=["medication", "surgery"]))
    assert response.status_code == 200
    results = by_category(response.get_json())
    assert results["medication"]["explanation"] == {
        "rule_line": results["medication"]["explanation"]["rule_line"],
        "consent_state": "permit", "mode": "normal", "consents": consent["id"]}
    assert "physician-treatment" in results["medication"]["explanation"]["rule_line"]
    assert results["surgery"]["explanation"]["consent_state"] == "none"
    plain = decide(browser, clinic, world.ask(account, "clinic"))
    assert "explanation" not in plain["results"][0]
