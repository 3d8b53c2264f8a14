"""``decisions``: one in-process ``decide()`` at 10^3 and 10^6 stored consents, beside naive
pycasbin with the consents loaded as policy lines.

For each database (SQLite always; PostgreSQL when ``--database-url`` or
``AUTHZ_TEST_DATABASE_URL`` names one) and each consent count, a fresh migrated database is
filled with synthetic consents (four per patient, spread over 50 institutions, a tenth of them
revoked or expired), then ``decide()`` runs for random (patient, institution) pairs: medians and
p99 in microseconds, without the audit commit; the audit commit (``record()``, one transaction)
is measured separately. The ratio large/small shows whether the lookup stays flat. The process's
resident memory before and after the decisions, at each size, shows that a worker's memory does
not depend on the number of consents (they are never loaded into memory).

The naive baseline is what the issue warns about: a plain pycasbin ``Enforcer`` whose policy
lines are the consents themselves (one line per patient, institution, category), checked with
an ordinary matcher; it is linear in the number of lines.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import casbin
from casbin import persist

from authz.consent.models import Consent
from authz.consent.service import BIT
from authz.consent.vocabulary import CATEGORIES
from authz.database import utcnow
from authz.database import write
from authz.extensions import db
from authz.identity.models import Account
from authz.policy import store
from authz.policy.decide import Question
from authz.policy.decide import decide
from authz.policy.decide import record
from authz.registry.models import Institution
from benchmarks.audit import build_app
from benchmarks.audit import postgres_databases
from benchmarks.audit import redact
from benchmarks.audit import sqlite_databases
from benchmarks.common import BenchmarkError
from benchmarks.common import figure
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import percentile

FULL = {"small": 1_000, "large": 1_000_000, "checks": 20_000, "naive": [1_000, 10_000, 100_000]}
QUICK = {"small": 1_000, "large": 100_000, "checks": 2_000, "naive": [1_000, 10_000]}
INSTITUTIONS = 50
PER_PATIENT = 4
CATS = list(CATEGORIES)
PURPOSES = ("treatment_visit", "dispensing", "home_or_online_care")


HTTP_FULL = {"requests": 3_000, "repeats": 3}
HTTP_QUICK = {"requests": 300, "repeats": 1}
HTTP_CONNECTIONS = 8
HTTP_WORKERS = 2
PERMIT_BODY = r'"decision"\s*:\s*"permit"'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL",
                        help="also measure this PostgreSQL server (default: env"
                        " AUTHZ_TEST_DATABASE_URL)")
    parser.add_argument("--large", type=int, metavar="N",
                        help=f"stored consents in the large run (default {FULL['large']};"
                        f" --quick {QUICK['large']})")
    parser.add_argument("--checks", type=int, metavar="N", help="decisions per run")
    parser.add_argument("--no-http", action="store_true",
                        help="skip the HTTP comparison with oidc-provider's introspection")
    parser.add_argument("--node", default="node", help="Node.js for oidc-provider")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    if args.large:
        sizes["large"] = args.large
    if args.checks:
        sizes["checks"] = args.checks
    result: dict[str, Any] = {"errors": 0, "consents": [sizes["small"], sizes["large"]]}
    with tempfile.TemporaryDirectory(prefix="authz-bench-decisions-") as tmp:
        workdir = Path(tmp)
        databases: list[tuple[str, Any]] = [("sqlite", sqlite_databases(workdir / "sqlite"))]
        pg_url = args.database_url or os.environ.get("AUTHZ_TEST_DATABASE_URL")
        if pg_url:
            databases.append(("postgresql", postgres_databases(pg_url, workdir / "pg")))
            result["postgresql_url"] = redact(pg_url)
        for name, manager in databases:
            with manager as fresh:
                result[name] = _measure(fresh, workdir / name, sizes)
                result["errors"] += result[name].pop("errors")
    result["naive_pycasbin"] = _naive(sizes["naive"])
    if not args.no_http:
        result["http"] = _http(HTTP_QUICK if args.quick else HTTP_FULL, args.node)
        result["errors"] += result["http"].pop("errors")
    for name in ("sqlite", "postgresql"):
        if name in result:
            median_us = result[name][str(sizes["small"])]["decide_median_us"]
            result[name]["decide_vs_naive_1000"] = figure(
                result["naive_pycasbin"]["1000"]["median_us"] / median_us, 1)
    return result


def _measure(fresh: Any, instance: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {"errors": 0}
    for count in (sizes["small"], sizes["large"]):
        url = fresh()
        app = build_app(url, instance)
        with app.app_context():
            session = db.session()
            started = time.perf_counter()
            patients, institutions, kinds = _fill(session, count)
            fill_s = time.perf_counter() - started
            log(f"{count} consents stored in {fill_s:.1f} s")
            policy = store.current(session)
            rss_before = _rss_mb()
            rng = random.Random(count)
            now = utcnow()
            timings, permits = [], 0
            questions = []
            # Half the questions name a pair that holds a consent, half a random pair.
            held = session.execute(
                Consent.__table__.select().with_only_columns(
                    Consent.patient_id, Consent.institution_id)
                .limit(sizes["checks"])).all()
            for n in range(sizes["checks"]):
                if n % 2 and held:
                    patient, institution = held[rng.randrange(len(held))]
                else:
                    patient = patients[rng.randrange(len(patients))]
                    institution = institutions[rng.randrange(len(institutions))]
                questions.append(Question(
                    patient_id=patient, institution_id=institution,
                    institution_type=kinds[institution],
                    categories=tuple(rng.sample(CATS, 3)), purpose="treatment_visit",
                    role="physician", practitioner="bench"))
            for question in questions[:200]:  # warm up statement caches
                decide(session, policy, question, now)
            for question in questions:
                t0 = time.perf_counter_ns()
                answer = decide(session, policy, question, now)
                timings.append((time.perf_counter_ns() - t0) / 1000)
                permits += bool(answer.permitted)
            rss_after = _rss_mb()
            session.rollback()
            commits = []
            for question in questions[:min(500, len(questions))]:
                answer = decide(session, policy, question, now)
                t0 = time.perf_counter_ns()
                record(session, [answer], client_id="bench", now=now)
                commits.append((time.perf_counter_ns() - t0) / 1000)
            db.session.remove()
            db.engine.dispose()
        timings.sort()
        commits.sort()
        figures[str(count)] = {
            "decide_median_us": figure(median(timings), 1),
            "decide_p99_us": figure(percentile(timings, 0.99), 1),
            "audit_commit_median_us": figure(median(commits), 1),
            "audit_commit_p99_us": figure(percentile(commits, 0.99), 1),
            "decisions_with_a_permit": permits, "checks": len(timings),
            "fill_s": figure(fill_s, 1),
            "rss_mb_before_decisions": figure(rss_before, 1),
            "rss_mb_after_decisions": figure(rss_after, 1),
        }
    small, large = figures[str(sizes["small"])], figures[str(sizes["large"])]
    figures["large_over_small_median"] = figure(
        large["decide_median_us"] / small["decide_median_us"], 3)
    return figures


def _fill(session: Any, count: int) -> tuple[list[str], list[str], dict[str, str]]:
    """``count`` consents: PER_PATIENT per patient over INSTITUTIONS institutions."""
    now = utcnow()
    kinds = {}
    institutions = []
    with write(session):
        for n in range(INSTITUTIONS):
            institution_id = f"inst_{n:04d}"
            kind = ("clinic", "hospital", "pharmacy")[n % 3]
            session.add(Institution(id=institution_id, name=f"Bench {n}", type=kind,
                                    code=f"B{n:06d}", roles=["physician"], emergency=False))
            institutions.append(institution_id)
            kinds[institution_id] = kind
    rng = random.Random(7)
    patients = [f"acct_{n:08d}" for n in range(max(1, count // PER_PATIENT))]
    accounts = Account.__table__
    consents = Consent.__table__
    chunk = 20_000
    for start in range(0, len(patients), chunk):
        with write(session):
            session.execute(accounts.insert(), [
                {"id": p, "person_link_id": f"link-{p}", "assurance": "verified",
                 "created_at": now, "updated_at": now} for p in patients[start:start + chunk]])
    rows: list[dict[str, Any]] = []
    for n in range(count):
        categories = rng.sample(CATS, 4)
        status = "revoked" if n % 10 == 0 else "active"
        end = now + timedelta(hours=24) if n % 10 != 1 else now - timedelta(hours=1)
        rows.append({
            "id": f"cns_{n:016x}", "patient_id": patients[n // PER_PATIENT % len(patients)],
            "institution_id": institutions[rng.randrange(INSTITUTIONS)], "decision": "permit",
            "purpose": PURPOSES[n % len(PURPOSES)], "categories": categories,
            "category_mask": sum(BIT[c] for c in categories), "start": now - timedelta(hours=1),
            "end": end, "status": status, "version": 1, "method": "demo", "acr": None,
            "auth_time": None, "provenance": {"source": "benchmark"}, "created_at": now,
            "updated_at": now, "revoked_at": None})
        if len(rows) == chunk:
            with write(session):
                session.execute(consents.insert(), rows)
            rows = []
    if rows:
        with write(session):
            session.execute(consents.insert(), rows)
    session.rollback()
    return patients, institutions, kinds


class _Lines(persist.Adapter):  # type: ignore[misc]
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def load_policy(self, model: Any) -> None:
        for line in self.lines:
            persist.load_policy_line(line, model)


NAIVE_MODEL = """
[request_definition]
r = patient, institution, category
[policy_definition]
p = patient, institution, category
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = r.patient == p.patient && r.institution == p.institution && r.category == p.category
"""


def _naive(counts: list[int]) -> dict[str, Any]:
    """pycasbin with one policy line per consented (patient, institution, category)."""
    figures: dict[str, Any] = {}
    for count in counts:
        lines = [f"p, patient-{n}, inst-{n % INSTITUTIONS}, {CATS[n % len(CATS)]}"
                 for n in range(count)]
        enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=NAIVE_MODEL), _Lines(lines))
        rng = random.Random(count)
        checks = max(20, min(2_000, 2_000_000 // count))
        timings = []
        for _ in range(checks):
            n = rng.randrange(count)
            t0 = time.perf_counter_ns()
            enforcer.enforce(f"patient-{n}", f"inst-{n % INSTITUTIONS}", "surgery")
            timings.append((time.perf_counter_ns() - t0) / 1000)
        timings.sort()
        figures[str(count)] = {"median_us": figure(median(timings), 1),
                               "p99_us": figure(percentile(timings, 0.99), 1),
                               "checks": checks}
        log(f"naive pycasbin at {count} lines: {figures[str(count)]['median_us']} us")
    return figures


def _rss_mb() -> float:
    """This process's resident set now (Linux), in MiB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / (1024 * 1024)



# -- over HTTP -------------------------------------------------------------------------------------

def _http(settings: dict[str, int], node: str) -> dict[str, Any]:
    """Decision API throughput (audit on) beside oidc-provider's introspection, same machine,
    same Python load generator (closed loop, keep-alive), medians over the repeats."""
    from benchmarks import tokens

    figures: dict[str, Any] = {"errors": 0, "connections": HTTP_CONNECTIONS,
                               "authz_workers": HTTP_WORKERS, "load_generator": "python"}
    runs: dict[str, list[Any]] = {"authz_decisions": [], "oidc_provider_introspection": []}
    with tempfile.TemporaryDirectory(prefix="authz-bench-decisions-http-") as folder:
        workdir = Path(folder)
        for _ in range(settings["repeats"]):
            with tokens.authz_server(workdir, HTTP_WORKERS) as target:
                body, token = _prepare_authz(target)
                headers = (("Content-Type", "application/json"),
                           ("Authorization", f"Bearer {token}"))
                runs["authz_decisions"].append(_load(
                    tokens, target.port, "/v1/decisions", lambda n, body=body: [body] * n, settings,
                    PERMIT_BODY, headers))
            reason = tokens.peer_unavailable(node)
            if reason:
                figures["note"] = reason
                continue
            tokens.ensure_node_dependencies()
            with tokens.peer_server(workdir, node) as peer:
                pool = tokens._issue_pool(peer, 50)
                runs["oidc_provider_introspection"].append(_load(
                    tokens, peer.port, peer.introspect_path,
                    lambda n, pool=pool: peer.introspect_bodies(pool, n), settings,
                    tokens.ACTIVE_BODY,
                    tokens.FORM_HEADERS))
    for name, outcomes in runs.items():
        if outcomes:
            figures["errors"] += sum(o.errors for o in outcomes)
            figures[name] = {
                "requests_per_s": figure(median([o.per_second for o in outcomes]), 1),
                "latency_p50_ms": figure(median([o.p50_ms for o in outcomes])),
                "latency_p99_ms": figure(median([o.p99_ms for o in outcomes])),
                "requests": sum(o.requests for o in outcomes)}
    if runs["oidc_provider_introspection"] and runs["authz_decisions"]:
        figures["decisions_over_peer_introspection"] = figure(
            figures["authz_decisions"]["requests_per_s"]
            / figures["oidc_provider_introspection"]["requests_per_s"])
    return figures


def _load(tokens: Any, port: int, path: str, bodies: Any, settings: dict[str, int],
          expect: str, headers: tuple[tuple[str, str], ...]) -> Any:
    slack = 2 * HTTP_CONNECTIONS + 8
    outcome = None
    for count in (max(50, settings["requests"] // 10), settings["requests"]):  # warm-up first
        load = tokens.PostLoad(port, path, bodies(count + slack), count, HTTP_CONNECTIONS,
                               120.0, expect, headers)
        outcome = tokens.generate("python", load).outcome
    log(f"  {path}: {outcome.per_second:.0f} req/s, p50 {outcome.p50_ms:.2f} ms,"
        f" {outcome.errors} errors")
    return outcome


def _prepare_authz(target: Any) -> tuple[str, str]:
    """A patient with a visit consent for the benchmark clinic; the clinic's decision token."""
    import json

    from sqlalchemy import select

    from authz import create_app
    from authz.consent import service
    from authz.identity.crypto import IdentityKeys
    from benchmarks import tokens

    instance = target.log_path.parent
    previous = os.environ.get("AUTHZ_INSTANCE_PATH")
    os.environ["AUTHZ_INSTANCE_PATH"] = str(instance)
    try:
        app = create_app({"AUTHZ_LOG_LEVEL": "WARNING"})
    finally:
        if previous is None:
            os.environ.pop("AUTHZ_INSTANCE_PATH", None)
        else:
            os.environ["AUTHZ_INSTANCE_PATH"] = previous
    with app.app_context():
        session = db.session()
        clinic = session.execute(select(Institution.id).where(
            Institution.code == "BENCH-CLINIC")).scalar_one()
        now = utcnow()
        with write(session):
            session.add(Account(id="acct_bench_patient", person_link_id="bench-patient",
                                assurance="login_only", created_at=now, updated_at=now))
        sub = IdentityKeys.from_kek(app.config["AUTHZ_KEK_BYTES"]).pairwise_sub(
            "acct_bench_patient", clinic)
        service.grant(session, patient_id="acct_bench_patient", institution_id=clinic,
                      purpose="treatment_visit", categories=["medication", "lab_results"],
                      end=None, now=now, pairwise=sub,
                      capture=service.Capture(method="demo", acr=None, auth_time=None,
                                              provenance={"source": "benchmark"}))
        db.session.remove()
        db.engine.dispose()
    status, text = tokens._request(target.port, "POST", target.token_path,
                                   target.token_bodies(1)[0])
    if status != 200:
        raise BenchmarkError(f"decision token: {status} {text[:200]}")
    token = json.loads(text)["access_token"]
    body = json.dumps({"patient": sub, "categories": ["medication", "lab_results"],
                       "action": "read", "purpose": "treatment_visit", "role": "physician",
                       "practitioner": "bench-practitioner"})
    return body, token
