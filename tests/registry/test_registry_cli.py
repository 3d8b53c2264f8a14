"""``authz institution ...`` and ``authz client ...``: what succeeds, and what it writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.audit.events import parse
from authz.audit.models import AuditEvent
from authz.audit.verify import verify_database
from authz.cli import OPERATOR

Cli = Callable[..., Result]


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def last_event(db: Session) -> dict[str, Any]:
    db.rollback()
    record = db.execute(select(AuditEvent.record).order_by(AuditEvent.seq.desc())).scalars()
    event = parse(next(iter(record)))
    db.rollback()
    return event


def add_institution(cli: Cli, *extra: str, kind: str = "hospital",
                    code: str = "1300000101", name: str = "中央病院") -> dict[str, Any]:
    created: dict[str, Any] = ok_json(cli("institution", "add", "--name", name, "--type", kind,
                                          "--code", code, *extra, "--json"))
    return created


# -- institutions -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "extra", "roles"), [
    ("hospital", (), ["physician", "dentist", "pharmacist", "nurse"]),
    ("hospital", ("--emergency",), ["physician", "dentist", "pharmacist", "nurse",
                                    "emergency_physician"]),
    ("clinic", (), ["physician", "dentist", "pharmacist", "nurse"]),
    ("pharmacy", (), ["pharmacist"]),
    ("care_provider", (), ["care_worker", "nurse", "physician"]),
    ("municipality", (), ["municipal_officer"]),
    ("research", (), ["researcher"]),
    ("resource_server", (), []),
    ("hospital", ("--role", "nurse", "--role", "physician", "--role", "nurse"),
     ["nurse", "physician"]),
    ("hospital", ("--emergency", "--role", "emergency_physician"), ["emergency_physician"]),
    ("hospital", ("--emergency", "--role", "physician"), ["physician"]),
])
def test_institution_add_roles_default_to_what_the_type_allows(cli, written, db, kind, extra,
                                                               roles):
    before = written()
    created = add_institution(cli, *extra, kind=kind)
    assert created["id"].startswith("ins_")
    assert created["type"] == kind
    assert created["roles"] == roles
    assert created["emergency"] is ("--emergency" in extra)
    assert written() == before._replace(institutions=before.institutions + 1,
                                        audit_seq=before.audit_seq + 1)
    event = last_event(db)
    assert event["type"] == "registry.institution_added"
    assert event["actor"] == OPERATOR
    assert event["institution"] == created["id"]
    assert event["detail"]["roles"] == roles


def test_institution_list_and_show(cli, db):
    first = add_institution(cli, code="1300000101", name="中央病院")
    second = add_institution(cli, kind="pharmacy", code="1340000102", name="駅前薬局")
    listed = ok_json(cli("institution", "list", "--json"))
    assert [i["id"] for i in listed] == [first["id"], second["id"]]
    assert listed[0] == first
    assert ok_json(cli("institution", "show", second["id"], "--json")) == second

    text = cli("institution", "list")
    assert text.exit_code == 0
    assert text.output.splitlines() == [
        f"{first['id']}\thospital\t1300000101\t中央病院",
        f"{second['id']}\tpharmacy\t1340000102\t駅前薬局"]
    assert json.loads(cli("institution", "show", first["id"]).output) == first
    assert verify_database(db).ok


def test_institution_add_text_output_is_one_tab_separated_line(cli):
    result = cli("institution", "add", "--name", "北クリニック", "--type", "clinic",
                 "--code", "1310000103")
    assert result.exit_code == 0, result.output
    ident, kind, code, name = result.output.rstrip("\n").split("\t")
    assert (kind, code, name) == ("clinic", "1310000103", "北クリニック")
    assert ident.startswith("ins_")


def test_institution_name_is_trimmed_and_nfc_normalised(cli):
    # "が" spelled as "か" + combining voiced mark; an ideographic space at the end
    decomposed = "  か\u3099くえん病院\u3000"
    created = add_institution(cli, name=decomposed)
    assert created["name"] == "がくえん病院"


def test_institution_code_in_full_width_digits_is_stored_in_ascii(cli):
    created = add_institution(cli, code="１３００００９９９９")
    assert created["code"] == "1300009999"
    # ... so the same code in ASCII is the same institution.
    again = cli("institution", "add", "--name", "x", "--type", "clinic", "--code", "1300009999")
    assert again.exit_code == 2
    assert again.output == "authz: error: institution code '1300009999' is already registered\n"


def test_institution_list_empty(cli):
    assert ok_json(cli("institution", "list", "--json")) == []
    assert cli("institution", "list").output == "\n"


# -- clients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:8765/callback",
    "http://127.0.0.1/cb",
    "http://[::1]:8765/cb",
    "http://localhost:3000/cb",
    "http://localhost/cb",
    "https://app.example/cb",
    "https://app.example:8443/oauth/cb?tenant=a%20b&x=1",
    "https://192.0.2.10/cb",
    "https://xn--r8jz45g.example/cb",  # a punycoded IDN host
    "jp.example.app:/cb",  # RFC 8252 §7.1 private-use scheme
    "com.example.patient-app:/oauth2redirect",
])
def test_public_client_redirect_uris_accepted(cli, create_institution, written, db, uri):
    institution = create_institution().id
    before = written()
    created = ok_json(cli("client", "add", "--institution", institution, "--name", "患者アプリ",
                          "--auth-method", "none", "--redirect-uri", uri,
                          "--scope", "openid consents", "--json"))
    assert created["client_id"].startswith("cl_")
    assert created["redirect_uris"] == [uri]
    assert created["auth_method"] == "none"
    assert created["jwks"] is None
    assert created["enabled"] is True
    assert written() == before._replace(clients=before.clients + 1,
                                        audit_seq=before.audit_seq + 1)
    event = last_event(db)
    assert (event["type"], event["client"], event["institution"]) == (
        "registry.client_added", created["client_id"], institution)
    assert event["detail"]["redirect_uris"] == [uri]
    assert verify_database(db).ok


@pytest.mark.parametrize("uri", [
    "https://ehr.hospital.example/oauth/cb",
    "http://127.0.0.1:9000/cb",
    "http://[::1]/cb",
])
def test_confidential_client_with_es256_jwks(cli, create_institution, make_jwk, write_file,
                                             written, db, uri):
    institution = create_institution().id
    jwks = {"keys": [make_jwk("2026-01"), dict(make_jwk("2026-07"), alg="ES256", use="sig",
                                                 key_ops=["verify"])]}
    before = written()
    created = ok_json(cli("client", "add", "--institution", institution, "--name", "EHR",
                          "--auth-method", "private_key_jwt", "--jwks", write_file(jwks),
                          "--redirect-uri", uri, "--scope", "openid decisions", "--json"))
    assert created["auth_method"] == "private_key_jwt"
    assert created["jwks"] == jwks
    assert created["scopes"] == ["openid", "decisions"]
    assert written() == before._replace(clients=before.clients + 1,
                                        audit_seq=before.audit_seq + 1)
    assert ok_json(cli("client", "show", created["client_id"], "--json")) == created
    assert verify_database(db).ok


def test_system_client_without_redirect_uri(cli, create_institution, make_jwk, write_file):
    """client_credentials only: no redirect URI needed when openid is not asked for."""
    institution = create_institution(type="resource_server", code="1399990001").id
    created = ok_json(cli("client", "add", "--institution", institution, "--name", "RS",
                          "--auth-method", "private_key_jwt",
                          "--jwks", write_file({"keys": [make_jwk()]}),
                          "--scope", "introspect decisions", "--client-id", "records.rs-1",
                          "--json"))
    assert created["client_id"] == "records.rs-1"
    assert created["redirect_uris"] == []
    assert created["scopes"] == ["introspect", "decisions"]


def test_client_add_drops_duplicate_uris_and_scopes(cli, create_institution):
    institution = create_institution().id
    created = ok_json(cli("client", "add", "--institution", institution, "--name", "App",
                          "--auth-method", "none", "--redirect-uri", "https://a.example/cb",
                          "--redirect-uri", "https://a.example/cb",
                          "--redirect-uri", "https://b.example/cb",
                          "--scope", "openid  consents openid", "--json"))
    assert created["redirect_uris"] == ["https://a.example/cb", "https://b.example/cb"]
    assert created["scopes"] == ["openid", "consents"]


def test_client_add_text_output_is_the_client_id(cli, create_institution):
    institution = create_institution().id
    result = cli("client", "add", "--institution", institution, "--name", "App",
                 "--auth-method", "none", "--redirect-uri", "https://a.example/cb",
                 "--scope", "openid", "--client-id", "patient-app")
    assert result.exit_code == 0, result.output
    assert result.output == "patient-app\n"


def test_client_list_show_disable_enable_delete(cli, create_institution, create_client,
                                               written, db):
    hospital = create_institution().id
    pharmacy = create_institution(type="pharmacy").id
    first = create_client(institution=hospital, client_id="first-app").client_id
    second = create_client(institution=pharmacy, client_id="second-app").client_id

    listed = ok_json(cli("client", "list", "--json"))
    assert [c["client_id"] for c in listed] == [first, second]
    only = ok_json(cli("client", "list", "--institution", pharmacy, "--json"))
    assert [c["client_id"] for c in only] == [second]
    text = cli("client", "list").output.splitlines()
    assert text[0] == f"{first}\t{hospital}\tnone\tenabled\tTest app"

    def step(*args: str, event: str | None) -> dict[str, Any]:
        before = written()
        shown: dict[str, Any] = ok_json(cli("client", *args, "--json"))
        grew = 1 if event else 0
        assert written().audit_seq == before.audit_seq + grew
        if event:
            assert last_event(db)["type"] == event
            assert last_event(db)["client"] == first
        return shown

    assert step("disable", first, "--yes", event="registry.client_disabled")["enabled"] is False
    assert step("disable", first, "--yes", event=None)["enabled"] is False  # already disabled
    assert step("show", first, event=None)["enabled"] is False
    assert "disabled" in cli("client", "list").output.splitlines()[0]
    assert step("enable", first, event="registry.client_enabled")["enabled"] is True
    assert step("enable", first, event=None)["enabled"] is True
    assert step("delete", first, "--yes", event="registry.client_deleted") == {
        "client_id": first, "deleted": True}
    assert [c["client_id"] for c in ok_json(cli("client", "list", "--json"))] == [second]
    assert written().clients == 1

    result = cli("audit", "verify", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
    assert verify_database(db).ok


def test_client_disable_and_delete_text_output(cli, create_client):
    client_id = create_client().client_id
    assert cli("client", "disable", client_id, "--yes").output == f"{client_id} disabled\n"
    assert cli("client", "enable", client_id).output == f"{client_id} enabled\n"
    assert cli("client", "delete", client_id, "--yes").output == f"{client_id} deleted\n"
