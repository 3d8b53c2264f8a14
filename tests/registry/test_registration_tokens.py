"""``authz client registration-token``: issue, list, revoke; the token is shown once."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select
from sqlalchemy import text

from authz.registry.models import RegistrationToken


@pytest.fixture
def institution(cli) -> str:
    done = cli("institution", "add", "--name", "Clinic", "--type", "clinic", "--code", "C-1",
               "--json")
    return str(json.loads(done.output)["id"])


def test_issue_prints_the_token_once_and_stores_its_hash(cli, db, institution):
    done = cli("client", "registration-token", "--institution", institution,
               "--expires-in", "2h", "--uses", "3", "--json")
    assert done.exit_code == 0, done.output
    issued = json.loads(done.output)
    token = issued["token"]
    assert token.startswith("azit_") and len(token) >= len("azit_") + 43
    assert issued["uses_left"] == 3 and issued["institution"] == institution
    db.rollback()
    row = db.get(RegistrationToken, issued["id"])
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (row.expires_at - row.created_at).total_seconds() == 7200
    dumped = db.execute(text("SELECT * FROM registration_tokens")).all()
    assert token not in repr(dumped)

    plain = cli("client", "registration-token", "--institution", institution)
    assert plain.exit_code == 0
    assert plain.output.strip().startswith("azit_")

    listed = cli("client", "registration-token", "list", "--json")
    assert listed.exit_code == 0
    rows = json.loads(listed.output)
    assert [r["id"] for r in rows][0] == issued["id"]
    assert all("token" not in r for r in rows)
    assert issued["id"] in cli("client", "registration-token", "list").output


def test_revoke_needs_yes(cli, db, institution):
    issued = json.loads(cli("client", "registration-token", "--institution", institution,
                            "--json").output)
    refused = cli("client", "registration-token", "revoke", issued["id"])
    assert refused.exit_code == 2
    assert "--yes" in refused.output
    db.rollback()
    assert db.get(RegistrationToken, issued["id"]).revoked_at is None
    done = cli("client", "registration-token", "revoke", issued["id"], "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["revoked_at"]
    assert cli("client", "registration-token", "revoke", "rit_missing", "--yes").exit_code == 2


@pytest.mark.parametrize("args", [
    ["--institution", "ins_missing"],
    [],
    ["--expires-in", "24"],
    ["--expires-in", "-1h"],
    ["--expires-in", "31d"],
    ["--expires-in", "30s"],
    ["--uses", "0"],
])
def test_bad_input_writes_nothing(cli, db, institution, args):
    if args and args[0] != "--institution":
        args = ["--institution", institution, *args]
    done = cli("client", "registration-token", *args)
    assert done.exit_code == 2, done.output
    db.rollback()
    assert db.execute(select(RegistrationToken)).first() is None
