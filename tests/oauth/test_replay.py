"""The replay store: first sight wins, expiry frees a key, purge works in batches, and one of
several processes racing for the same key wins (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import multiprocessing
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import oauth_proc
import pytest
import sqlalchemy as sa

from authz.database import write
from authz.jobs import runner
from authz.oauth import replay
from authz.oauth.replay import ReplayEntry

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
RACERS = 6


def count(db) -> int:
    db.rollback()
    return db.execute(sa.select(sa.func.count()).select_from(ReplayEntry)).scalar_one()


def test_first_sight_is_true_and_a_replay_false(db):
    assert replay.remember(db, "dpop", "jkt:jti-1", LATER, NOW) is True
    assert replay.remember(db, "dpop", "jkt:jti-1", LATER, NOW) is False
    assert replay.remember(db, "dpop", "jkt:jti-1", LATER, NOW + timedelta(minutes=4)) is False
    assert replay.remember(db, "dpop", "jkt:jti-2", LATER, NOW) is True


def test_scopes_are_independent(db):
    assert replay.remember(db, "dpop", "same", LATER, NOW)
    assert replay.remember(db, "assertion", "same", LATER, NOW)
    assert not replay.remember(db, "assertion", "same", LATER, NOW)
    assert count(db) == 2


def test_an_expired_entry_frees_its_key_and_is_renewed(db):
    assert replay.remember(db, "dpop", "k", NOW + timedelta(seconds=10), NOW)
    assert not replay.remember(db, "dpop", "k", NOW + timedelta(seconds=20),
                               NOW + timedelta(seconds=9))
    # Expired exactly at expires_at: the entry is taken over with the new expiry...
    assert replay.remember(db, "dpop", "k", NOW + timedelta(seconds=40),
                           NOW + timedelta(seconds=10))
    # ...so the key is a replay again until then.
    assert not replay.remember(db, "dpop", "k", NOW + timedelta(seconds=50),
                               NOW + timedelta(seconds=39))
    assert count(db) == 1


def test_only_a_hash_of_the_key_is_stored(db):
    replay.remember(db, "dpop", "thumbprint:raw-jti-value", LATER, NOW)
    db.rollback()
    stored = db.execute(sa.select(ReplayEntry.key)).scalar_one()
    assert stored == hashlib.sha256(b"thumbprint:raw-jti-value").hexdigest()
    assert "raw-jti-value" not in stored


def test_remember_joins_the_callers_write_transaction(db):
    with pytest.raises(RuntimeError), write(db):
        assert replay.remember(db, "assertion", "rolled-back", LATER, NOW)
        raise RuntimeError("the caller's work failed")
    assert replay.remember(db, "assertion", "rolled-back", LATER, NOW)  # nothing was kept


def test_a_replay_leaves_the_callers_transaction_usable(db):
    replay.remember(db, "assertion", "seen", LATER, NOW)
    with write(db):
        assert not replay.remember(db, "assertion", "seen", LATER, NOW)
        assert replay.remember(db, "assertion", "new", LATER, NOW)
    assert count(db) == 2


@pytest.mark.parametrize("scope", ["", "s" * 17])
def test_a_bad_scope_is_refused(db, scope):
    with pytest.raises(ValueError, match="scope"):
        replay.remember(db, scope, "k", LATER, NOW)


def test_an_entry_expiring_at_once_protects_nothing_but_still_finds_a_replay(db):
    # A caller at the very end of a value's window (exp + leeway == now) must not crash.
    assert replay.remember(db, "assertion", "edge", NOW, NOW)
    assert replay.remember(db, "assertion", "edge", NOW, NOW)
    assert replay.remember(db, "assertion", "long", LATER, NOW)
    assert not replay.remember(db, "assertion", "long", NOW, NOW)


def fill(db, expired: int, live: int) -> None:
    for i in range(expired):
        replay.remember(db, "dpop", f"old-{i}", NOW + timedelta(seconds=1), NOW)
    for i in range(live):
        replay.remember(db, "dpop", f"live-{i}", LATER, NOW)


@pytest.mark.parametrize(("expired", "batch", "statements"), [
    pytest.param(12, 5, 3, id="5+5+2"),
    pytest.param(10, 5, 3, id="5+5+0"),
    pytest.param(3, 5000, 1, id="one batch"),
    pytest.param(0, 5, 1, id="nothing to do"),
])
def test_purge_deletes_expired_entries_in_batches(db, expired, batch, statements):
    fill(db, expired, live=3)
    deletes = []

    def on_execute(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    engine = db.get_bind()
    sa.event.listen(engine, "before_cursor_execute", on_execute)
    try:
        assert replay.purge(db, NOW + timedelta(seconds=1), batch=batch) == expired
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
    assert len(deletes) == statements
    assert count(db) == 3
    assert replay.remember(db, "dpop", "old-0", LATER, NOW + timedelta(seconds=2))
    assert not replay.remember(db, "dpop", "live-0", LATER, NOW + timedelta(seconds=2))


def test_purge_refuses_an_empty_batch(db):
    with pytest.raises(ValueError, match="batch"):
        replay.purge(db, NOW, batch=0)


def test_the_purge_job_is_registered_and_runs(db, app):
    job = next(j for j in runner.registered() if j.name == "oauth.purge_replay")
    assert job.interval == timedelta(minutes=10)
    fill(db, expired=4, live=1)
    outcomes = runner.run_due(db, app.config, jobs=[job], now=NOW + timedelta(seconds=1))
    assert [(o.status, o.result) for o in outcomes] == [("ran", 4)]
    assert count(db) == 1


def race(database_url: str, tmp_path, key: str, expires_at: datetime, now: datetime) -> list[bool]:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(RACERS)  # all of them built and connected, then all at once
        with context.Pool(RACERS) as pool:
            pending = [pool.apply_async(oauth_proc.remember_once,
                                        (database_url, str(tmp_path / f"i{w}"), key, expires_at,
                                         now, start))
                       for w in range(RACERS)]
            return [p.get(timeout=120) for p in pending]


@pytest.mark.slow
def test_exactly_one_of_several_processes_wins_a_new_key(db, database_url, tmp_path):
    results = race(database_url, tmp_path, "jkt:raced", LATER, NOW)
    assert sorted(results) == [False] * (RACERS - 1) + [True]
    assert count(db) == 1


@pytest.mark.slow
def test_exactly_one_of_several_processes_takes_over_an_expired_key(db, database_url, tmp_path):
    assert replay.remember(db, "dpop", "jkt:again", NOW + timedelta(seconds=1), NOW)
    db.rollback()
    results = race(database_url, tmp_path, "jkt:again", LATER + timedelta(minutes=1), LATER)
    assert sorted(results) == [False] * (RACERS - 1) + [True]
    db.rollback()
    entry = db.execute(sa.select(ReplayEntry)).scalar_one()
    assert entry.expires_at == LATER + timedelta(minutes=1)
