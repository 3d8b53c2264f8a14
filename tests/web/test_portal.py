"""The patient portal: consents by institution, grant/narrow/extend/revoke with a confirmation,
receipts and FHIR downloads, sessions and apps, access history."""

from __future__ import annotations

import json
from datetime import timedelta

from card_support import login
from joserfc import jws
from portal_support import ISSUER
from portal_support import audit_events
from portal_support import consents
from portal_support import csrf
from portal_support import proposal
from sqlalchemy import select

from authz.consent.models import Consent
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.identity.models import LoginSession
from authz.oauth.models import Grant
from authz.registry import service as registry


def grant(patient, places, categories=("medication",), purpose="treatment_referral",
          kind="clinic", end="2027-06-30"):
    form = patient.get("/portal/grant")
    assert form.status_code == 200
    confirm = patient.post("/portal/grant", data={
        "csrf": csrf(form), "institution": places.ids[kind], "purpose": purpose,
        "category": list(categories), "end": end})
    assert confirm.status_code == 200, confirm.get_data(as_text=True)
    done = patient.post("/portal/apply", data={"csrf": csrf(confirm),
                                               "proposal": proposal(confirm)})
    assert done.status_code == 303
    return confirm


def test_the_portal_sends_a_visitor_to_the_card_login(browser, places):
    page = browser.get("/portal")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login?next=/portal")


def test_grant_narrow_extend_revoke_each_confirmed_first(demo_app, patient, places):
    form = patient.get("/portal/grant")
    text = form.get_data(as_text=True)
    assert "テスト診療所" in text and "テスト記録" not in text
    # sensitive categories are flagged and never pre-selected; nothing is
    assert " checked" not in text
    assert 'class="sensitive"' in text and "配慮が必要な情報" in text
    confirm = grant(patient, places, categories=("medication", "lab_results"))
    page = confirm.get_data(as_text=True)
    assert "テスト診療所" in page and "薬剤情報" in page and "検査結果" in page
    assert "2027年6月30日" in page  # the end of the day in Japan time, in Japanese style
    [(consent_id, status, cats, version, end)] = consents(demo_app)
    assert (status, cats, version) == ("active", ["medication", "lab_results"], 1)
    assert end.isoformat().startswith("2027-06-30T15:00")  # 2027-07-01 00:00 JST
    overview = patient.get("/portal").get_data(as_text=True)
    assert "同意しました。" in overview and "有効" in overview and consent_id in overview

    narrow = patient.get(f"/portal/consents/{consent_id}/narrow")
    confirm = patient.post(f"/portal/consents/{consent_id}/narrow",
                           data={"csrf": csrf(narrow), "category": ["medication"]})
    page = confirm.get_data(as_text=True)
    assert "今後は閲覧できなくなる記録" in page and "検査結果" in page
    assert "第2版" in page
    assert consents(demo_app)[0][2] == ["medication", "lab_results"]  # nothing changed yet
    patient.post("/portal/apply", data={"csrf": csrf(confirm), "proposal": proposal(confirm)})
    assert consents(demo_app)[0][1:4] == ("active", ["medication"], 2)

    extend = patient.get(f"/portal/consents/{consent_id}/extend")
    confirm = patient.post(f"/portal/consents/{consent_id}/extend",
                           data={"csrf": csrf(extend), "end": "2028-01-31"})
    assert "2028年1月31日" in confirm.get_data(as_text=True)
    patient.post("/portal/apply", data={"csrf": csrf(confirm), "proposal": proposal(confirm)})
    assert consents(demo_app)[0][3] == 3

    receipt = patient.get(f"/portal/consents/{consent_id}/receipt.jws")
    assert receipt.mimetype == "application/jose"
    assert "attachment" in receipt.headers["Content-Disposition"]
    payload = json.loads(jws.extract_compact(receipt.get_data()).payload)
    assert payload["consent_id"] == consent_id and payload["version"] == 3
    details = patient.get(f"/portal/consents/{consent_id}").get_data(as_text=True)
    assert "版の履歴" in details and "同意の範囲を縮小" in details and "第3版" in details
    first = patient.get(f"/portal/consents/{consent_id}/receipt.jws?version=1")
    assert json.loads(jws.extract_compact(first.get_data()).payload)["categories"] == [
        "medication", "lab_results"]
    assert patient.get(f"/portal/consents/{consent_id}/receipt.jws?version=9").status_code == 404
    resource = json.loads(patient.get(f"/portal/consents/{consent_id}/fhir.json").get_data())
    assert resource["resourceType"] == "Consent" and resource["status"] == "active"

    confirm = patient.get(f"/portal/consents/{consent_id}/revoke")
    assert "閲覧できなくなります" in confirm.get_data(as_text=True)
    assert consents(demo_app)[0][1] == "active"
    patient.post("/portal/apply", data={"csrf": csrf(confirm), "proposal": proposal(confirm)})
    assert consents(demo_app)[0][1:4] == ("revoked", ["medication"], 4)
    assert "撤回済み" in patient.get("/portal").get_data(as_text=True)
    assert [e["type"] for e in audit_events(demo_app, "consent.granted")] == ["consent.granted"]
    [granted] = audit_events(demo_app, "consent.granted")
    assert granted["detail"]["consent_id"] == consent_id
    with demo_app.app_context():
        row = flask_db.session.get(Consent, consent_id)
        assert row.method == "card_portal" and row.provenance["source"] == "portal"
        flask_db.session.remove()


def test_a_rule_refused_category_is_not_granted(demo_app, patient, places):
    form = patient.get("/portal/grant")
    page = patient.post("/portal/grant", data={
        "csrf": csrf(form), "institution": places.ids["pharmacy"], "purpose": "dispensing",
        "category": ["medication", "diagnoses"], "end": "2027-06-30"})
    assert page.status_code == 400
    assert "傷病名" in page.get_data(as_text=True)
    assert consents(demo_app) == []
    assert audit_events(demo_app, "portal.refused")[0]["reason"] == "not_grantable"


def test_a_stale_login_goes_back_to_the_card_and_changes_nothing(demo_app, patient, places,
                                                                monkeypatch):
    form = patient.get("/portal/grant")
    confirm = patient.post("/portal/grant", data={
        "csrf": csrf(form), "institution": places.ids["clinic"],
        "purpose": "treatment_referral", "category": ["medication"], "end": "2027-06-30"})
    from authz.web import portal
    monkeypatch.setattr(portal, "FRESH_LOGIN", timedelta(seconds=-1))
    again = patient.get("/portal/grant")
    assert again.status_code == 302 and "fresh=1" in again.headers["Location"]
    assert "next=/portal/grant" in again.headers["Location"]
    done = patient.post("/portal/apply", data={"csrf": csrf(confirm),
                                               "proposal": proposal(confirm)})
    assert done.status_code == 403
    assert "10分以内" in done.get_data(as_text=True)
    assert "fresh=1" in done.get_data(as_text=True)
    assert consents(demo_app) == []
    assert audit_events(demo_app, "portal.refused")[0]["reason"] == "stale_login"


def test_sessions_and_apps_can_be_ended(demo_app, patient, places):
    with demo_app.app_context():
        session = flask_db.session()
        client = registry.add_client(session, registry.ClientSpec(
            institution=places.ids["clinic"], name="診療所アプリ", auth_method="none",
            redirect_uris=["https://app.example/cb"], scope="openid"), actor="test")
        account = session.execute(select(LoginSession.account_id)).scalar_one()
        with write(session):
            session.add(Grant(id="grt_portal1", client_id=client.client_id, account_id=account,
                              scope="openid", created_at=utcnow()))
        flask_db.session.remove()
    page = patient.get("/portal/devices")
    text = page.get_data(as_text=True)
    assert "診療所アプリ" in text and "このブラウザ" in text
    ended = patient.post("/portal/apps/grt_portal1/end", data={"csrf": csrf(page)})
    assert ended.status_code == 303
    assert "診療所アプリ" not in patient.get("/portal/devices").get_data(as_text=True)
    with demo_app.app_context():
        assert flask_db.session.get(Grant, "grt_portal1").revoked_at is not None
        session_id = flask_db.session.execute(select(LoginSession.id)).scalar_one()
        flask_db.session.remove()
    assert audit_events(demo_app, "oauth.grant_revoked")
    ended = patient.post(f"/portal/sessions/{session_id}/end", data={"csrf": csrf(page)})
    assert ended.status_code == 303 and ended.headers["Location"].startswith("/login")
    assert patient.get("/portal").status_code == 302  # this browser's login has ended


def test_access_history_lists_consent_changes_and_filters(demo_app, patient, places):
    grant(patient, places)
    page = patient.get("/portal/history")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "同意" in text and "テスト診療所" in text and "ログイン" in text
    other = patient.get("/portal/history", query_string={"institution": places.ids["pharmacy"]})
    assert "テスト診療所" not in other.get_data(as_text=True).split("<table")[1]
    bad = patient.get("/portal/history", query_string={"since": "yesterday"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_data(as_text=True)
    assert audit_events(demo_app, "audit.history_read")


def test_another_patients_consent_is_not_found_and_audited(demo_app, browser, issue, places):
    other = demo_app.test_client()
    login(other, issue())
    grant(other, places)
    [(consent_id, *_rest)] = consents(demo_app)
    login(browser, issue(name="鈴木\u3000一郎"))
    for path in (f"/portal/consents/{consent_id}/revoke", f"/portal/consents/{consent_id}/narrow",
                 f"/portal/consents/{consent_id}/receipt.jws"):
        page = browser.get(path)
        assert page.status_code == 404
        assert "その同意はありません" in page.get_data(as_text=True)
    assert consents(demo_app)[0][1] == "active"
    refused = audit_events(demo_app, "portal.refused")
    assert {e["reason"] for e in refused} == {"not_found"}
    assert refused[0]["detail"]["consent_id"] == consent_id
    assert refused[0]["patient"] != audit_events(demo_app, "consent.granted")[0]["patient"]
    assert ISSUER  # (same-origin posts in these tests carry no Origin, as a same-page form)


def test_the_login_brings_the_patient_back_to_the_same_filtered_page(demo_app, issue, places):
    browser = demo_app.test_client()
    asked = browser.get("/portal/history", query_string={"since": "2026-01-01"})
    assert asked.status_code == 302
    login(browser, issue())
    back = browser.get(asked.headers["Location"])
    assert back.status_code == 302
    assert back.headers["Location"] == "/portal/history?since=2026-01-01"
