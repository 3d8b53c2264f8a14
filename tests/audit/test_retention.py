"""Retention moves whole sealed ranges out to a verified file; what stays still verifies."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_chain import append

from authz.audit import checkpoints
from authz.audit import merkle
from authz.audit import retention
from authz.audit.export import verify_export
from authz.audit.verify import verify_database
from authz.cli import authz_cli
from authz.database import utcnow
from authz.database import write
from authz.errors import InvalidInput
from authz.keys import service as keys


def test_retained_range_moves_out_and_the_rest_still_verifies(app, db, runner, tmp_path):
    kek = app.config["AUTHZ_KEK_BYTES"]
    keys.ensure_keys(db, kek)
    append(db, 5)
    first = checkpoints.seal(db, kek)
    append(db, 4)  # unsealed events are never retained
    later = utcnow() + timedelta(days=30)
    out = tmp_path / "retained.jsonl"
    result = retention.retain(db, later, out, actor="test", retention_days=1, now=later)
    assert result["retained"] == first.tree_size and result["through_seq"] == first.tree_size
    assert db.execute(sa.text("SELECT min(seq) FROM audit_events")).scalar_one() == \
        first.tree_size + 1
    moved = verify_export(out)
    assert moved.ok and moved.count == first.tree_size, moved.describe()
    verdict = verify_database(db)
    assert verdict.ok, verdict.describe()
    # the retention itself is an event; later seals and proofs still work across the boundary
    second = checkpoints.seal(db, kek)
    proof = checkpoints.inclusion(db, 2, second.tree_size)  # a retained entry: its leaf stays
    merkle.verify_inclusion(1, second.tree_size, bytes.fromhex(proof["leaf_hash"]),
                            [bytes.fromhex(p) for p in proof["proof"]], second.root_hash)
    assert verify_database(db).ok
    exported = tmp_path / "rest.jsonl"
    assert runner.invoke(authz_cli, ["audit", "export", "--out", str(exported)]).exit_code == 0
    rest = verify_export(exported)
    assert rest.ok, rest.describe()
    header = json.loads(exported.read_text().splitlines()[0])
    assert header["base"]["size"] == first.tree_size
    # the next sealed range goes the same way, then nothing sealed is left to move
    again = retention.retain(db, later, tmp_path / "again.jsonl", actor="test",
                             retention_days=1, now=later)
    assert again["retained"] == second.tree_size - first.tree_size
    assert verify_database(db).ok
    assert verify_export(tmp_path / "again.jsonl").ok
    assert retention.retain(db, later, tmp_path / "none.jsonl", actor="test",
                            retention_days=1, now=later)["retained"] == 0
    # the file is never overwritten
    append(db, 1)
    checkpoints.seal(db, kek)
    with pytest.raises(InvalidInput):
        retention.retain(db, later + timedelta(days=1), out, actor="test", retention_days=1,
                         now=later + timedelta(days=2))
    # the database still refuses deleting anything not retained
    newest = db.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar_one()
    db.rollback()
    with pytest.raises(sa.exc.DBAPIError), write(db):
        db.execute(sa.text("DELETE FROM audit_events WHERE seq = :s"), {"s": newest})


def test_retain_cli_asks_first_and_respects_the_period(runner, db, app, tmp_path):
    keys.ensure_keys(db, app.config["AUTHZ_KEK_BYTES"])
    append(db, 2)
    out = tmp_path / "r.jsonl"
    refused = runner.invoke(authz_cli, ["audit", "retain", "--before", "2030-01-01", "--out",
                                        str(out)])
    assert refused.exit_code == 2 and "--yes" in refused.output
    bad = runner.invoke(authz_cli, ["audit", "retain", "--before", "soon", "--out", str(out),
                                    "--yes"])
    assert bad.exit_code == 2
    # fresh events are inside the retention period: nothing moves, nothing is written
    result = runner.invoke(authz_cli, ["audit", "retain", "--before", "2100-01-01", "--out",
                                       str(out), "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["retained"] == 0 and not out.exists()
