"""A patient's access history: who looked at their records and why, consent changes, logins.

Read from the audit log by the patient index (``patient_id``, ``seq``), newest first, paged by
sequence number. Only events naming this patient are ever read, so another patient's entries
cannot appear whatever the filters say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.audit.events import parse
from authz.audit.models import AuditEvent
from authz.audit.search import DEFAULT_LIMIT
from authz.audit.search import parse_int
from authz.audit.search import parse_time
from authz.errors import InvalidInput

ACCESS = "decision.evaluated"
CONSENT = ("consent.granted", "consent.narrowed", "consent.extended", "consent.revoked")
LOGIN = "identity.session_started"
KINDS = {"access": (ACCESS,), "consent": CONSENT, "login": (LOGIN,)}
MAX_LIMIT = 200
_INSTITUTION = re.compile(r"[A-Za-z0-9_]{1,64}")


@dataclass(frozen=True)
class HistoryQuery:
    since: datetime | None = None
    until: datetime | None = None
    institution: str | None = None
    kind: str | None = None
    before: int | None = None
    limit: int = DEFAULT_LIMIT


def parse_query(args: Mapping[str, str]) -> HistoryQuery:
    unknown = sorted(set(args) - {"since", "until", "institution", "kind", "before", "limit"})
    if unknown:
        raise InvalidInput(f"unknown parameter {unknown[0]!r}")
    values: dict[str, Any] = {}
    for name in ("since", "until"):
        if args.get(name):
            values[name] = parse_time(name, args[name])
    if "institution" in args:
        institution = args["institution"]
        if not _INSTITUTION.fullmatch(institution):
            raise InvalidInput("institution must be an institution id")
        values["institution"] = institution
    if "kind" in args:
        if args["kind"] not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
        values["kind"] = args["kind"]
    if "before" in args:
        values["before"] = parse_int("before", args["before"], 1, 2**53 - 1)
    if "limit" in args:
        values["limit"] = parse_int("limit", args["limit"], 1, MAX_LIMIT)
    query = HistoryQuery(**values)
    if query.since and query.until and query.since > query.until:
        raise InvalidInput("since is after until")
    return query


def history(session: Session, account_id: str, query: HistoryQuery
            ) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the patient's entries, newest first, and the cursor of the next page."""
    from authz.registry.models import Institution

    types = KINDS[query.kind] if query.kind else (ACCESS, *CONSENT, LOGIN)
    statement = select(AuditEvent.seq, AuditEvent.record).where(
        AuditEvent.patient_id == account_id, AuditEvent.type.in_(types))
    if query.before is not None:
        statement = statement.where(AuditEvent.seq < query.before)
    if query.since:
        statement = statement.where(AuditEvent.time >= query.since)
    if query.until:
        statement = statement.where(AuditEvent.time < query.until)
    if query.institution:
        statement = statement.where(AuditEvent.institution_id == query.institution)
    rows = session.execute(statement.order_by(AuditEvent.seq.desc())
                           .limit(query.limit + 1)).all()
    more = len(rows) > query.limit
    bodies = [parse(bytes(r.record)) for r in rows[:query.limit]]
    ids = {b["institution"] for b in bodies if isinstance(b.get("institution"), str)}
    names = {}
    if ids:
        names = {i.id: (i.name, i.type) for i in session.execute(
            select(Institution.id, Institution.name, Institution.type)
            .where(Institution.id.in_(ids))).all()}
    entries = [_entry(body, names) for body in bodies if body.get("patient") == account_id]
    return entries, (bodies[-1]["seq"] if more else None)


def _entry(body: dict[str, Any], names: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    kind = next(k for k, types in KINDS.items() if body["type"] in types)
    detail = body.get("detail") or {}
    institution = body.get("institution")
    entry: dict[str, Any] = {
        "seq": body["seq"], "time": body["time"], "kind": kind, "type": body["type"],
        "outcome": body["outcome"],
        "institution": ({"id": institution, "name": names.get(institution, ("", ""))[0],
                         "type": names.get(institution, ("", ""))[1]}
                        if institution else None),
        "purpose": detail.get("purpose") if isinstance(detail.get("purpose"), str) else None,
        "categories": [], "permitted": [], "denied": [], "emergency": False, "role": None,
    }
    if kind == "access":
        permitted = [c for c in detail.get("permitted", []) if isinstance(c, str)]
        denied = [c for c in detail.get("denied", []) if isinstance(c, str)]
        entry.update(categories=sorted({*permitted, *denied}), permitted=permitted,
                     denied=denied, emergency=detail.get("emergency") == 1,
                     role=detail.get("role") if isinstance(detail.get("role"), str) else None)
    elif kind == "consent":
        entry["categories"] = [c for c in detail.get("categories", []) if isinstance(c, str)]
        entry["consent_id"] = detail.get("consent_id")
    return entry
