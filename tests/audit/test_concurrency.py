"""Appends from several OS processes at once still form one unbroken chain."""

from __future__ import annotations

import multiprocessing

import proc_helpers

from authz.audit.verify import verify_database

WORKERS = 4
EACH = 25


def test_concurrent_appends_from_processes_keep_the_chain(db, database_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(WORKERS) as pool:
            pending = [pool.apply_async(proc_helpers.append_events,
                                        (database_url, str(tmp_path / f"i{w}"), w, EACH, start))
                       for w in range(WORKERS)]
            start.set()
            results = [p.get(timeout=120) for p in pending]
    seqs = sorted(s for worker in results for s in worker)
    assert seqs == list(range(1, WORKERS * EACH + 1))  # no sequence number given twice
    verdict = verify_database(db)
    assert verdict.ok, verdict.describe()
    assert verdict.count == WORKERS * EACH
