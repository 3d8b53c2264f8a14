"""The auditor console (``/auditor``): who gets in, search, an event with its proof, checkpoints,
verification, exports and the emergency review queue, and refusals that change nothing.

Everything runs through the pages with a card login, against the real log: events are written
by the service itself, checkpoints sealed by the same code the job runs, and one test edits a
stored entry directly in the database to see the console name it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from card_support import answer
from card_support import login
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from portal_support import ISSUER
from portal_support import audit_events
from portal_support import csrf
from sqlalchemy import select
from sqlalchemy import text as text_sql
from sqlalchemy import update

from authz.audit import checkpoints
from authz.audit.models import AuditEvent
from authz.cli import authz_cli
from authz.consent.models import EmergencyAccess
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db

ORIGIN = {"Origin": ISSUER}


@pytest.fixture
def auditor(demo_app, issue, places):
    """A browser logged in as a registered auditor: (browser, auditor id)."""
    card = issue(name="監査\u3000花子", birthdate="1975-05-05", gender="female")
    added = demo_app.test_cli_runner().invoke(authz_cli, ["auditor", "add", "--card",
                                                          str(card.path), "--json"])
    assert added.exit_code == 0, added.output
    browser = demo_app.test_client()
    login(browser, card)
    return browser, json.loads(added.output)["id"]


def seal(app):
    with app.app_context():
        made = checkpoints.seal(flask_db.session(), app.config["AUTHZ_KEK_BYTES"])
        flask_db.session.remove()
    return made


def count_events(app):
    with app.app_context():
        total = flask_db.session.execute(select(flask_db.func.count())
                                         .select_from(AuditEvent)).scalar_one()
        flask_db.session.remove()
    return total


def reads(app):
    return [e["detail"]["operation"] for e in audit_events(app, "audit.read")]


def text(page):
    return page.get_data(as_text=True)


def test_login_first_then_only_auditors(demo_app, browser, patient):
    anonymous = demo_app.test_client()
    answer = anonymous.get("/auditor/events", query_string={"type": "consent.*"})
    assert answer.status_code == 302
    target = parse_qs(urlsplit(answer.headers["Location"]).query)["next"]
    assert target == ["/auditor/events?type=consent.*"]  # back to the same search after login
    # a patient logged in with their own card is not an auditor: refused and audited
    before = count_events(demo_app)
    refused = patient.get("/auditor")
    assert refused.status_code == 403
    assert "登録された監査人" in text(refused)
    assert 'href="/auditor/events"' not in text(refused)  # nothing of the console
    refusals = audit_events(demo_app, "audit.refused")
    assert [r["reason"] for r in refusals] == ["not_auditor"]
    assert count_events(demo_app) == before + 1
    assert reads(demo_app) == []


def test_overview_and_verification(demo_app, auditor):
    browser, auditor_id = auditor
    seal(demo_app)
    page = browser.get("/auditor", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "signature verifies" in text(page)
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    verified = browser.post("/auditor/verify", data={"csrf": csrf(page)}, headers=ORIGIN)
    assert verified.status_code == 200
    assert 'id="audit-verdict"' in text(verified) and 'data-ok="true"' in text(verified)
    assert reads(demo_app) == ["overview", "verify"]
    assert all(e["actor"] == f"auditor:{auditor_id}"
               for e in audit_events(demo_app, "audit.read"))


def test_verification_names_an_edited_entry(demo_app, auditor):
    browser, _ = auditor
    seal(demo_app)
    with demo_app.app_context():
        session = flask_db.session()
        record = session.execute(select(AuditEvent.record)
                                 .where(AuditEvent.seq == 3)).scalar_one()
        forged = bytes(record).replace(b'"type":"', b'"type":"x', 1)
        session.rollback()
        with write(session):  # as someone with the database owner's rights could
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text_sql("SET LOCAL session_replication_role = replica"))
            else:
                session.execute(text_sql("DROP TRIGGER IF EXISTS audit_events_no_update"))
            session.execute(update(AuditEvent).where(AuditEvent.seq == 3)
                            .values(record=forged))
        flask_db.session.remove()
    page = browser.get("/auditor")
    verified = browser.post("/auditor/verify", data={"csrf": csrf(page)}, headers=ORIGIN)
    assert 'data-ok="false"' in text(verified)
    assert "/auditor/events/3" in text(verified)
    # the event page's proof check fails on the same entry
    event = browser.get("/auditor/events/3")
    assert 'id="proof-status"' in text(event) and 'data-ok="false"' in text(event)


def test_search_filters_pages_and_opens_an_event(demo_app, auditor, places):
    browser, _ = auditor
    all_events = browser.get("/auditor/events", headers={"Accept-Language": "en"})
    assert all_events.status_code == 200
    seqs = [int(s) for s in re.findall(r'href="/auditor/events/(\d+)"', text(all_events))]
    assert seqs == sorted(seqs) and len(seqs) >= 5
    registry = browser.get("/auditor/events", query_string={"type": "registry.*"})
    kinds = set(re.findall(r"<code>(registry\.[a-z_.]+)</code>", text(registry)))
    assert kinds == {"registry.institution_added"}
    by_institution = browser.get("/auditor/events",
                                 query_string={"institution": places.ids["clinic"]})
    rows = text(by_institution).split("<tbody>")[1]
    assert "テスト診療所" in rows and "テスト薬局" not in rows
    none = browser.get("/auditor/events", query_string={"type": "consent.*"})
    assert 'id="no-events"' in text(none)
    # pages of 50 in sequence order, stable while events arrive (each page read adds one)
    first = browser.get("/auditor/events")
    follow = re.search(r'href="(/auditor/events\?after=\d+[^"]*)" rel="next"', text(first))
    if count_events(demo_app) > 50:
        assert follow is not None
        second = browser.get(follow.group(1).replace("&amp;", "&"))
        page_one = re.findall(r'href="/auditor/events/(\d+)"', text(first))
        page_two = re.findall(r'href="/auditor/events/(\d+)"', text(second))
        assert int(page_two[0]) == int(page_one[-1]) + 1
    # one event, unsealed then sealed with a proof that verifies
    seq = seqs[0]
    unsealed = browser.get(f"/auditor/events/{seq}", headers={"Accept-Language": "en"})
    assert "Not sealed in a checkpoint yet" in text(unsealed)
    seal(demo_app)
    sealed = browser.get(f"/auditor/events/{seq}", headers={"Accept-Language": "en"})
    assert 'data-ok="true"' in text(sealed)
    assert "The proof verifies" in text(sealed)
    assert "search" in reads(demo_app) and "event" in reads(demo_app)


def test_exports_select_what_the_search_selects(demo_app, auditor):
    browser, _ = auditor
    lines = browser.get("/auditor/events/export",
                        query_string={"format": "jsonl", "type": "registry.*"})
    assert lines.status_code == 200 and lines.mimetype == "application/jsonl"
    assert "attachment" in lines.headers["Content-Disposition"]
    events = [json.loads(line) for line in text(lines).splitlines()]
    assert events and {e["type"] for e in events} == {"registry.institution_added"}
    table = browser.get("/auditor/events/export",
                        query_string={"format": "csv", "type": "registry.*"})
    rows = list(csv.DictReader(io.StringIO(text(table))))
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in events]
    fhir = browser.get("/auditor/events/export",
                       query_string={"format": "fhir", "type": "registry.*"})
    for line in text(fhir).splitlines():
        FhirAuditEvent.model_validate(json.loads(line))
    exports = [e["detail"] for e in audit_events(demo_app, "audit.read")
               if e["detail"]["operation"] == "export"]
    assert [(d["format"], d["count"]) for d in exports] == [
        ("jsonl", len(events)), ("csv", len(events)), ("fhir", len(events))]


def test_checkpoints_newest_first_with_signatures(demo_app, auditor):
    browser, _ = auditor
    empty = browser.get("/auditor/checkpoints", headers={"Accept-Language": "en"})
    assert "None yet" in text(empty)
    first = seal(demo_app)
    browser.get("/auditor/events")
    second = seal(demo_app)
    page = browser.get("/auditor/checkpoints", headers={"Accept-Language": "en"})
    sizes = [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", text(page))]
    assert sizes == [second.tree_size, first.tree_size]
    assert text(page).count("verifies") == 2


def someone(app):
    """An account id the log knows (the auditor is a patient too)."""
    return audit_events(app, "identity.session_started")[0]["patient"]


def emergency(app, access_id, hospital, reason="unconscious"):
    """An emergency access window as the decision API opens one, waiting for review."""
    patient_id = someone(app)
    with app.app_context():
        session = flask_db.session()
        with write(session):
            now = utcnow()
            session.add(EmergencyAccess(id=access_id, patient_id=patient_id,
                                        institution_id=hospital, practitioner="dr-7",
                                        reason=reason, started_at=now,
                                        expires_at=now + timedelta(hours=24)))
        flask_db.session.remove()


def test_emergency_review_queue(demo_app, auditor, places):
    browser, auditor_id = auditor
    emergency(demo_app, "emg_console1", places.ids["hospital"])
    queue = browser.get("/auditor/emergency")
    assert "emg_console1" in text(queue) and "テスト病院" in text(queue)
    done = browser.post("/auditor/emergency/emg_console1",
                        data={"csrf": csrf(queue), "outcome": "justified"}, headers=ORIGIN)
    assert done.status_code == 303
    assert 'id="no-reviews"' in text(browser.get("/auditor/emergency"))
    assert "justified" in text(browser.get("/auditor/emergency?status=all"))
    reviewed = audit_events(demo_app, "audit.emergency_reviewed")
    assert [(e["actor"], e["detail"]["outcome"]) for e in reviewed] == [
        (f"auditor:{auditor_id}", "justified")]
    again = browser.post("/auditor/emergency/emg_console1",
                         data={"csrf": csrf(queue), "outcome": "unjustified"}, headers=ORIGIN)
    assert again.status_code == 409


BAD_SEARCHES = [
    {"since": "yesterday"}, {"until": "2026-13-01"}, {"since": "2026-02-02", "until": "2026-01-01"},
    {"patient": "a b"}, {"patient": "x" * 65}, {"type": "DROP TABLE"}, {"outcome": "maybe"},
    {"after": "-1"}, {"limit": "5"}, {"institution": "a\x01b"}, {"format": "jsonl"},
    {"patient": "a\x00b"},
]


@pytest.mark.parametrize("args", BAD_SEARCHES)
def test_bad_searches_are_refused_clearly(demo_app, auditor, args):
    browser, _ = auditor
    before = count_events(demo_app)
    page = browser.get("/auditor/events", query_string=args)
    assert page.status_code == 400
    assert 'role="alert"' in text(page) and "Traceback" not in text(page)
    if "\x00" in "".join(args.values()):  # refused at the edge, before any query: logged only
        assert count_events(demo_app) == before
        return
    assert [e["reason"] for e in audit_events(demo_app, "audit.refused")] == ["bad_input"]
    assert count_events(demo_app) == before + 1


@pytest.mark.parametrize("path", [
    "/auditor/events/999999", "/auditor/events/99999999999999999999",
    "/auditor/checkpoints?before=x", "/auditor/emergency?status=mine",
    "/auditor/events/export?format=xml", "/auditor/nowhere",
])
def test_bad_pages(demo_app, auditor, path):
    browser, _ = auditor
    page = browser.get(path)
    assert page.status_code in (400, 404)
    assert "Traceback" not in text(page)


def test_forms_need_their_token_and_origin(demo_app, auditor, places):
    browser, _ = auditor
    emergency(demo_app, "emg_console2", places.ids["hospital"], reason="cardiac_arrest")
    page = browser.get("/auditor/emergency")
    token = csrf(page)
    for data, headers, reason in (
            ({"outcome": "justified"}, ORIGIN, "csrf"),
            ({"outcome": "justified", "csrf": "forged"}, ORIGIN, "csrf"),
            ({"outcome": "justified", "csrf": token}, {"Origin": "https://evil.example"},
             "cross_site"),
            ({"outcome": "fine", "csrf": token}, ORIGIN, "bad_input")):
        answer = browser.post("/auditor/emergency/emg_console2", data=data, headers=headers)
        assert answer.status_code in (400, 403)
        assert audit_events(demo_app, "audit.refused")[-1]["reason"] == reason
    assert audit_events(demo_app, "audit.emergency_reviewed") == []
    missing = browser.post("/auditor/emergency/emg_nope",
                           data={"outcome": "justified", "csrf": token}, headers=ORIGIN)
    assert missing.status_code == 404
    stale = browser.post("/auditor/verify", data={}, headers=ORIGIN)
    assert stale.status_code == 400


def test_a_disabled_auditor_is_shut_out_at_once(demo_app, auditor):
    browser, auditor_id = auditor
    assert browser.get("/auditor").status_code == 200
    result = demo_app.test_cli_runner().invoke(authz_cli, ["auditor", "disable", auditor_id,
                                                           "--yes"])
    assert result.exit_code == 0
    assert browser.get("/auditor").status_code == 403


def test_a_patient_switches_to_the_auditor_card_without_javascript(demo_app, issue, patient):
    """The refusal page's login keeps ``fresh=1`` through the page's Continue button, so the
    auditor's card answer replaces the patient's login instead of being ignored."""
    card = issue(name="監査\u3000次郎", birthdate="1980-01-01", gender="male")
    assert demo_app.test_cli_runner().invoke(
        authz_cli, ["auditor", "add", "--card", str(card.path)]).exit_code == 0
    refused = patient.get("/auditor")
    login_href = re.search(r'id="auditor-login" href="([^"]+)"', text(refused)).group(1)
    login_page = patient.get(login_href.replace("&amp;", "&"))
    assert login_page.status_code == 200
    link = re.search(r'data-card-link="([^"]+)"', text(login_page)).group(1)
    assert answer(demo_app.test_client(), link.replace("&amp;", "&"), card).status_code == 200
    continue_href = re.search(r'class="button" href="(/login\?[^"]+)"', text(login_page)).group(1)
    assert "fresh=1" in continue_href
    done = patient.get(continue_href.replace("&amp;", "&"))
    assert done.status_code == 302 and done.headers["Location"].startswith("/auditor")
    assert patient.get("/auditor").status_code == 200
