"""Signed checkpoints, proofs, export and offline verification, and tamper detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_chain import append
from test_chain import tamper
from test_merkle import mth

from authz import audit
from authz.audit import checkpoints
from authz.audit import merkle
from authz.audit.export import verify_export
from authz.audit.verify import verify_database
from authz.cli import authz_cli
from authz.database import write
from authz.keys import service as keys

# tamper() needs the triggers of these tables out of the way too
UNGUARD_SQLITE = ["DROP TRIGGER IF EXISTS audit_nodes_no_delete",
                  "DROP TRIGGER IF EXISTS audit_nodes_no_change",
                  "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete",
                  "DROP TRIGGER IF EXISTS audit_checkpoints_no_change"]


@pytest.fixture
def kek(app, db):
    keys.ensure_keys(db, app.config["AUTHZ_KEK_BYTES"])
    return app.config["AUTHZ_KEK_BYTES"]


@pytest.fixture
def seal(db, kek, app):
    def run():
        return checkpoints.seal(db, kek, checkpoint_file=app.config["AUTHZ_AUDIT_CHECKPOINT_FILE"])
    return run


def records(db):
    return [bytes(r) for r in db.execute(
        sa.text("SELECT record FROM audit_events ORDER BY seq")).scalars()]


def test_seal_signs_the_rfc_root_and_appends_to_the_file(app, db, seal):
    append(db, 5)
    first = seal()
    assert first is not None
    data = records(db)
    assert first.tree_size == len(data)  # the two key events and the five appended
    assert first.root_hash == mth(data)
    assert first.head_hash == hashlib.sha256(data[-1]).digest()
    assert seal() is None  # nothing new
    append(db, 6)
    second = seal()
    assert second.root_hash == mth(records(db))
    lines = Path(app.config["AUTHZ_AUDIT_CHECKPOINT_FILE"]).read_text().splitlines()
    assert [json.loads(line)["tree_size"] for line in lines] == [first.tree_size,
                                                                second.tree_size]
    stored = checkpoints.read_file(app.config["AUTHZ_AUDIT_CHECKPOINT_FILE"])
    assert stored == [first, second]
    verdict = verify_database(db)
    assert verdict.ok and verdict.checkpoints == 2, verdict.describe()


def test_proofs_verify_against_the_signed_roots(db, seal):
    sizes = []
    for batch in (1, 2, 5, 9):
        append(db, batch)
        sizes.append(seal().tree_size)
    data = records(db)
    for size in sizes:
        root = mth(data[:size])
        for seq in range(1, size + 1):
            proof = checkpoints.inclusion(db, seq, size)
            assert proof["leaf_hash"] == merkle.leaf_hash(data[seq - 1]).hex()
            merkle.verify_inclusion(seq - 1, size, bytes.fromhex(proof["leaf_hash"]),
                                    [bytes.fromhex(p) for p in proof["proof"]], root)
    for first in sizes:
        for second in sizes:
            if first <= second:
                proof = checkpoints.consistency(db, first, second)
                merkle.verify_consistency(first, second, mth(data[:first]),
                                          mth(data[:second]),
                                          [bytes.fromhex(p) for p in proof["proof"]])


def test_no_proof_for_what_is_not_sealed(db, seal):
    from authz.errors import InvalidInput
    from authz.errors import NotFound

    with pytest.raises(NotFound):
        checkpoints.inclusion(db, 1)
    append(db, 3)
    size = seal().tree_size
    append(db, 1)
    with pytest.raises(NotFound):
        checkpoints.inclusion(db, size + 1, size)
    with pytest.raises(NotFound):
        checkpoints.inclusion(db, 1, size + 1)
    with pytest.raises(NotFound):
        checkpoints.consistency(db, 1, size)  # no checkpoint of size 1
    with pytest.raises(InvalidInput):
        checkpoints.consistency(db, size + 1, size)


def test_seal_job_runs_under_a_lease(app, db, kek):
    import authz.jobs.catalog  # noqa: F401
    from authz.jobs import runner

    append(db, 2)
    job = next(j for j in runner.registered() if j.name == "audit.seal")
    outcomes = runner.run_due(db, app.config, jobs=[job])
    assert outcomes[0].status == "ran" and outcomes[0].result == checkpoints.latest(db).tree_size


def test_export_verifies_offline_and_names_an_edited_line(app, db, seal, runner, tmp_path):
    append(db, 4)
    seal()
    append(db, 3)
    seal()
    append(db, 2)  # not sealed yet: still exported and chain-checked
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(authz_cli, ["audit", "export", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    total = len(records(db))
    assert json.loads(result.output)["events"] == total
    verdict = verify_export(out)
    assert verdict.ok and verdict.count == total, verdict.describe()
    result = runner.invoke(authz_cli, ["audit", "verify", "--export", str(out)])
    assert result.exit_code == 0, result.output

    lines = out.read_bytes().splitlines(keepends=True)
    events = [i for i, line in enumerate(lines) if line.startswith(b'{"kind":"event"')]
    edited = list(lines)
    edited[events[4]] = edited[events[4]].replace(b'"actor":"test"', b'"actor":"tset"')
    cases = {
        "edit": (edited, 5),
        "delete": ([line for i, line in enumerate(lines) if i != events[4]], 5),
        "reorder": ([*lines[:events[3]], lines[events[4]], lines[events[3]],
                     *lines[events[4] + 1:]], 4),
        "insert": ([*lines[:events[4]], lines[events[2]], *lines[events[4]:]], 3),
        "truncate": (lines[:events[-3]], total - 2),
    }
    for name, (content, bad) in cases.items():
        forged = tmp_path / f"{name}.jsonl"
        forged.write_bytes(b"".join(content))
        verdict = verify_export(forged)
        assert not verdict.ok, name
        assert verdict.bad_seq == bad, (name, verdict.describe())
        result = runner.invoke(authz_cli, ["audit", "verify", "--export", str(forged)])
        assert result.exit_code == 1 and f"entry {bad}" in result.output, (name, result.output)


def _unguard(db):
    if db.get_bind().dialect.name == "sqlite":
        with write(db):
            for statement in UNGUARD_SQLITE:
                db.execute(sa.text(statement))


@pytest.mark.parametrize(("sql", "bad_seq"), [
    ("UPDATE audit_events SET record = :forged WHERE seq = 5", 5),
    # edited and rehashed: the sealed leaf names the edited entry, not the next one
    ("UPDATE audit_events SET record = :forged, hash = :forged_hash WHERE seq = 5", 5),
    ("DELETE FROM audit_events WHERE seq = 5", 5),
    ("DELETE FROM audit_events WHERE seq = 9", 9),
    ("UPDATE audit_events SET patient_id = 'someone-else' WHERE seq = 5", 5),
    ("UPDATE audit_events SET seq = 1000 + seq WHERE seq IN (4, 6);"
     " UPDATE audit_events SET seq = 6 WHERE seq = 1004;"
     " UPDATE audit_events SET seq = 4 WHERE seq = 1006", 4),
])
def test_tampering_with_a_sealed_log_names_the_entry(db, seal, runner, sql, bad_seq):
    append(db, 7, patient="pat_1")  # with the two key events: entries 1..9
    seal()
    original = db.execute(sa.text("SELECT record FROM audit_events WHERE seq = 5")).scalar_one()
    forged = audit.canonical.dumps({**json.loads(original), "actor": "forger"})
    db.rollback()
    for statement in sql.split(";"):
        tamper(db, statement, forged=forged, forged_hash=hashlib.sha256(forged).digest())
    verdict = verify_database(db)
    assert not verdict.ok
    assert verdict.bad_seq == bad_seq, verdict.describe()
    result = runner.invoke(authz_cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"entry {bad_seq}" in result.output


def test_inserted_entry_is_named(db, seal):
    append(db, 7)
    seal()
    rows = db.execute(sa.text("SELECT seq, record, hash FROM audit_events WHERE seq >= 4"
                              " ORDER BY seq")).all()
    prev = db.execute(sa.text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
    body = {**json.loads(rows[0].record), "actor": "inserted", "prev": bytes(prev).hex()}
    inserted = audit.canonical.dumps(body)
    db.rollback()
    tamper(db, "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 4")
    tamper(db, "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000")
    tamper(db, "INSERT INTO audit_events (seq, time, type, outcome, record, hash)"
               " SELECT 4, time, type, outcome, :record, :hash FROM audit_events WHERE seq = 5",
           record=inserted, hash=hashlib.sha256(inserted).digest())
    verdict = verify_database(db)
    assert not verdict.ok and verdict.bad_seq == 4, verdict.describe()


def test_rewritten_and_resigned_log_is_caught_by_the_auditors_copy(app, db, seal, runner,
                                                                    tmp_path):
    append(db, 1)
    seal()  # entries 1..3
    append(db, 1)
    seal()  # entry 4
    append(db, 3)
    seal()  # 5..7
    copy = tmp_path / "auditor-copy.jsonl"
    copy.write_bytes(Path(app.config["AUTHZ_AUDIT_CHECKPOINT_FILE"]).read_bytes())
    # Someone with the database and the key rewrites entry 4 onwards and re-signs everything.
    _unguard(db)
    head = db.execute(sa.text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
    db.rollback()
    tamper(db, "DELETE FROM audit_checkpoints")
    tamper(db, "DELETE FROM audit_nodes")
    tamper(db, "DELETE FROM audit_events WHERE seq >= 4")
    tamper(db, "UPDATE audit_head SET seq = 3, hash = :h", h=bytes(head))
    with write(db):
        for n in range(4):
            audit.record(db, audit.Event(type="test.event", actor="rewriter", detail={"n": n}))
    checkpoints.seal(db, app.config["AUTHZ_KEK_BYTES"])
    assert verify_database(db).ok  # consistent on its own: only an outside copy can tell
    verdict = verify_database(db, checkpoints.read_file(copy))
    assert not verdict.ok and verdict.bad_seq == 4, verdict.describe()
    result = runner.invoke(authz_cli, ["audit", "verify", "--checkpoints", str(copy)])
    assert result.exit_code == 1 and "entry 4" in result.output, result.output
    out = tmp_path / "rewritten.jsonl"
    assert runner.invoke(authz_cli, ["audit", "export", "--out", str(out)]).exit_code == 0
    result = runner.invoke(authz_cli, ["audit", "verify", "--export", str(out),
                                       "--checkpoints", str(copy)])
    assert result.exit_code == 1 and "entry 4" in result.output, result.output


def test_forged_checkpoint_signature_is_named(app, db, seal):
    append(db, 2)
    size = seal().tree_size
    _unguard(db)
    tamper(db, "UPDATE audit_checkpoints SET root_hash = :r", r=bytes(32))
    verdict = verify_database(db)
    assert not verdict.ok and verdict.bad_checkpoint == size, verdict.describe()
    assert "signature" in verdict.problem


def test_cli_seal_and_bad_input(runner, kek, db, tmp_path):
    append(db, 2)
    result = runner.invoke(authz_cli, ["audit", "seal", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sealed"] is True
    result = runner.invoke(authz_cli, ["audit", "seal"])
    assert result.exit_code == 0 and "nothing new" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    for args in (["audit", "verify", "--export", str(bad)],
                 ["audit", "verify", "--checkpoints", str(bad)],
                 ["audit", "verify", "--export", str(tmp_path / "missing.jsonl")]):
        result = runner.invoke(authz_cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("authz: error:"), result.output


def test_missing_tree_nodes_fail_verification_not_the_command(db, seal, runner):
    append(db, 3)
    seal()
    append(db, 2)
    size = seal().tree_size
    _unguard(db)
    tamper(db, "DELETE FROM audit_nodes WHERE level = 2 AND idx = 0")  # in the 5 -> 7 proof
    verdict = verify_database(db)
    assert not verdict.ok and verdict.bad_checkpoint == size, verdict.describe()
    result = runner.invoke(authz_cli, ["audit", "verify"])
    assert result.exit_code == 1, result.output
