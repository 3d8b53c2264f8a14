"""The auditor API: checkpoints, proofs, event search and export, emergency reviews.

Every route needs an ``audit``-scoped token whose account is a registered, enabled auditor
(checked against the auditors table on every call), and every read is itself audited.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from authz.api.auth import require_token
from authz.api.bodies import json_object
from authz.api.context import request_id
from authz.audit import auditors
from authz.audit import checkpoints
from authz.audit import search
from authz.audit.models import Auditor
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.extensions import db

bp = Blueprint("audit", __name__)
MAX_BODY = 4096
MEDIA = {"jsonl": "application/jsonl", "csv": "text/csv",
         "fhir": "application/fhir+ndjson"}


def _auditor() -> Auditor:
    caller = require_token(auditors.AUDIT_SCOPE)
    auditor = auditors.require(db.session(), caller.account_id)
    db.session.rollback()
    return auditor


def _args(allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise InvalidInput(f"unknown parameter {unknown[0][:40]!r}")
    repeated = [k for k in request.args if len(request.args.getlist(k)) > 1]
    if repeated:
        raise InvalidInput(f"parameter {repeated[0]!r} given twice")
    return dict(request.args.items())


def _int(args: dict[str, str], name: str, low: int = 1, required: bool = True) -> int | None:
    if name not in args:
        if required:
            raise InvalidInput(f"{name} is required")
        return None
    return search.parse_int(name, args[name], low, 2**53 - 1)


def _read(auditor: Auditor, operation: str, count: int = 0, **detail: Any) -> None:
    search.record_read(db.session(), auditor.id, operation, count=count,
                       request_id=request_id(), detail=detail)


@bp.get("/v1/audit/checkpoints")
def list_checkpoints() -> Response:
    auditor = _auditor()
    args = _args({"after", "limit"})
    after = _int(args, "after", 0, required=False) or 0
    limit = search.parse_int("limit", args["limit"], 1, 1000) if "limit" in args else 100
    session = db.session()
    found = checkpoints.listing(session, after=after, limit=limit)
    latest = checkpoints.latest(session)
    _read(auditor, "checkpoints", len(found))
    return jsonify({"checkpoints": [c.to_dict() for c in found],
                    "latest": latest.to_dict() if latest else None,
                    "next_after": found[-1].tree_size if len(found) == limit else None})


@bp.get("/v1/audit/checkpoints/<int:size>")
def get_checkpoint(size: int) -> Response:
    auditor = _auditor()
    _args(set())
    if size > 2**53 - 1:
        raise NotFound(f"no checkpoint of tree size {size}")
    found = checkpoints.get(db.session(), size)
    _read(auditor, "checkpoint", 1, tree_size=size)
    return jsonify(found.to_dict())


@bp.get("/v1/audit/proofs/inclusion")
def inclusion_proof() -> Response:
    auditor = _auditor()
    args = _args({"seq", "tree_size"})
    seq = _int(args, "seq")
    size = _int(args, "tree_size", required=False)
    assert seq is not None
    proof = checkpoints.inclusion(db.session(), seq, size)
    _read(auditor, "inclusion_proof", 1, seq=seq, tree_size=proof["tree_size"])
    return jsonify(proof)


@bp.get("/v1/audit/proofs/consistency")
def consistency_proof() -> Response:
    auditor = _auditor()
    args = _args({"first", "second"})
    first = _int(args, "first")
    second = _int(args, "second", required=False)
    assert first is not None
    proof = checkpoints.consistency(db.session(), first, second)
    _read(auditor, "consistency_proof", 1, first=first, second=proof["second"])
    return jsonify(proof)


@bp.get("/v1/audit/events")
def events() -> Response:
    auditor = _auditor()
    _args(set(request.args))  # refuses repeated parameters
    query = search.parse_query(request.args.to_dict())
    session = db.session()
    found, cursor = search.search(session, query)
    if query.format == "fhir":
        try:
            body = search.to_fhir_ndjson(found)
        except ValueError:
            raise InvalidInput("these events cannot be exported as FHIR AuditEvent") from None
    _read(auditor, "search", len(found), format=query.format, **query.filters())
    next_url = None
    if cursor is not None:
        next_url = f"{request.path}?" + urlencode({**request.args.to_dict(),
                                                   "after": str(cursor)})
    if query.format == "json":
        return jsonify({"events": found, "next_after": cursor, "next": next_url})
    if query.format == "jsonl":
        body = search.to_jsonl(found)
    elif query.format == "csv":
        body = search.to_csv(found)
    response = Response(body, mimetype=MEDIA[query.format])
    if next_url is not None:
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/v1/audit/emergency-reviews")
def emergency_reviews() -> Response:
    auditor = _auditor()
    args = _args({"status", "after", "limit"})
    status = args.get("status", "pending")
    if status not in ("pending", "all"):
        raise InvalidInput("status must be pending or all")
    after = args.get("after")
    if after is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,32}", after):
        raise InvalidInput("after must be an emergency access id")
    limit = search.parse_int("limit", args["limit"], 1, 1000) if "limit" in args else 100
    found, cursor = search.emergency_reviews(db.session(), pending=status == "pending",
                                             after=after, limit=limit)
    _read(auditor, "emergency_reviews", len(found), status=status)
    return jsonify({"reviews": found, "next_after": cursor})


@bp.post("/v1/audit/emergency-reviews/<access_id>")
def review_emergency(access_id: str) -> Response:
    auditor = _auditor()
    _args(set())
    body = json_object(MAX_BODY)
    if set(body) - {"outcome"} or not isinstance(
            body.get("outcome"), str):
        raise InvalidInput('the body must be {"outcome": "justified" | "unjustified"}')
    if len(access_id) > 32:
        raise InvalidInput("not an emergency access id")
    return jsonify(search.review(db.session(), access_id, body["outcome"],
                                 auditor_id=auditor.id, request_id=request_id()))
