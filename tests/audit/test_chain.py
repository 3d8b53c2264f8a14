"""The audit spine: canonical records, hash chain, tamper detection, append-only storage."""

from __future__ import annotations

import hashlib
import json

import pytest
import rfc8785
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from authz import audit
from authz.audit import canonical
from authz.audit.models import AuditEvent
from authz.audit.verify import verify_database
from authz.cli import authz_cli
from authz.database import ProgrammingError
from authz.database import write


def append(db, count, **fields):
    with write(db):
        return [audit.record(db, audit.Event(type="test.event", actor="test", **fields))
                for _ in range(count)]


def tamper(db, sql, **params):
    """Change rows by hand, as someone with database owner rights could."""
    with write(db):
        if db.get_bind().dialect.name == "postgresql":
            db.execute(sa.text("SET LOCAL session_replication_role = replica"))
        else:
            db.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            db.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        db.execute(sa.text(sql), params)


values = st.recursive(
    st.text() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.text(), values, max_size=6))
def test_canonical_json_is_rfc8785(value):
    assert canonical.dumps(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("bad", [1.5, True, None, {1: "x"}, 2**60, b"bytes"])
def test_canonical_refuses_non_string_non_integer(bad):
    with pytest.raises(canonical.NotCanonical):
        canonical.dumps({"x": bad})


def test_record_chains_hashes(db):
    seqs = append(db, 3, institution="ins_1", patient="pat_1", reason="r1",
                  detail={"categories": ["medication"], "count": 2})
    assert seqs == [1, 2, 3]
    rows = db.execute(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    prev = bytes(32)
    for row in rows:
        body = json.loads(row.record)
        assert body["prev"] == prev.hex()
        assert body["v"] == 1 and body["seq"] == row.seq
        assert body["detail"] == {"categories": ["medication"], "count": 2}
        assert hashlib.sha256(row.record).digest() == row.hash
        assert row.record == canonical.dumps(body)
        prev = row.hash
    assert verify_database(db).ok


def test_event_commits_with_its_state_change_or_not_at_all(db):
    append(db, 1)
    with pytest.raises(RuntimeError), write(db):
        audit.record(db, audit.Event(type="test.event", actor="test"))
        raise RuntimeError("the state change failed")
    assert db.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 1
    assert verify_database(db).count == 1


def test_record_outside_a_write_transaction_is_refused(db):
    with pytest.raises(ProgrammingError):
        audit.record(db, audit.Event(type="test.event", actor="test"))


@pytest.mark.parametrize("fields", [
    {"type": "NoDots", "actor": "a"},
    {"type": "a.b", "actor": ""},
    {"type": "a.b", "actor": "a", "outcome": "maybe"},
    {"type": "a.b", "actor": "a", "detail": {"x": 0.5}},
])
def test_bad_events_are_refused(fields):
    with pytest.raises(ValueError, match="."):  # NotCanonical is a ValueError too
        audit.Event(**fields)


def test_application_cannot_update_or_delete_audit_rows(db):
    append(db, 2)
    for statement in ("UPDATE audit_events SET outcome = 'failure' WHERE seq = 1",
                      "DELETE FROM audit_events WHERE seq = 2"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), write(db):
            db.execute(sa.text(statement))
    assert verify_database(db).ok


@pytest.mark.parametrize(("sql", "bad_seq"), [
    # an edited record no longer matches its hash
    ("UPDATE audit_events SET record = :forged WHERE seq = 3", 3),
    # edited record and recomputed hash: the next entry's link breaks, and since the entry
    # after that still links to it, the edited one is named
    ("UPDATE audit_events SET record = :forged, hash = :forged_hash WHERE seq = 3", 3),
    # a deleted entry leaves a gap
    ("DELETE FROM audit_events WHERE seq = 3", 3),
    # deleting the newest entry is caught by the chain head
    ("DELETE FROM audit_events WHERE seq = 5", 5),
    # an indexed column edited without touching the record
    ("UPDATE audit_events SET patient_id = 'someone-else' WHERE seq = 2", 2),
    # two entries swapped
    ("UPDATE audit_events SET seq = CASE seq WHEN 2 THEN 1002 WHEN 4 THEN 1004 END"
     " WHERE seq IN (2, 4);"
     " UPDATE audit_events SET seq = CASE seq WHEN 1002 THEN 4 WHEN 1004 THEN 2 END"
     " WHERE seq IN (1002, 1004)", 2),
])
def test_tampering_is_detected_by_rehashing(db, runner, sql, bad_seq):
    append(db, 5, patient="pat_1")
    original = db.execute(sa.text("SELECT record FROM audit_events WHERE seq = 3")).scalar_one()
    forged = canonical.dumps({**json.loads(original), "actor": "forger"})
    db.rollback()
    for statement in sql.split(";"):
        tamper(db, statement, forged=forged, forged_hash=hashlib.sha256(forged).digest())
    verdict = verify_database(db)
    assert not verdict.ok
    assert verdict.bad_seq == bad_seq
    result = runner.invoke(authz_cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"entry {bad_seq}" in result.output
