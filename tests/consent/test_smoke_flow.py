"""The consent story end to end through HTTP: grant, decide, revoke, decide again."""

from __future__ import annotations


def test_grant_decide_revoke_decide(demo_app, world, patient):
    browser, token, account = patient
    auth = {"Authorization": f"Bearer {token}"}
    granted = browser.post("/v1/me/consents", headers=auth, json={
        "institution": world.institutions["clinic"], "purpose": "treatment_visit",
        "categories": ["medication", "lab_results"]})
    assert granted.status_code == 201, granted.get_json()
    consent = granted.get_json()
    assert consent["status"] == "active" and consent["version"] == 1

    system = world.system_token(browser, "clinic")
    ask = {"patient": world.pairwise(account, "clinic"), "categories": ["medication", "surgery"],
           "action": "read", "purpose": "treatment_visit", "role": "physician",
           "practitioner": "dr-001"}
    first = browser.post("/v1/decisions", headers={"Authorization": f"Bearer {system}"},
                         json=ask)
    assert first.status_code == 200, first.get_json()
    results = {r["category"]: r for r in first.get_json()["results"]}
    assert results["medication"]["decision"] == "permit"
    assert results["medication"]["consent_ids"] == [consent["id"]]
    assert results["medication"]["obligations"]["lookback_days"] == 1095
    assert results["surgery"]["decision"] == "deny"
    assert results["surgery"]["reason"] == "no_consent"

    revoked = browser.post(f"/v1/me/consents/{consent['id']}/revoke", headers=auth)
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    assert revoked.get_json()["version"] == 2
    second = browser.post("/v1/decisions", headers={"Authorization": f"Bearer {system}"},
                          json=ask)
    assert second.status_code == 200
    assert [r["decision"] for r in second.get_json()["results"]] == ["deny", "deny"]

    fhir = browser.get(f"/v1/me/consents/{consent['id']}/fhir", headers=auth)
    assert fhir.status_code == 200 and fhir.get_json()["status"] == "inactive"
    receipt = browser.get(f"/v1/me/consents/{consent['id']}/receipt", headers=auth)
    assert receipt.status_code == 200 and receipt.get_json()["version"] == 2
