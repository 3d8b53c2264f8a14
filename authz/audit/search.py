"""What auditors read: event search, its export formats, and the emergency review queue.

Pagination is by sequence number (``after``), so a page never shifts while events arrive.
Auditors see events, which carry identifiers only (never record content or personal
attributes); every read is itself recorded (:func:`record_read`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz import audit
from authz.audit.events import parse
from authz.audit.events import timestamp
from authz.audit.models import AuditEvent
from authz.database import utcnow
from authz.database import write
from authz.errors import Conflict
from authz.errors import InvalidInput
from authz.errors import NotFound

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
FORMATS = ("json", "jsonl", "csv", "fhir")
OUTCOMES = ("success", "failure", "permit", "deny")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.?\*?$")
CSV_COLUMNS = ("seq", "time", "type", "outcome", "institution", "patient", "actor", "client",
               "reason", "request_id", "policy_version", "hash")
REVIEW_OUTCOMES = ("justified", "unjustified")


@dataclass(frozen=True)
class Query:
    since: datetime | None = None
    until: datetime | None = None
    institution: str | None = None
    patient: str | None = None
    type: str | None = None
    outcome: str | None = None
    after: int = 0
    limit: int = DEFAULT_LIMIT
    format: str = "json"

    def filters(self) -> dict[str, str]:
        """The filters as strings, for the audit event of this read."""
        values = {"since": self.since and timestamp(self.since),
                  "until": self.until and timestamp(self.until),
                  "institution": self.institution, "patient": self.patient, "type": self.type,
                  "outcome": self.outcome}
        return {k: v for k, v in values.items() if v}


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                     r"([Zz]|[+-]\d{2}:\d{2}))?")


def parse_time(name: str, value: str) -> datetime:
    """RFC 3339 date-time with an offset (``Z`` or ``+09:00``), or a date (midnight UTC).

    A leap second counts as :59 and fractions beyond microseconds are cut, so every RFC 3339
    value is accepted; an instant outside the representable range is clamped to it.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise InvalidInput(f"{name} must be an RFC 3339 date-time with an offset, or a date")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        if hour is None:
            return datetime(int(year), int(month), int(day), tzinfo=UTC)
        zone = UTC
        if offset not in ("Z", "z"):
            sign = 1 if offset[0] == "+" else -1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset")
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        micro = int((fraction or ".0")[1:7].ljust(6, "0"))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          min(int(second), 59), micro, tzinfo=zone)
    except ValueError:
        raise InvalidInput(f"{name} is not a valid date-time") from None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


def parse_int(name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,18}", value) or not low <= int(value) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def parse_query(args: Mapping[str, str], allowed: frozenset[str] | None = None) -> Query:
    """Validate search parameters; unknown names are refused so typos do not widen a search."""
    known = allowed or frozenset({"since", "until", "institution", "patient", "type", "outcome",
                                  "after", "limit", "format"})
    unknown = sorted(set(args) - known)
    if unknown:
        raise InvalidInput(f"unknown parameter {unknown[0]!r}")
    values: dict[str, Any] = {}
    for name in ("since", "until"):
        if args.get(name):
            values[name] = parse_time(name, args[name])
    for name in ("institution", "patient"):
        if name in args:
            if not _ID.fullmatch(args[name]):
                raise InvalidInput(f"{name} must be an identifier")
            values[name] = args[name]
    if "type" in args:
        if not _TYPE.fullmatch(args["type"]) or len(args["type"]) > 64:
            raise InvalidInput("type must be an event type such as decision.evaluated or"
                               " consent.*")
        values["type"] = args["type"]
    if "outcome" in args:
        if args["outcome"] not in OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}")
        values["outcome"] = args["outcome"]
    if "after" in args:
        values["after"] = parse_int("after", args["after"], 0, 2**53 - 1)
    if "limit" in args:
        values["limit"] = parse_int("limit", args["limit"], 1, MAX_LIMIT)
    if "format" in args:
        if args["format"] not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
        values["format"] = args["format"]
    query = Query(**values)
    if query.since and query.until and query.since > query.until:
        raise InvalidInput("since is after until")
    return query


def search(session: Session, query: Query) -> tuple[list[dict[str, Any]], int | None]:
    """One page of events in sequence order and the cursor of the next page (None: last)."""
    statement = select(AuditEvent.seq, AuditEvent.record, AuditEvent.hash).where(
        AuditEvent.seq > query.after)
    if query.since:
        statement = statement.where(AuditEvent.time >= query.since)
    if query.until:
        statement = statement.where(AuditEvent.time < query.until)
    if query.institution:
        statement = statement.where(AuditEvent.institution_id == query.institution)
    if query.patient:
        statement = statement.where(AuditEvent.patient_id == query.patient)
    if query.type:
        if query.type.endswith("*"):
            prefix = query.type.rstrip("*")
            statement = statement.where(AuditEvent.type.startswith(prefix, autoescape=True))
        else:
            statement = statement.where(AuditEvent.type == query.type)
    if query.outcome:
        statement = statement.where(AuditEvent.outcome == query.outcome)
    rows = session.execute(statement.order_by(AuditEvent.seq).limit(query.limit + 1)).all()
    more = len(rows) > query.limit
    events = [event_view(bytes(r.record), bytes(r.hash)) for r in rows[:query.limit]]
    return events, (events[-1]["seq"] if more else None)


def event_view(record: bytes, digest: bytes) -> dict[str, Any]:
    body = parse(record)
    view: dict[str, Any] = {k: body[k] for k in ("seq", "time", "type", "outcome", "actor")
                            if k in body}
    for name in ("institution", "patient", "client", "reason", "request_id", "policy_version"):
        view[name] = body.get(name)
    view["detail"] = body.get("detail", {})
    view["hash"] = digest.hex()
    return view


def record_read(session: Session, auditor_id: str, operation: str, *, count: int = 0,
                request_id: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
    """Every audit read is an audit event of its own."""
    with write(session):
        audit.record(session, audit.Event(
            type="audit.read", actor=f"auditor:{auditor_id}", request_id=request_id,
            detail={"operation": operation, "count": count, **(detail or {})}))


# -- formats -------------------------------------------------------------------------------------

def to_jsonl(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in events)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # CSV injection: a spreadsheet must not evaluate a cell as a formula
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(events: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for event in events:
        writer.writerow([_cell(event.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


DCM = "http://dicom.nema.org/resources/ontology/DCM"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
EVENT_TYPE_SYSTEM = "urn:authz:audit-event-type"
PURPOSE_SYSTEM = "urn:authz:purpose"
CATEGORY_SYSTEM = "urn:authz:category"
# DICOM audit event IDs (PS3.15 A.5) by our event family
FHIR_TYPES = {"decision": ("110110", "Patient Record"), "identity": ("110114",
              "User Authentication"), "audit": ("110112", "Query"),
              "consent": ("110110", "Patient Record")}
DEFAULT_TYPE = ("110100", "Application Activity")
ACTIONS = frozenset({"C", "R", "U", "D", "E"})
FHIR_OUTCOMES = {"success": "0", "permit": "0", "deny": "4", "failure": "8"}


def to_fhir(event: dict[str, Any]) -> dict[str, Any]:
    """One event as an HL7 FHIR R4 ``AuditEvent`` (identifiers only)."""
    family = event["type"].split(".", 1)[0]
    code, display = FHIR_TYPES.get(family, DEFAULT_TYPE)
    detail = event.get("detail") or {}
    action = {"consent": "U", "audit": "R"}.get(family, "E")
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"authz-{event['seq']}",
        "type": {"system": DCM, "code": code, "display": display},
        "subtype": [{"system": EVENT_TYPE_SYSTEM, "code": event["type"]}],
        "action": action,
        "recorded": event["time"],
        "outcome": FHIR_OUTCOMES.get(event["outcome"], "8"),
        "outcomeDesc": event["outcome"],
        "agent": [{"who": {"identifier": {"system": "urn:authz:actor",
                                          "value": event["actor"]}},
                   "requestor": True}],
        "source": {"observer": {"display": "authz"},
                   "type": [{"system": SOURCE_TYPE, "code": "4",
                             "display": "Application Server"}]},
        "entity": [{"what": {"identifier": {"system": "urn:authz:audit-log",
                                            "value": str(event["seq"])}},
                    "type": {"system": ENTITY_TYPE, "code": "2",
                             "display": "System Object"}}],
    }
    if isinstance(detail.get("purpose"), str):
        resource["purposeOfEvent"] = [{"coding": [{"system": PURPOSE_SYSTEM,
                                                   "code": detail["purpose"]}]}]
    if event.get("institution"):
        resource["agent"].append({"who": {"identifier": {
            "system": "urn:authz:institution", "value": event["institution"]}},
            "requestor": False})
    if event.get("patient"):
        resource["entity"].append({"what": {"identifier": {
            "system": "urn:authz:patient", "value": event["patient"]}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"}})
    validate_fhir(resource)
    return resource


def validate_fhir(resource: dict[str, Any]) -> None:
    """R4B model validation (R4's structure) plus the code bindings it does not check."""
    from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
    from pydantic import ValidationError

    try:
        FhirAuditEvent.model_validate(resource)
    except ValidationError as error:
        raise ValueError(f"not a valid AuditEvent: {error.errors()[0]['msg']}") from None
    if resource.get("action") not in ACTIONS:
        raise ValueError("AuditEvent.action outside its required binding")
    if resource.get("outcome") not in {"0", "4", "8", "12"}:
        raise ValueError("AuditEvent.outcome outside its required binding")
    if resource["type"]["system"] != DCM:
        raise ValueError("AuditEvent.type must be a DICOM audit event id")


def to_fhir_ndjson(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(to_fhir(e), ensure_ascii=False) + "\n" for e in events)


# -- emergency reviews ---------------------------------------------------------------------------

def _review_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "patient": row.patient_id, "institution": row.institution_id,
            "practitioner": row.practitioner, "reason": row.reason,
            "started_at": timestamp(row.started_at), "expires_at": timestamp(row.expires_at),
            "reviewed_at": timestamp(row.reviewed_at) if row.reviewed_at else None,
            "reviewer": row.reviewer, "outcome": row.review_outcome}


def emergency_reviews(session: Session, *, pending: bool = True, after: str | None = None,
                      limit: int = DEFAULT_LIMIT) -> tuple[list[dict[str, Any]], str | None]:
    from authz.consent.models import EmergencyAccess

    statement = select(EmergencyAccess)
    if pending:
        statement = statement.where(EmergencyAccess.reviewed_at.is_(None))
    if after:
        statement = statement.where(EmergencyAccess.id > after)
    rows = session.execute(statement.order_by(EmergencyAccess.id).limit(limit + 1)).scalars()
    found = [_review_view(r) for r in rows]
    more = len(found) > limit
    return found[:limit], (found[limit - 1]["id"] if more else None)


def review(session: Session, access_id: str, outcome: str, *, auditor_id: str,
           request_id: str | None = None) -> dict[str, Any]:
    """Close an emergency access's review with ``outcome``; reviewing twice is a conflict."""
    from authz.consent.models import EmergencyAccess

    if outcome not in REVIEW_OUTCOMES:
        raise InvalidInput(f"outcome must be one of {', '.join(REVIEW_OUTCOMES)}")
    with write(session):
        row = session.get(EmergencyAccess, access_id)
        if row is None:
            raise NotFound("no such emergency access")
        if row.reviewed_at is not None:
            raise Conflict("this emergency access was already reviewed")
        row.reviewed_at, row.reviewer, row.review_outcome = utcnow(), auditor_id, outcome
        session.flush()
        audit.record(session, audit.Event(
            type="audit.emergency_reviewed", actor=f"auditor:{auditor_id}",
            institution=row.institution_id, patient=row.patient_id, request_id=request_id,
            detail={"emergency_access_id": row.id, "outcome": outcome}))
        return _review_view(row)
