"""The consent lifecycle through the patient API: versions, receipts, expiry, FHIR, listings."""

from __future__ import annotations

import json
from datetime import datetime
from datetime import timedelta

import pytest
from conftest import bearer
from fhir.resources.R4B.consent import Consent as FhirConsent
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy import update

from authz.audit.models import AuditEvent
from authz.consent import service
from authz.consent.models import Consent
from authz.consent.models import ConsentVersion
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stored_versions(app, consent_id):
    with app.app_context():
        rows = [(v.version, v.change, bytes(v.record))
                for v in service.versions(flask_db.session(), consent_id)]
        flask_db.session.remove()
    return rows


def audit_types(app, prefix):
    with app.app_context():
        types = list(flask_db.session.execute(
            select(AuditEvent.type).where(AuditEvent.type.startswith(prefix))
            .order_by(AuditEvent.seq)).scalars())
        flask_db.session.remove()
    return types


def history_keys(browser):
    history = browser.get("/jwks/history.json")
    assert history.status_code == 200
    return KeySet.import_key_set({"keys": [entry["public_jwk"]
                                           for entry in history.get_json()["keys"]]})


def test_versions_grant_narrow_extend_revoke_with_receipts(demo_app, world, patient):
    browser, token, account = patient
    auth = bearer(token)
    end = utcnow().replace(microsecond=0) + timedelta(days=30)
    granted = browser.post("/v1/me/consents", headers=auth, json={
        "institution": world.institutions["clinic"], "purpose": "treatment_referral",
        "categories": ["medication", "lab_results", "surgery"], "end": stamp(end)})
    assert granted.status_code == 201, granted.get_json()
    consent = granted.get_json()
    assert consent["version"] == 1 and consent["status"] == "active"
    assert consent["end"] == stamp(end)
    assert consent["institution"] == {"id": world.institutions["clinic"], "name": "テスト診療所",
                                      "type": "clinic"}
    cid = consent["id"]

    narrowed = browser.post(f"/v1/me/consents/{cid}/narrow", headers=auth,
                            json={"categories": ["surgery", "medication"]})
    assert narrowed.status_code == 200, narrowed.get_json()
    # the consent's own order is kept; the new version names only the kept categories
    assert narrowed.get_json()["categories"] == ["medication", "surgery"]
    assert narrowed.get_json()["version"] == 2

    later = end + timedelta(days=60)
    extended = browser.post(f"/v1/me/consents/{cid}/extend", headers=auth,
                            json={"end": stamp(later)})
    assert extended.status_code == 200, extended.get_json()
    assert extended.get_json()["version"] == 3 and extended.get_json()["end"] == stamp(later)

    revoked = browser.post(f"/v1/me/consents/{cid}/revoke", headers=auth)
    assert revoked.status_code == 200
    assert revoked.get_json()["version"] == 4 and revoked.get_json()["status"] == "revoked"

    versions = stored_versions(demo_app, cid)
    assert [(v, change) for v, change, _ in versions] == [
        (1, "grant"), (2, "narrow"), (3, "extend"), (4, "revoke")]
    shown = browser.get(f"/v1/me/consents/{cid}", headers=auth).get_json()
    assert [(v["version"], v["change"]) for v in shown["versions"]] == [
        (1, "grant"), (2, "narrow"), (3, "extend"), (4, "revoke")]
    assert audit_types(demo_app, "consent.") == [
        "consent.granted", "consent.narrowed", "consent.extended", "consent.revoked"]

    # Every version's receipt verifies with the key history; its payload is the stored
    # canonical record, byte for byte.
    keys = history_keys(browser)
    records = {}
    for version, _, record in versions:
        answer = browser.get(f"/v1/me/consents/{cid}/receipt", headers=auth,
                             query_string={"version": str(version)})
        assert answer.status_code == 200
        assert answer.get_json()["verify_with"] == "/jwks/history.json"
        compact = answer.get_json()["receipt"]
        verified = jws.deserialize_compact(compact, keys, algorithms=["ES256"])
        assert verified.headers()["typ"] == "consent-receipt+jws"
        assert verified.payload == record
        records[version] = json.loads(record)
    assert [records[v]["version"] for v in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert records[1]["categories"] == ["medication", "lab_results", "surgery"]
    assert records[2]["categories"] == ["medication", "surgery"]
    assert records[2]["end"] == stamp(end) and records[3]["end"] == stamp(later)
    assert [records[v]["status"] for v in (1, 2, 3, 4)] == ["active"] * 3 + ["revoked"]
    assert "revoked_at" in records[4] and "revoked_at" not in records[3]
    assert all(r["consent_id"] == cid and r["patient"] == account and
               r["institution"] == world.institutions["clinic"] and
               r["method"] == "card_patient_api" for r in records.values())
    # The stored record is the canonical snapshot of the row as it stands now (version 4).
    with demo_app.app_context():
        row = flask_db.session.get(Consent, cid)
        assert records[4] == service.snapshot(row)
        flask_db.session.remove()

    # A tampered receipt does not verify.
    head, payload, signature = compact.split(".")
    forged = ".".join((head, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"),
                       signature))
    with pytest.raises(JoseError):
        jws.deserialize_compact(forged, keys, algorithms=["ES256"])

    # /v1/me/receipts: one receipt per consent, for its current version.
    listing = browser.get("/v1/me/receipts", headers=auth).get_json()
    assert [(r["consent_id"], r["version"]) for r in listing["receipts"]] == [(cid, 4)]
    assert jws.deserialize_compact(listing["receipts"][0]["receipt"], keys,
                                   algorithms=["ES256"]).payload == versions[-1][2]


def test_receipts_still_verify_after_a_key_rotation(demo_app, world, patient):
    from authz.keys import service as keys

    browser, token, _ = patient
    granted = browser.post("/v1/me/consents", headers=bearer(token), json={
        "institution": world.institutions["clinic"], "purpose": "treatment_visit",
        "categories": ["medication"]})
    receipt = browser.get(f"/v1/me/consents/{granted.get_json()['id']}/receipt",
                          headers=bearer(token)).get_json()["receipt"]
    with demo_app.app_context():
        session = flask_db.session()
        kek = demo_app.config["AUTHZ_KEK_BYTES"]
        keys.rotate(session, kek, actor="test")
        keys.retire_due(session, timedelta(0))
        flask_db.session.remove()
    verified = jws.deserialize_compact(receipt, history_keys(browser), algorithms=["ES256"])
    assert json.loads(verified.payload)["version"] == 1


def _set_end(app, consent_id, end):
    with app.app_context():
        session = flask_db.session()
        with write(session):
            session.execute(update(Consent).where(Consent.id == consent_id).values(end=end))
        flask_db.session.remove()


def test_treatment_visit_lasts_24_hours_then_expires(demo_app, world, patient):
    browser, token, account = patient
    auth = bearer(token)
    granted = browser.post("/v1/me/consents", headers=auth, json={
        "institution": world.institutions["clinic"], "purpose": "treatment_visit",
        "categories": ["medication", "lab_results"]})
    assert granted.status_code == 201
    consent = granted.get_json()
    assert parse(consent["end"]) - parse(consent["start"]) == timedelta(hours=24)
    system = bearer(world.system_token(browser, "clinic"))
    ask = world.ask(account, "clinic", categories=["medication", "lab_results"])
    first = browser.post("/v1/decisions", headers=system, json=ask).get_json()
    assert [r["decision"] for r in first["results"]] == ["permit", "permit"]

    _set_end(demo_app, consent["id"], utcnow() - timedelta(minutes=1))
    listed = browser.get("/v1/me/consents", headers=auth).get_json()["consents"]
    assert [(c["id"], c["status"]) for c in listed] == [(consent["id"], "expired")]
    after = browser.post("/v1/decisions", headers=system, json=ask).get_json()
    assert [(r["decision"], r["reason"], r["consent_ids"]) for r in after["results"]] == [
        ("deny", "consent_expired", [])] * 2
    fhir = browser.get(f"/v1/me/consents/{consent['id']}/fhir", headers=auth).get_json()
    assert fhir["status"] == "inactive"
    # an expired consent is not changed any more (grant a new one), but can still be revoked
    for action, body in (("narrow", {"categories": ["medication"]}),
                         ("extend", {"end": stamp(utcnow() + timedelta(days=1))})):
        refused = browser.post(f"/v1/me/consents/{consent['id']}/{action}", headers=auth,
                               json=body)
        assert refused.status_code == 409, refused.get_json()
    institutions = browser.get("/v1/me/institutions", headers=auth).get_json()["institutions"]
    clinic = next(i for i in institutions if i["id"] == world.institutions["clinic"])
    assert clinic["active_consents"] == 0 and clinic["consents"] == [consent["id"]]


def test_a_new_grant_after_expiry_permits_again(demo_app, world, patient):
    browser, token, account = patient
    auth = bearer(token)
    body = {"institution": world.institutions["clinic"], "purpose": "treatment_visit",
            "categories": ["medication"]}
    old = browser.post("/v1/me/consents", headers=auth, json=body).get_json()
    _set_end(demo_app, old["id"], utcnow() - timedelta(seconds=1))
    new = browser.post("/v1/me/consents", headers=auth, json=body).get_json()
    answer = browser.post("/v1/decisions",
                          headers=bearer(world.system_token(browser, "clinic")),
                          json=world.ask(account, "clinic")).get_json()
    assert answer["results"][0]["decision"] == "permit"
    assert answer["results"][0]["consent_ids"] == [new["id"]]


def _fhir(browser, auth, consent_id):
    response = browser.get(f"/v1/me/consents/{consent_id}/fhir", headers=auth)
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    resource = response.get_json()
    FhirConsent.model_validate(resource)  # R4B structure (R4's Consent)
    return resource


def test_fhir_export_matches_consent_state(demo_app, world, patient):
    browser, token, account = patient
    auth = bearer(token)
    end = utcnow().replace(microsecond=0) + timedelta(days=10)
    granted = browser.post("/v1/me/consents", headers=auth, json={
        "institution": world.institutions["pharmacy"], "purpose": "dispensing",
        "categories": ["medication", "prescriptions"], "end": stamp(end)}).get_json()
    resource = _fhir(browser, auth, granted["id"])
    assert resource["resourceType"] == "Consent" and resource["status"] == "active"
    assert resource["meta"]["versionId"] == "1"
    assert resource["patient"] == {"reference": f"Patient/{account}"}
    assert resource["identifier"][0]["value"] == granted["id"]
    assert resource["policyRule"]["coding"][0]["code"] == "OPTIN"
    provision = resource["provision"]
    assert provision["type"] == "permit"
    assert [c["coding"][0]["code"] for c in provision["code"]] == ["medication", "prescriptions"]
    assert provision["period"]["end"] == stamp(end)
    assert provision["actor"][0]["reference"]["reference"] == \
        f"Organization/{world.institutions['pharmacy']}"
    assert {c["code"] for c in provision["purpose"]} == {"TREAT", "dispensing"}

    browser.post(f"/v1/me/consents/{granted['id']}/narrow", headers=auth,
                 json={"categories": ["prescriptions"]})
    narrowed = _fhir(browser, auth, granted["id"])
    assert narrowed["meta"]["versionId"] == "2" and narrowed["status"] == "active"
    assert [c["coding"][0]["code"] for c in narrowed["provision"]["code"]] == ["prescriptions"]

    browser.post(f"/v1/me/consents/{granted['id']}/revoke", headers=auth)
    revoked = _fhir(browser, auth, granted["id"])
    assert revoked["status"] == "inactive" and revoked["meta"]["versionId"] == "3"

    deny = browser.post("/v1/me/consents", headers=auth, json={
        "decision": "deny", "categories": ["mental_health"]}).get_json()
    assert deny["institution"] is None and deny["purpose"] == "any" and deny["end"] is None
    directive = _fhir(browser, auth, deny["id"])
    assert directive["status"] == "active" and directive["provision"]["type"] == "deny"
    assert directive["policyRule"]["coding"][0]["code"] == "OPTOUT"
    assert "actor" not in directive["provision"]


def test_fhir_binding_checks_catch_what_the_models_do_not(demo_app, world, patient):
    from authz.consent import fhir

    browser, token, _ = patient
    granted = browser.post("/v1/me/consents", headers=bearer(token), json={
        "institution": world.institutions["clinic"], "purpose": "treatment_visit",
        "categories": ["medication"]}).get_json()
    resource = _fhir(browser, bearer(token), granted["id"])
    assert fhir.check_bindings(resource) == []
    broken = {**resource, "status": "paused", "policyRule": None,
              "provision": {**resource["provision"], "type": "maybe"}}
    broken.pop("policyRule")
    problems = fhir.check_bindings(broken)
    assert len(problems) == 3


def test_my_consents_institutions_and_receipts(demo_app, world, patient):
    browser, token, account = patient
    auth = bearer(token)
    assert browser.get("/v1/me/consents", headers=auth).get_json() == {"consents": []}
    made = []
    for kind, purpose, categories, extra in (
            ("clinic", "treatment_visit", ["medication"], {}),
            ("pharmacy", "dispensing", ["prescriptions"],
             {"end": stamp(utcnow() + timedelta(days=5))}),
            ("clinic", "home_or_online_care", ["lab_results"],
             {"end": stamp(utcnow() + timedelta(days=5))})):
        response = browser.post("/v1/me/consents", headers=auth, json={
            "institution": world.institutions[kind], "purpose": purpose,
            "categories": categories, **extra})
        assert response.status_code == 201, response.get_json()
        made.append(response.get_json())
    browser.post(f"/v1/me/consents/{made[2]['id']}/revoke", headers=auth)

    listed = browser.get("/v1/me/consents", headers=auth).get_json()["consents"]
    assert {c["id"]: c["status"] for c in listed} == {
        made[0]["id"]: "active", made[1]["id"]: "active", made[2]["id"]: "revoked"}
    for entry in listed:
        assert set(entry) >= {"id", "institution", "purpose", "categories", "status", "start",
                              "end", "version"}
        assert set(entry["institution"]) == {"id", "name", "type"}

    institutions = {i["id"]: i for i in
                    browser.get("/v1/me/institutions", headers=auth).get_json()["institutions"]}
    clinic = institutions[world.institutions["clinic"]]
    assert clinic["type"] == "clinic" and clinic["active_consents"] == 1
    assert sorted(clinic["consents"]) == sorted([made[0]["id"], made[2]["id"]])
    assert institutions[world.institutions["pharmacy"]]["active_consents"] == 1
    # the patient app's institution is there too: the patient approved a token for it
    assert institutions[world.portal]["apps"] == ["Patient app"]
    assert world.institutions["hospital"] not in institutions

    receipts = browser.get("/v1/me/receipts", headers=auth).get_json()
    assert sorted((r["consent_id"], r["version"]) for r in receipts["receipts"]) == sorted(
        [(made[0]["id"], 1), (made[1]["id"], 1), (made[2]["id"], 2)])
    with demo_app.app_context():
        mine = flask_db.session.execute(
            select(ConsentVersion.consent_id).join(Consent).where(
                Consent.patient_id == account)).scalars().all()
        flask_db.session.remove()
    assert len(mine) == 4  # three grants and one revoke
