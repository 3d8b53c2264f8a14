"""``POST /v1/decisions``: may this institution read these categories of this patient?

The caller is an institution's client holding a ``decisions``-scoped token (DPoP-bound where
the client is registered for it). The patient is named by the institution's pairwise ``sub``;
the role must be one the institution registered (the emergency role only at hospitals
registered for emergency care) and a practitioner id is required; both are audited. Every
decision, permit or deny, is an audit event committed before the answer leaves; a refused
request writes one ``decision.refused`` event and nothing else.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from authz import audit
from authz.api.auth import Caller
from authz.api.auth import InsufficientScope
from authz.api.auth import TokenError
from authz.api.auth import require_token
from authz.api.bodies import json_object
from authz.api.context import request_id
from authz.consent import lookup
from authz.consent.service import check_categories
from authz.consent.vocabulary import PURPOSES
from authz.database import utcnow
from authz.database import write
from authz.errors import AuthzError
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.errors import PermissionDenied
from authz.extensions import db
from authz.extensions import limiter
from authz.policy import store
from authz.policy.decide import EMERGENCY
from authz.policy.decide import EMERGENCY_REASONS
from authz.policy.decide import Decision
from authz.policy.decide import Question
from authz.policy.decide import decide
from authz.policy.decide import record
from authz.policy.engine import PATIENT_ROLE
from authz.policy.engine import SELF_VIEW
from authz.registry.rules import EMERGENCY_ROLE

bp = Blueprint("decisions", __name__)
MAX_BATCH = 50
MAX_BODY = 64 * 1024
FIELDS = frozenset({"patient", "categories", "action", "purpose", "role", "practitioner",
                    "reason"})
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_SUB = re.compile(r"[A-Za-z0-9_-]{16,64}")


class UnknownPatient(NotFound):
    code, description = "unknown_patient", "This institution knows no patient by that id."


class RoleNotRegistered(PermissionDenied):
    code = "role_not_registered"
    description = "The institution did not register this role."


def _limit_key() -> str:
    return request.headers.get("Authorization", "")[-32:] or (request.remote_addr or "-")


@bp.post("/v1/decisions")
@limiter.limit("6000 per minute", key_func=_limit_key)
def decisions() -> Response:
    try:
        caller = require_token("decisions")
    except (TokenError, InsufficientScope) as error:
        # Our own token of a disabled client, or without the scope: audited like any other
        # refusal of a known institution. Unknown or forged tokens are noise (logs, metrics).
        if error.known is not None:
            _refused(*error.known, error)
        raise
    session = db.session()
    now = utcnow()
    try:
        body = _body()
        batch = "requests" in body
        items = _items(body)
        questions = [_question(session, caller, item) for item in items]
    except AuthzError as error:
        _refused(caller.client_id, caller.institution_id, error)
        raise
    policy = store.current(session)
    explain = request.args.get("explain") in ("1", "true")
    # Decided and recorded in one write transaction: on SQLite it is serialized with every
    # consent change, on PostgreSQL each statement sees what committed before it; either way
    # no decision that starts after a revoke returned can read the revoked consent as active.
    with write(session):
        now = utcnow()
        answers: list[Decision] = [decide(session, policy, q, now, explain=explain)
                                   for q in questions]
        record(session, answers, client_id=caller.client_id, now=now,
               request_id=request_id())
    if batch:
        return jsonify({"decisions": [a.to_dict() for a in answers]})
    return jsonify(answers[0].to_dict())


def _body() -> dict[str, Any]:
    return json_object(MAX_BODY)


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "requests" not in body:
        return [body]
    if set(body) != {"requests"}:
        raise InvalidInput('a batch is {"requests": [...]} and nothing else')
    items = body["requests"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidInput(f"requests must be a list of 1 to {MAX_BATCH} decision requests")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidInput("each request must be a JSON object")
    return items


def _question(session: Any, caller: Caller, item: dict[str, Any]) -> Question:
    unknown = set(item) - FIELDS
    if unknown:
        raise InvalidInput("unknown member: " + ", ".join(sorted(str(u)[:40] for u in unknown)))
    if item.get("action") != "read":
        raise InvalidInput('action must be "read"')
    purpose = item.get("purpose")
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        raise InvalidInput("unknown purpose; one of: " + ", ".join(PURPOSES))
    categories = tuple(check_categories(item.get("categories")))
    practitioner = item.get("practitioner")
    if not isinstance(practitioner, str) or not _ID.fullmatch(practitioner):
        raise InvalidInput("practitioner must be an id of 1 to 64 letters, digits or ._:@-")
    patient = item.get("patient")
    if not isinstance(patient, str) or not _SUB.fullmatch(patient):
        raise InvalidInput("patient must be the institution's pairwise subject identifier")
    role = item.get("role")
    if not isinstance(role, str) or len(role) > 64:
        raise InvalidInput("role is required")
    account_id = lookup.account_of(session, caller.institution_id, patient)
    if account_id is None:
        raise UnknownPatient()
    if role == PATIENT_ROLE:
        # Self view: only through the patient's own token, only for themself.
        if purpose != SELF_VIEW or caller.account_id != account_id:
            raise RoleNotRegistered("The patient role is only for the patient's own self view.")
    elif role not in caller.institution_roles:
        raise RoleNotRegistered()
    elif role == EMERGENCY_ROLE and not caller.emergency:
        raise RoleNotRegistered("The institution is not registered for emergency care.")
    reason = item.get("reason")
    if purpose == EMERGENCY:
        if reason not in EMERGENCY_REASONS:
            raise InvalidInput("emergency access needs a reason: " + ", ".join(EMERGENCY_REASONS))
    elif reason is not None:
        raise InvalidInput("reason is only for emergency access")
    return Question(patient_id=account_id, institution_id=caller.institution_id,
                    institution_type=caller.institution_type, categories=categories,
                    purpose=purpose, role=role, practitioner=practitioner,
                    emergency_reason=reason)


def _refused(client_id: str, institution_id: str, error: AuthzError) -> None:
    """An authenticated institution's refused request: one audit row, nothing else."""
    session = db.session()
    session.rollback()
    with write(session):
        audit.record(session, audit.Event(
            type="decision.refused", actor=f"client:{client_id}", outcome="failure",
            institution=institution_id, client=client_id,
            reason=error.code, request_id=request_id()))
