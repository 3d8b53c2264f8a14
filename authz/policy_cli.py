"""``authz policy ...`` and ``authz disaster ...``: policy as code, and the disaster switch."""

from __future__ import annotations

import csv
import json
import secrets
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from authz import audit
from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.database import utcnow
from authz.database import write
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.extensions import db
from authz.policy import store
from authz.policy.engine import CONSENT_STATES
from authz.policy.engine import MODES
from authz.policy.engine import PATIENT_ROLE
from authz.policy.engine import Policy
from authz.policy.engine import compiled
from authz.policy.engine import default_directory
from authz.policy.engine import load_bundle
from authz.policy.models import DisasterDeclaration
from authz.registry.models import Institution
from authz.registry.rules import INSTITUTION_TYPES
from authz.registry.rules import ROLES

OPERATOR = "operator:cli"
SCENARIO_COLUMNS = ("role", "institution_type", "category", "purpose", "consent", "mode",
                    "expected")
MAX_SCENARIOS = 100_000
MAX_DISASTER = timedelta(days=30)


def _echo(value: object, as_json: bool, text: str) -> None:
    click.echo(json.dumps(value, ensure_ascii=False) if as_json else text)


@click.group("policy", cls=AppGroup)
def policy_group() -> None:
    """The decision rules (policies/): status, check, load, test."""


@policy_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def policy_status(as_json: bool) -> None:
    """The active policy version and whether the bundled policies/ differs from it."""
    session = db.session()
    active = store.active_hash(session)
    bundled = compiled(load_bundle(default_directory())).version
    value = {"active": active, "bundled": bundled, "bundled_is_active": active == bundled}
    _echo(value, as_json, f"active {active or '-'}\nbundled {bundled}"
          + ("" if active == bundled else "  (not active: `authz policy load`)"))


@policy_group.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def policy_check(directory: Path | None, as_json: bool) -> None:
    """Compile a policy directory (default: the bundled one) without activating it."""
    policy = compiled(load_bundle(directory or default_directory()))
    allowed = sum(cell.allow for cell in policy.table.values())
    value = {"version": policy.version, "rules": len(policy.rule_lines),
             "cells": len(policy.table), "permitting_cells": allowed}
    _echo(value, as_json, f"ok {policy.version}: {value['rules']} rules, {len(policy.table)}"
          f" cells, {allowed} permit")


@policy_group.command("load")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def policy_load(directory: Path | None, as_json: bool) -> None:
    """Store and activate a policy directory; every instance follows within a second."""
    source = str(directory or default_directory())
    version = store.activate(db.session(), load_bundle(Path(source)), source=source,
                             actor=OPERATOR)
    _echo({"version": version, "source": source}, as_json, f"active {version}")


@policy_group.command("test")
@click.argument("scenarios", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Test this policy directory instead of the active policy.")
@click.option("--json", "as_json", is_flag=True)
def policy_test(scenarios: Path, directory: Path | None, as_json: bool) -> None:
    """Run a scenario CSV (columns: role, institution_type, category, purpose, consent, mode,
    expected[, note]); exit 1 naming each failing row."""
    rows = read_scenarios(scenarios)
    policy = compiled(load_bundle(directory)) if directory else store.current(db.session())
    failures = run_scenarios(policy, rows)
    value = {"policy_version": policy.version, "scenarios": len(rows),
             "failed": [{"line": line, "expected": expected, "got": got, "rule": rule}
                        for line, expected, got, rule in failures]}
    text = "\n".join([*(f"{scenarios}:{line}: expected {expected}, got {got} (rule {rule})"
                        for line, expected, got, rule in failures),
                      f"{len(rows) - len(failures)} of {len(rows)} scenarios pass"
                      f" (policy {policy.version[:12]})"])
    _echo(value, as_json, text)
    if failures:
        sys.exit(1)


def read_scenarios(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            numbers: list[int] = []  # the file line of each line the reader sees

            def lines() -> Iterator[str]:
                for number, text in enumerate(handle, start=1):
                    if not text.startswith("#"):
                        numbers.append(number)
                        yield text

            reader = csv.DictReader(lines())
            missing = [c for c in SCENARIO_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InvalidInput(f"{path}: missing columns: {', '.join(missing)}")
            rows: list[tuple[int, dict[str, str]]] = []
            for row in reader:
                if len(rows) >= MAX_SCENARIOS:
                    raise InvalidInput(f"{path}: more than {MAX_SCENARIOS} scenarios")
                values = {k: (row.get(k) or "").strip() for k in SCENARIO_COLUMNS}
                line = numbers[reader.line_num - 1]
                if None in row or None in row.values():
                    raise InvalidInput(f"{path}:{line}: {len(reader.fieldnames or [])} values"
                                       " expected")
                for column, known in (("role", (*ROLES, PATIENT_ROLE)),
                                      ("institution_type", INSTITUTION_TYPES),
                                      ("category", CATEGORIES), ("purpose", PURPOSES)):
                    if values[column] not in known:
                        raise InvalidInput(f"{path}:{line}: unknown {column}"
                                           f" {values[column][:40]!r}")
                if values["expected"] not in ("permit", "deny"):
                    raise InvalidInput(f"{path}:{line}: expected must be permit or deny")
                if values["consent"] not in CONSENT_STATES:
                    raise InvalidInput(f"{path}:{line}: consent must be one of "
                                       + ", ".join(CONSENT_STATES))
                if values["mode"] not in MODES:
                    raise InvalidInput(f"{path}:{line}: mode must be normal or disaster")
                rows.append((line, values))
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}") from None
    except (UnicodeDecodeError, csv.Error):
        raise InvalidInput(f"{path}: not a UTF-8 CSV file") from None
    if not rows:
        raise InvalidInput(f"{path}: no scenarios")
    return rows


def run_scenarios(policy: Policy, rows: list[tuple[int, dict[str, str]]]
                  ) -> list[tuple[int, str, str, str]]:
    failures = []
    for line, row in rows:
        cell = policy.evaluate(row["role"], row["institution_type"], row["category"],
                               row["purpose"], row["consent"], row["mode"])
        got = "permit" if cell.allow else "deny"
        if got != row["expected"]:
            failures.append((line, row["expected"], got, cell.rule))
    return failures


@click.group("disaster", cls=AppGroup)
def disaster_group() -> None:
    """Disaster mode: institutions may view the disaster summary without consent, for a time."""


@disaster_group.command("declare")
@click.option("--institution", "institutions", multiple=True, required=True,
              help="An institution id (repeat for several).")
@click.option("--hours", type=click.IntRange(1, int(MAX_DISASTER.total_seconds()) // 3600),
              required=True, help="How long the declaration lasts (at most 30 days).")
@click.option("--reason", required=True, help="The designation (e.g. the ministry's notice).")
@click.option("--json", "as_json", is_flag=True)
def disaster_declare(institutions: tuple[str, ...], hours: int, reason: str,
                     as_json: bool) -> None:
    session = db.session()
    reason = reason.strip()
    if not 1 <= len(reason) <= 200 or not reason.isprintable():
        raise InvalidInput("reason must be 1 to 200 printable characters")
    wanted = sorted(set(institutions))
    for institution_id in wanted:
        if session.get(Institution, institution_id) is None:
            raise InvalidInput(f"unknown institution {institution_id[:40]!r}")
    now = utcnow()
    with write(session):
        row = DisasterDeclaration(id=f"dis_{secrets.token_hex(8)}", institutions=wanted,
                                  start=now, end=now + timedelta(hours=hours), reason=reason,
                                  created_at=now)
        session.add(row)
        session.flush()
        audit.record(session, audit.Event(
            type="disaster.declared", actor=OPERATOR,
            detail={"declaration": row.id, "institutions": wanted, "hours": hours}))
        value = _declaration(row)
    _echo(value, as_json, f"{value['id']} until {value['end']}")


@disaster_group.command("end")
@click.argument("declaration_id")
@click.option("--yes", is_flag=True, help="Confirm.")
def disaster_end(declaration_id: str, yes: bool) -> None:
    if not yes:
        raise InvalidInput("ending a disaster declaration needs --yes")
    session = db.session()
    with write(session):
        row = session.get(DisasterDeclaration, declaration_id)
        if row is None or row.ended_at is not None:
            raise NotFound("no such active declaration")
        row.ended_at = utcnow()
        session.flush()
        audit.record(session, audit.Event(type="disaster.ended", actor=OPERATOR,
                                          detail={"declaration": row.id}))
    click.echo(f"ended {declaration_id}")


@disaster_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def disaster_list(as_json: bool) -> None:
    rows = db.session().query(DisasterDeclaration).order_by(DisasterDeclaration.start).all()
    values = [_declaration(r) for r in rows]
    _echo(values, as_json, "\n".join(f"{v['id']}\t{v['start']}\t{v['end']}\t"
                                     f"{','.join(v['institutions'])}" for v in values))


def _declaration(row: DisasterDeclaration) -> dict[str, Any]:
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return {"id": row.id, "institutions": list(row.institutions),
            "start": row.start.strftime(stamp), "end": row.end.strftime(stamp),
            "reason": row.reason,
            "ended_at": row.ended_at.strftime(stamp) if row.ended_at else None}
