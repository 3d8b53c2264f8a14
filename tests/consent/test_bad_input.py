"""Bad input to the decision and patient APIs: a clear problem+json error, state unchanged.

Every case checks the status, the problem ``type`` and ``title``, that no traceback leaks, and
that stored state is exactly as before (row counts of consents, versions, emergency windows,
pairwise subjects and audit events; every consent's version and status). A refused decision
request of an authenticated institution writes exactly one ``decision.refused`` audit event;
requests without a valid token of ours are noise (logs and metrics, no audit row); refused
patient calls write nothing at all.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from conftest import bearer
from conftest import stored
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import update

from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.registry import service as registry
from authz.registry.models import Institution

REFUSED = ["decision.refused"]
BASE_GRANT = {"purpose": "treatment_visit", "categories": ["medication"]}


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_problem(response, status, code, *, title=None):
    assert response.status_code == status, (response.status_code, response.get_data())
    assert response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    body = response.get_json()
    assert body["type"].endswith(f"/problems/{code}"), body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    if title is not None:
        assert title in body["title"], body
    if status == 401:
        assert "Bearer" in response.headers["WWW-Authenticate"]
    return body


def check_unchanged(app, before, new_events):
    state, types = stored(app)
    assert types[len(before[1]):] == new_events
    expected_state = {**before[0], "audit_events": before[0]["audit_events"] + len(new_events)}
    assert state == expected_state


@pytest.fixture
def scene(demo_app, world, patient):
    """The patient holds one consent at the clinic; clinic and hospital know the patient."""
    browser, token, account = patient
    granted = browser.post("/v1/me/consents", headers=bearer(token), json={
        **BASE_GRANT, "institution": world.institutions["clinic"],
        "categories": ["medication", "lab_results"]})
    assert granted.status_code == 201, granted.get_json()
    world.know(account, "hospital")
    return {"browser": browser, "token": token, "account": account,
            "consent": granted.get_json()["id"],
            "clinic": world.system_token(browser, "clinic"),
            "hospital": world.system_token(browser, "hospital")}


# -- the decision API ---------------------------------------------------------------------------

def _ask(world, scene, **overrides):
    return world.ask(scene["account"], "clinic", **overrides)


def _without(field):
    def build(world, scene):
        body = _ask(world, scene)
        del body[field]
        return body
    return build


EMERGENCY = {"purpose": "emergency", "role": "emergency_physician",
             "categories": ["medication"]}
DECISION_CASES = {
    # (caller, body builder, status, code)
    "unknown patient": ("clinic", lambda w, s: _ask(w, s, patient="A" * 43),
                        404, "unknown_patient"),
    "a sub the institution never got": (
        "clinic", lambda w, s: _ask(w, s, patient=w.pairwise(s["account"], "pharmacy")),
        404, "unknown_patient"),
    "unknown category": ("clinic", lambda w, s: _ask(w, s, categories=["x-ray"]),
                         400, "invalid_request"),
    "categories empty": ("clinic", lambda w, s: _ask(w, s, categories=[]),
                         400, "invalid_request"),
    "categories not a list": ("clinic", lambda w, s: _ask(w, s, categories="medication"),
                              400, "invalid_request"),
    "category not a string": ("clinic", lambda w, s: _ask(w, s, categories=[7]),
                              400, "invalid_request"),
    "unknown purpose": ("clinic", lambda w, s: _ask(w, s, purpose="marketing"),
                        400, "invalid_request"),
    "unknown role": ("clinic", lambda w, s: _ask(w, s, role="surgeon"),
                     403, "role_not_registered"),
    "role the institution did not register": (
        "clinic", lambda w, s: _ask(w, s, role="dentist"), 403, "role_not_registered"),
    "role of another institution type": (
        "clinic", lambda w, s: _ask(w, s, role="care_worker"), 403, "role_not_registered"),
    "patient role from a system token": (
        "clinic", lambda w, s: _ask(w, s, role="patient", purpose="self_view"),
        403, "role_not_registered"),
    "emergency role at a non-emergency institution": (
        "clinic", lambda w, s: _ask(w, s, **EMERGENCY, reason="unconscious"),
        403, "role_not_registered"),
    "emergency without a reason": (
        "hospital", lambda w, s: w.ask(s["account"], "hospital", **EMERGENCY),
        400, "invalid_request"),
    "emergency with an unknown reason": (
        "hospital", lambda w, s: w.ask(s["account"], "hospital", **EMERGENCY,
                                       reason="curiosity"), 400, "invalid_request"),
    "reason without emergency": ("clinic", lambda w, s: _ask(w, s, reason="unconscious"),
                                 400, "invalid_request"),
    "missing practitioner": ("clinic", _without("practitioner"), 400, "invalid_request"),
    "empty practitioner": ("clinic", lambda w, s: _ask(w, s, practitioner=""),
                           400, "invalid_request"),
    "overlong practitioner": ("clinic", lambda w, s: _ask(w, s, practitioner="d" * 65),
                              400, "invalid_request"),
    "practitioner with a control character": (
        "clinic", lambda w, s: _ask(w, s, practitioner="dr\n001"), 400, "invalid_request"),
    "practitioner not a string": ("clinic", lambda w, s: _ask(w, s, practitioner=1),
                                  400, "invalid_request"),
    "missing role": ("clinic", _without("role"), 400, "invalid_request"),
    "overlong role": ("clinic", lambda w, s: _ask(w, s, role="r" * 65), 400, "invalid_request"),
    "missing patient": ("clinic", _without("patient"), 400, "invalid_request"),
    "overlong patient": ("clinic", lambda w, s: _ask(w, s, patient="A" * 65),
                         400, "invalid_request"),
    "patient with a control character": (
        "clinic", lambda w, s: _ask(w, s, patient="A" * 20 + "\x00" + "A" * 20),
        400, "invalid_request"),
    "purpose with a control character": (
        "clinic", lambda w, s: _ask(w, s, purpose="treatment_visit\r\n"),
        400, "invalid_request"),
    "wrong action": ("clinic", lambda w, s: _ask(w, s, action="write"), 400, "invalid_request"),
    "missing action": ("clinic", _without("action"), 400, "invalid_request"),
    "unknown member": ("clinic", lambda w, s: _ask(w, s, institution="ins_x"),
                       400, "invalid_request"),
    "batch too large": ("clinic", lambda w, s: {"requests": [_ask(w, s)] * 51},
                        400, "invalid_request"),
    "batch empty": ("clinic", lambda w, s: {"requests": []}, 400, "invalid_request"),
    "batch of non-objects": ("clinic", lambda w, s: {"requests": [_ask(w, s), 1]},
                             400, "invalid_request"),
    "batch not a list": ("clinic", lambda w, s: {"requests": _ask(w, s)},
                         400, "invalid_request"),
    "batch with another member": (
        "clinic", lambda w, s: {"requests": [_ask(w, s)], "purpose": "treatment_visit"},
        400, "invalid_request"),
    "batch with one bad request": (
        "clinic", lambda w, s: {"requests": [_ask(w, s), _ask(w, s, categories=["x"])]},
        400, "invalid_request"),
    "body a JSON array": ("clinic", lambda w, s: [_ask(w, s)], 400, "invalid_request"),
    "body JSON null": ("clinic", lambda w, s: None, 400, "invalid_request"),
}


# One scene serves every case (a card login per case would take minutes); subtests report
# each case on its own.
def test_decision_request_refused(demo_app, world, scene, subtests):
    for case, (caller, build, status, code) in DECISION_CASES.items():
        with subtests.test(case=case):
            body = build(world, scene)
            before = stored(demo_app)
            response = scene["browser"].post(
                "/v1/decisions", headers=bearer(scene[caller]), data=json.dumps(body),
                content_type="application/json")
            check_problem(response, status, code)
            check_unchanged(demo_app, before, REFUSED)


def test_decision_body_not_json(demo_app, scene, subtests):
    for data, content_type in [
            ("not json", "application/json"), ("{", "application/json"),
            ('{"patient": "x"}', "text/plain"), ("", "application/json"),
            (b"\xff\xfe", "application/json"), ("[]", "application/json"),
            ("[" * 50000, "application/json"), ('{"a":' * 20000, "application/json")]:
        with subtests.test(data=data, content_type=content_type):
            before = stored(demo_app)
            response = scene["browser"].post("/v1/decisions", headers=bearer(scene["clinic"]),
                                             data=data, content_type=content_type)
            check_problem(response, 400, "invalid_request")
            check_unchanged(demo_app, before, REFUSED)


def test_emergency_role_after_the_registration_is_withdrawn(demo_app, world, scene):
    """The hospital still lists the role, but is no longer registered for emergency care."""
    with demo_app.app_context():
        session = flask_db.session()
        with write(session):
            session.execute(update(Institution).where(
                Institution.id == world.institutions["hospital"]).values(emergency=False))
        flask_db.session.remove()
    before = stored(demo_app)
    response = scene["browser"].post("/v1/decisions", headers=bearer(scene["hospital"]),
                                     json=world.ask(scene["account"], "hospital", **EMERGENCY,
                                                    reason="unconscious"))
    check_problem(response, 403, "role_not_registered")
    check_unchanged(demo_app, before, REFUSED)


def test_disabled_client_is_refused_and_audited(demo_app, world, scene):
    with demo_app.app_context():
        registry.set_client_enabled(flask_db.session(), world.systems["clinic"], False,
                                    actor="test")
        flask_db.session.remove()
    before = stored(demo_app)
    response = scene["browser"].post("/v1/decisions", headers=bearer(scene["clinic"]),
                                     json=_ask(world, scene))
    check_problem(response, 401, "invalid_token")
    check_unchanged(demo_app, before, REFUSED)
    # and it cannot get a new token either
    again = scene["browser"].post("/oauth/token", data={
        "grant_type": "client_credentials", "scope": "decisions",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": world.assertion("clinic")})
    assert again.status_code in (400, 401)


def test_token_without_the_decisions_scope(demo_app, world, scene):
    world.add_system("clinic-consents", "clinic", "consents decisions")
    token = world.system_token(scene["browser"], "clinic-consents", scope="consents")
    before = stored(demo_app)
    response = scene["browser"].post("/v1/decisions", headers=bearer(token),
                                     json=_ask(world, scene))
    check_problem(response, 403, "insufficient_scope")
    assert 'scope="decisions"' in response.headers["WWW-Authenticate"]
    check_unchanged(demo_app, before, REFUSED)


def test_patient_token_cannot_ask_as_a_physician(demo_app, world, scene):
    before = stored(demo_app)
    response = scene["browser"].post("/v1/decisions", headers=bearer(scene["token"]),
                                     json=_ask(world, scene))
    check_problem(response, 403, "insufficient_scope")
    check_unchanged(demo_app, before, REFUSED)


def _forged(token):
    """The token's claims, re-signed with an attacker's key under the same kid."""
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==")
    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    return jws.serialize_compact(header, payload, key, algorithms=["ES256"])


def _tampered(token):
    """The real signature over a payload whose scope was widened."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "decisions consents"
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return ".".join((head, raw, signature))


INVALID_TOKENS = {
    "no token": (lambda s: {}, "invalid_token"),
    "basic auth": (lambda s: {"Authorization": "Basic dXNlcjpwdw=="}, "invalid_token"),
    "empty bearer": (lambda s: {"Authorization": "Bearer "}, "invalid_token"),
    "garbage": (lambda s: {"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
    "forged signature": (lambda s: bearer(_forged(s["clinic"])), "invalid_token"),
    "tampered payload": (lambda s: bearer(_tampered(s["clinic"])), "invalid_token"),
    "DPoP without a proof": (lambda s: {"Authorization": f"DPoP {s['clinic']}"},
                             "invalid_dpop_proof"),
}


def test_decision_without_a_valid_token(demo_app, world, scene, subtests):
    for case, (headers, code) in INVALID_TOKENS.items():
        with subtests.test(case=case):
            before = stored(demo_app)
            response = scene["browser"].post("/v1/decisions", headers=headers(scene),
                                             json=_ask(world, scene))
            check_problem(response, 401, code)
            check_unchanged(demo_app, before, [])  # noise: metrics and logs, no audit rows


def test_decision_with_an_expired_token(demo_app, world, scene, monkeypatch):
    later = utcnow() + timedelta(minutes=10)
    monkeypatch.setattr("authz.api.auth.utcnow", lambda: later)
    before = stored(demo_app)
    response = scene["browser"].post("/v1/decisions", headers=bearer(scene["clinic"]),
                                     json=_ask(world, scene))
    check_problem(response, 401, "invalid_token")
    check_unchanged(demo_app, before, [])


# -- the patient API ----------------------------------------------------------------------------

def _grant(world, **overrides):
    return {**BASE_GRANT, "institution": world.institutions["clinic"], **overrides}


def _grant_without(field):
    def build(world):
        body = _grant(world)
        del body[field]
        return body
    return build


IN_PAST = stamp(utcnow() - timedelta(hours=1))
GRANT_CASES = {
    "unknown institution": (lambda w: _grant(w, institution="ins_0000000000"),
                            400, "invalid_request"),
    "institution not a string": (lambda w: _grant(w, institution=["x"]),
                                 400, "invalid_request"),
    "unknown purpose": (lambda w: _grant(w, purpose="marketing"), 400, "invalid_request"),
    "purpose missing": (_grant_without("purpose"), 400, "invalid_request"),
    "purpose emergency": (lambda w: _grant(w, purpose="emergency"), 400, "invalid_request"),
    "purpose disaster": (lambda w: _grant(w, purpose="disaster"), 400, "invalid_request"),
    "purpose self_view": (lambda w: _grant(w, purpose="self_view"), 400, "invalid_request"),
    "categories empty": (lambda w: _grant(w, categories=[]), 400, "invalid_request"),
    "categories unknown": (lambda w: _grant(w, categories=["medication", "x-ray"]),
                           400, "invalid_request"),
    "categories not a list": (lambda w: _grant(w, categories="medication"),
                              400, "invalid_request"),
    "categories missing": (_grant_without("categories"), 400, "invalid_request"),
    "period ending before it starts": (lambda w: _grant(w, end=IN_PAST),
                                       400, "invalid_request"),
    "end missing for a referral": (lambda w: _grant(w, purpose="treatment_referral"),
                                   400, "invalid_request"),
    "end more than ten years ahead": (
        lambda w: _grant(w, purpose="treatment_referral",
                         end=stamp(utcnow() + timedelta(days=3660))), 400, "invalid_request"),
    "end without a time zone": (lambda w: _grant(w, end="2030-01-01T00:00:00"),
                                400, "invalid_request"),
    "end not a time": (lambda w: _grant(w, end="tomorrow"), 400, "invalid_request"),
    "end not a string": (lambda w: _grant(w, end=1893456000), 400, "invalid_request"),
    "unknown member": (lambda w: _grant(w, patient="someone-else"), 400, "invalid_request"),
    "decision neither permit nor deny": (lambda w: _grant(w, decision="maybe"),
                                         400, "invalid_request"),
    "consent to a resource server": (
        lambda w: _grant(w, institution=w.portal), 400, "invalid_request"),
    "body a JSON array": (lambda w: [_grant(w)], 400, "invalid_request"),
}


def test_grant_refused(demo_app, world, scene, subtests):
    for case, (build, status, code) in GRANT_CASES.items():
        with subtests.test(case=case):
            before = stored(demo_app)
            response = scene["browser"].post(
                "/v1/me/consents", headers=bearer(scene["token"]),
                data=json.dumps(build(world)), content_type="application/json")
            check_problem(response, status, code)
            check_unchanged(demo_app, before, [])


def test_grant_body_not_json(demo_app, scene, subtests):
    for data, content_type in [("purpose=treatment_visit", "application/x-www-form-urlencoded"),
                               ("{", "application/json"), ("[" * 50000, "application/json")]:
        with subtests.test(data=data[:20], content_type=content_type):
            before = stored(demo_app)
            response = scene["browser"].post("/v1/me/consents", headers=bearer(scene["token"]),
                                             data=data, content_type=content_type)
            check_problem(response, 400, "invalid_request")
            check_unchanged(demo_app, before, [])


def test_categories_the_institution_can_never_see(demo_app, world, scene):
    """A pharmacy dispenses: it never sees surgery or mental health, whatever is consented."""
    before = stored(demo_app)
    response = scene["browser"].post("/v1/me/consents", headers=bearer(scene["token"]), json={
        "institution": world.institutions["pharmacy"], "purpose": "dispensing",
        "categories": ["medication", "surgery", "mental_health"],
        "end": stamp(utcnow() + timedelta(days=30))})
    body = check_problem(response, 400, "invalid_request")
    assert body["not_grantable"] == ["surgery", "mental_health"]
    check_unchanged(demo_app, before, [])


def test_grant_and_extend_need_a_recent_login(demo_app, world, scene, monkeypatch):
    monkeypatch.setattr("authz.api.me.RECENT_LOGIN", timedelta(seconds=-1))
    before = stored(demo_app)
    response = scene["browser"].post("/v1/me/consents", headers=bearer(scene["token"]),
                                     json=_grant(world))
    check_problem(response, 403, "login_required")
    response = scene["browser"].post(f"/v1/me/consents/{scene['consent']}/extend",
                                     headers=bearer(scene["token"]),
                                     json={"end": stamp(utcnow() + timedelta(days=2))})
    check_problem(response, 403, "login_required")
    check_unchanged(demo_app, before, [])
    # narrowing and revoking never need one: a patient can always withdraw
    narrowed = scene["browser"].post(f"/v1/me/consents/{scene['consent']}/narrow",
                                     headers=bearer(scene["token"]),
                                     json={"categories": ["medication"]})
    assert narrowed.status_code == 200, narrowed.get_json()


def _change(scene, consent_id, action, body=None):
    return scene["browser"].post(f"/v1/me/consents/{consent_id}/{action}",
                                 headers=bearer(scene["token"]), json=body)


def test_another_patients_consent_is_not_found(demo_app, world, scene, other_patient,
                                               subtests):
    browser, token, _ = other_patient
    theirs = browser.post("/v1/me/consents", headers=bearer(token), json={
        **BASE_GRANT, "institution": world.institutions["clinic"],
        "categories": ["medication", "lab_results"]})
    assert theirs.status_code == 201
    for action, body in [("revoke", None), ("narrow", {"categories": ["medication"]}),
                         ("extend", {"end": stamp(utcnow() + timedelta(days=2))}),
                         ("receipt", None), ("fhir", None), ("", None)]:
        for consent_id in (theirs.get_json()["id"], "cns_00000000000000000000", "x" * 300):
            with subtests.test(action=action, consent=consent_id[:24]):
                before = stored(demo_app)
                path = f"/v1/me/consents/{consent_id}/{action}".rstrip("/")
                if action in ("receipt", "fhir", ""):
                    response = scene["browser"].get(path, headers=bearer(scene["token"]))
                else:
                    response = scene["browser"].post(path, headers=bearer(scene["token"]),
                                                     json=body)
                check_problem(response, 404, "not_found")
                check_unchanged(demo_app, before, [])
    # and the other patient's consent is still theirs, untouched
    mine = browser.get(f"/v1/me/consents/{theirs.get_json()['id']}", headers=bearer(token))
    assert mine.status_code == 200
    assert mine.get_json()["status"] == "active" and mine.get_json()["version"] == 1


def test_revoke_twice(demo_app, scene):
    assert _change(scene, scene["consent"], "revoke").status_code == 200
    before = stored(demo_app)
    check_problem(_change(scene, scene["consent"], "revoke"), 409, "conflict")
    check_problem(_change(scene, scene["consent"], "narrow", {"categories": ["medication"]}),
                  409, "conflict")
    check_problem(_change(scene, scene["consent"], "extend",
                          {"end": stamp(utcnow() + timedelta(days=2))}), 409, "conflict")
    check_unchanged(demo_app, before, [])


def test_narrow_to_a_non_subset(demo_app, scene, subtests):
    for categories in (["medication", "surgery"], ["surgery"], ["medication", "lab_results"],
                       [], "medication", ["x-ray"], None):
        with subtests.test(categories=categories):
            before = stored(demo_app)
            check_problem(_change(scene, scene["consent"], "narrow",
                                  {"categories": categories}), 400, "invalid_request")
            check_unchanged(demo_app, before, [])


def test_extend_refused(demo_app, scene, subtests):
    for case, end in {"earlier than the visit's 24 hours": stamp(utcnow() + timedelta(hours=1)),
                      "in the past": IN_PAST,
                      "more than ten years": stamp(utcnow() + timedelta(days=3660)),
                      "not a time": "soon", "missing": None}.items():
        with subtests.test(case=case):
            before = stored(demo_app)
            check_problem(_change(scene, scene["consent"], "extend", {"end": end}),
                          400, "invalid_request")
            check_unchanged(demo_app, before, [])


def test_change_with_unknown_members_or_not_an_object(demo_app, scene, subtests):
    for action, body in [("narrow", {"categories": ["medication"], "end": "x"}),
                         ("narrow", []), ("narrow", "x"), ("extend", {"end": None, "x": 1}),
                         ("extend", [])]:
        with subtests.test(action=action, body=body):
            before = stored(demo_app)
            check_problem(_change(scene, scene["consent"], action, body),
                          400, "invalid_request")
            check_unchanged(demo_app, before, [])


def test_receipt_of_a_bad_version(demo_app, scene, subtests):
    for version, status, code in [("abc", 400, "invalid_request"),
                                  ("-1", 400, "invalid_request"),
                                  ("\u00b2", 400, "invalid_request"),  # isdigit, not int
                                  ("\u0661", 400, "invalid_request"),  # Arabic-Indic one
                                  ("", 400, "invalid_request"),
                                  ("1234567", 400, "invalid_request"),
                                  ("99", 404, "not_found")]:
        with subtests.test(version=version):
            before = stored(demo_app)
            response = scene["browser"].get(f"/v1/me/consents/{scene['consent']}/receipt",
                                            query_string={"version": version},
                                            headers=bearer(scene["token"]))
            check_problem(response, status, code)
            check_unchanged(demo_app, before, [])


ME_CALLS = [("get", "/v1/me/consents", None), ("post", "/v1/me/consents", "grant"),
            ("get", "/v1/me/institutions", None), ("get", "/v1/me/receipts", None),
            ("get", "/v1/me/consents/{id}", None), ("get", "/v1/me/consents/{id}/fhir", None),
            ("get", "/v1/me/consents/{id}/receipt", None),
            ("post", "/v1/me/consents/{id}/revoke", None),
            ("post", "/v1/me/consents/{id}/narrow", {"categories": ["medication"]}),
            ("post", "/v1/me/consents/{id}/extend",
             {"end": stamp(utcnow() + timedelta(days=2))})]


def _every_me_call(world, scene, headers, subtests, check):
    for method, path, body in ME_CALLS:
        with subtests.test(method=method, path=path):
            before = stored(world.app)
            response = getattr(scene["browser"], method)(
                path.format(id=scene["consent"]), headers=headers,
                json=_grant(world) if body == "grant" else body)
            check(response)
            check_unchanged(world.app, before, [])


def test_system_token_on_the_patient_api(world, scene, subtests):
    world.add_system("clinic-consents", "clinic", "consents decisions")
    token = world.system_token(scene["browser"], "clinic-consents", scope="consents")
    _every_me_call(world, scene, bearer(token), subtests,
                   lambda response: check_problem(response, 403, "forbidden"))


def test_patient_token_without_the_consents_scope(world, scene, subtests):
    token = world.patient_token(scene["browser"], scope="openid")

    def check(response):
        check_problem(response, 403, "insufficient_scope")
        assert 'scope="consents"' in response.headers["WWW-Authenticate"]

    _every_me_call(world, scene, bearer(token), subtests, check)


def test_patient_api_without_a_token(world, scene, subtests):
    _every_me_call(world, scene, {}, subtests,
                   lambda response: check_problem(response, 401, "invalid_token"))
