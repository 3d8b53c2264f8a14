"""Bad input on portal forms: a clear page, nothing changed, an audit entry (identifiers only)."""

from __future__ import annotations

import pytest
from portal_support import audit_events
from portal_support import consents
from portal_support import csrf
from portal_support import proposal


def _confirmed(patient, places):
    form = patient.get("/portal/grant")
    return patient.post("/portal/grant", data={
        "csrf": csrf(form), "institution": places.ids["clinic"],
        "purpose": "treatment_referral", "category": ["medication"], "end": "2027-06-30"})


@pytest.mark.parametrize(("token", "reason"), [(None, "csrf"), ("forged-token", "csrf")])
def test_a_missing_or_forged_csrf_token_is_refused(demo_app, patient, places, token, reason):
    confirm = _confirmed(patient, places)
    data = {"proposal": proposal(confirm)}
    if token:
        data["csrf"] = token
    page = patient.post("/portal/apply", data=data)
    assert page.status_code == 400
    assert "何も変更していません" in page.get_data(as_text=True)
    assert consents(demo_app) == []
    [event] = audit_events(demo_app, "portal.refused")
    assert event["reason"] == reason and event["outcome"] == "failure"


def test_a_form_from_another_site_is_refused(demo_app, patient, places):
    confirm = _confirmed(patient, places)
    page = patient.post("/portal/apply", data={"csrf": csrf(confirm),
                                               "proposal": proposal(confirm)},
                        headers={"Origin": "https://evil.example"})
    assert page.status_code == 403
    assert consents(demo_app) == []
    assert audit_events(demo_app, "portal.refused")[0]["reason"] == "cross_site"


def test_a_tampered_hidden_field_is_refused(demo_app, patient, places):
    confirm = _confirmed(patient, places)
    signed = proposal(confirm)
    # another confirmed change's signature on this change's fields: it no longer matches
    form = patient.get("/portal/grant")
    other = proposal(patient.post("/portal/grant", data={
        "csrf": csrf(form), "institution": places.ids["clinic"], "purpose": "treatment_referral",
        "category": ["medication", "mental_health"], "end": "2027-06-30"}))
    forged = signed.rsplit(".", 2)[0] + "." + ".".join(other.rsplit(".", 2)[1:])
    assert forged != signed and forged != other
    page = patient.post("/portal/apply", data={"csrf": csrf(confirm), "proposal": forged})
    assert page.status_code == 400
    assert "書き換えられています" in page.get_data(as_text=True)
    assert consents(demo_app) == []
    assert audit_events(demo_app, "portal.refused")[0]["reason"] == "tampered"


def test_a_proposal_from_another_browser_is_refused(demo_app, patient, places, issue):
    from card_support import login

    confirm = _confirmed(patient, places)
    other = demo_app.test_client()
    login(other, issue(name="鈴木\u3000一郎"))
    page = other.post("/portal/apply", data={"csrf": csrf(other.get("/portal")),
                                             "proposal": proposal(confirm)})
    assert page.status_code == 400
    assert consents(demo_app) == []


@pytest.mark.parametrize(("field", "value"), [
    ("institution", "x" * 5000), ("institution", "ins_\x07"), ("end", "2027-06-30\u202e"),
    ("purpose", "emergency"), ("purpose", ""), ("institution", "ins_nope"),
    ("end", "30/06/2027"), ("end", "2020-01-01"), ("end", "2099-01-01")])
def test_bad_grant_fields_are_refused_with_a_message(demo_app, patient, places, field, value):
    form = patient.get("/portal/grant")
    data = {"csrf": csrf(form), "institution": places.ids["clinic"],
            "purpose": "treatment_referral", "category": ["medication"], "end": "2027-06-30",
            field: value}
    page = patient.post("/portal/grant", data=data)
    assert page.status_code == 400
    text = page.get_data(as_text=True)
    assert 'role="alert"' in text and "Traceback" not in text
    assert consents(demo_app) == []
    assert audit_events(demo_app, "portal.refused")[0]["reason"] == "bad_input"


def test_unknown_categories_and_no_category_are_refused(demo_app, patient, places):
    form = patient.get("/portal/grant")
    base = {"csrf": csrf(form), "institution": places.ids["clinic"],
            "purpose": "treatment_referral", "end": "2027-06-30"}
    for categories in ([], ["medication", "secrets"], ["medication"] * 40):
        page = patient.post("/portal/grant", data={**base, "category": categories})
        assert page.status_code == 400
    assert consents(demo_app) == []


def test_narrowing_to_the_same_or_other_categories_is_refused(demo_app, patient, places):
    confirm = _confirmed(patient, places)
    patient.post("/portal/apply", data={"csrf": csrf(confirm), "proposal": proposal(confirm)})
    [(consent_id, *_)] = consents(demo_app)
    form = patient.get(f"/portal/consents/{consent_id}/narrow")
    for kept in (["medication"], ["lab_results"]):
        page = patient.post(f"/portal/consents/{consent_id}/narrow",
                            data={"csrf": csrf(form), "category": kept})
        assert page.status_code == 400
    assert consents(demo_app)[0][3] == 1


def test_a_stale_confirmation_after_another_change_is_refused(demo_app, patient, places):
    confirm = _confirmed(patient, places)
    patient.post("/portal/apply", data={"csrf": csrf(confirm), "proposal": proposal(confirm)})
    [(consent_id, *_)] = consents(demo_app)
    first = patient.get(f"/portal/consents/{consent_id}/revoke")
    extend = patient.get(f"/portal/consents/{consent_id}/extend")
    second = patient.post(f"/portal/consents/{consent_id}/extend",
                          data={"csrf": csrf(extend), "end": "2028-01-31"})
    assert patient.post("/portal/apply", data={"csrf": csrf(second),
                                               "proposal": proposal(second)}).status_code == 303
    page = patient.post("/portal/apply", data={"csrf": csrf(first),
                                               "proposal": proposal(first)})
    assert page.status_code == 409
    assert consents(demo_app)[0][1] == "active"
    # replaying an applied confirmation is refused too: the version moved on
    again = patient.post("/portal/apply", data={"csrf": csrf(second),
                                                "proposal": proposal(second)})
    assert again.status_code == 409


def test_a_form_after_the_login_ended_changes_nothing(demo_app, browser, places):
    page = browser.post("/portal/apply", data={"csrf": "x", "proposal": "y"})
    assert page.status_code == 401
    assert "もう一度カードでログイン" in page.get_data(as_text=True)
    assert consents(demo_app) == []


def test_unknown_apps_and_sessions_are_refused(demo_app, patient, places):
    page = patient.get("/portal/devices")
    for path in ("/portal/apps/grt_nope/end", "/portal/sessions/ses_nope/end"):
        answer = patient.post(path, data={"csrf": csrf(page)})
        assert answer.status_code == 404
    assert len(audit_events(demo_app, "portal.refused")) == 2


def test_nul_is_refused_at_the_edge_before_any_query(demo_app, patient, places):
    form = patient.get("/portal/grant")
    page = patient.post("/portal/grant", data={
        "csrf": csrf(form), "institution": "ins_\x00", "purpose": "treatment_referral",
        "category": ["medication"], "end": "2027-06-30"})
    assert page.status_code == 400
    assert page.mimetype == "text/html" and 'role="alert"' in page.get_data(as_text=True)
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert consents(demo_app) == []
