"""The auditor console (``/auditor``): the page twin of the auditor API (``authz.api.audit``).

Only a registered, enabled auditor gets in, logged in with their own card; the auditors table is
checked on every request, so disabling an auditor closes the console at once. Pages show events
as the log holds them (identifiers, types, outcomes; never record content or personal
attributes). Every read is itself an ``audit.read`` event; refusals of a logged-in person are
``audit.refused`` events; a form changes nothing unless its CSRF token and origin check out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from functools import wraps
from typing import Any
from typing import TypeVar
from typing import cast
from zoneinfo import ZoneInfo

from flask import Blueprint
from flask import Response
from flask import flash
from flask import g
from flask import json
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_babel import gettext as _
from sqlalchemy import func
from sqlalchemy import select

from authz import audit
from authz.api.context import request_id
from authz.audit import auditors
from authz.audit import checkpoints
from authz.audit import merkle
from authz.audit import search
from authz.audit.models import AuditEvent
from authz.audit.models import Auditor
from authz.audit.verify import Verdict
from authz.audit.verify import check_signature
from authz.audit.verify import verify_database
from authz.consent.models import EmergencyAccess
from authz.database import write
from authz.errors import AuthzError
from authz.extensions import db
from authz.keys import service as keys
from authz.registry.models import Institution
from authz.web import form_refusal
from authz.web import page_errors
from authz.web import secure_page
from authz.web.i18n import TIMEZONE
from authz.web.pages import current_login

log = logging.getLogger("authz.web.auditor")
bp = Blueprint("auditor", __name__, url_prefix="/auditor")
bp.after_request(secure_page)

PAGE = 50  # events per page
EXPORT_MAX = 50_000  # events per download; more is `authz audit export`'s job
EXPORTS = {"jsonl": ("application/jsonl", "jsonl"), "csv": ("text/csv", "csv"),
           "fhir": ("application/fhir+ndjson", "ndjson")}
FILTERS = ("since", "until", "institution", "patient", "type", "outcome")
View = TypeVar("View", bound=Callable[..., Any])


class Refused(Exception):
    """A request the console refuses: a page saying why, audited, nothing changed."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.message, self.status = reason, message, status


class _LoginNeeded(Exception):
    pass


def auditor_page(view: View) -> View:
    """Card login first; then only an enabled auditor; refusals become audited pages."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            g.auditor = _auditor()
            return view(*args, **kwargs)
        except _LoginNeeded:
            if request.method == "GET":  # back to this very page, search included
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            log.info("auditor form without a login", extra={"code": "login_required"})
            return _error_page(_("Your login has ended, so nothing was changed. Log in with "
                                 "your card again."), 401)
        except Refused as refused:
            _audit_refusal(refused)
            return _error_page(refused.message, refused.status,
                               other_card=refused.reason == "not_auditor")

    return cast(View, wrapper)


def _auditor() -> Auditor:
    login = current_login()
    if login is None:
        raise _LoginNeeded()
    g.account_id = login.account_id
    auditor = auditors.of_account(db.session(), login.account_id)
    if auditor is None:
        raise Refused("not_auditor", _("Only a registered auditor can use the auditor console. "
                                       "An operator registers auditors with their card."), 403)
    return auditor


def _error_page(message: str, status: int, *, other_card: bool = False) -> tuple[str, int]:
    """The refusal page; a logged-in non-auditor is offered a login with another card."""
    login_url = url_for("web.login", next=url_for("auditor.index"), fresh="1") \
        if other_card or status == 401 else None
    return render_template("auditor/error.html", message=message, login_url=login_url), status


page_errors(bp, _error_page)


def _audit_refusal(refused: Refused) -> None:
    account_id = g.get("account_id")
    if account_id is None:
        return
    session = db.session()
    session.rollback()
    auditor = g.get("auditor")
    actor = f"auditor:{auditor.id}" if auditor is not None else f"patient:{account_id}"
    with write(session):
        audit.record(session, audit.Event(
            type="audit.refused", actor=actor, outcome="failure", reason=refused.reason,
            request_id=request_id(), detail={"endpoint": request.endpoint or "-"}))


def _read(operation: str, count: int = 0, **detail: Any) -> None:
    search.record_read(db.session(), g.auditor.id, operation, count=count,
                       request_id=request_id(), detail=detail)


def _check_form() -> None:
    problem = form_refusal()
    if problem is not None:
        raise Refused(*problem)


# -- the overview and verification ---------------------------------------------------------------

@bp.get("")
@bp.get("/")
@auditor_page
def index() -> str:
    _read("overview", 1)
    return _overview(None)


@bp.post("/verify")
@auditor_page
def verify() -> str:
    """The whole log, as ``authz audit verify`` checks it: chain, columns, signatures, roots,
    consistency between consecutive checkpoints."""
    _check_form()
    verdict = verify_database(db.session())
    _read("verify", verdict.count, result="intact" if verdict.ok else "broken")
    return _overview(verdict)


def _overview(verdict: Verdict | None) -> str:
    session = db.session()
    latest = checkpoints.latest(session)
    total = int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    pending = int(session.execute(select(func.count()).select_from(EmergencyAccess)
                                  .where(EmergencyAccess.reviewed_at.is_(None))).scalar_one())
    return render_template("auditor/index.html", latest=latest, total=total, pending=pending,
                           latest_at=_moment(latest.time) if latest else None,
                           signature=_signature(latest), verdict=verdict)


def _signature(checkpoint: checkpoints.Checkpoint | None) -> str | None:
    """None when ``checkpoint``'s signature verifies under the key history, else why not."""
    if checkpoint is None:
        return None
    history = {k.kid: dict(k.public_jwk) for k in keys.history(db.session())}
    return check_signature(checkpoint, history)


# -- events --------------------------------------------------------------------------------------

def _filters(*extra: str) -> tuple[dict[str, str], search.Query]:
    """The search form's fields as a :class:`search.Query`; dates are whole days in Japan."""
    raw = {name: request.args.get(name, "").strip() for name in FILTERS}
    unknown = set(request.args) - {*FILTERS, "after", *extra}
    if unknown or any(len(v) > 64 for v in raw.values()):
        raise Refused("bad_input", _("Check the search: unknown or overlong fields."))
    args = {name: value for name, value in raw.items() if value}
    try:
        for name, shift in (("since", 0), ("until", 1)):
            if name in args:
                args[name] = _day_start(args[name], shift)
        if request.args.get("after"):
            args["after"] = request.args["after"]
        query = search.parse_query({**args, "limit": str(PAGE)})
    except (AuthzError, ValueError):
        raise Refused("bad_input", _("Check the search: dates as YYYY-MM-DD, identifiers "
                                     "without spaces, an event type such as consent.* and an "
                                     "outcome from the list.")) from None
    return raw, query


def _day_start(value: str, shift: int) -> str:
    day = date.fromisoformat(value) + timedelta(days=shift)
    return datetime.combine(day, time(), ZoneInfo(TIMEZONE)).isoformat()


@bp.get("/events")
@auditor_page
def events() -> str:
    raw, query = _filters()
    session = db.session()
    found, cursor = search.search(session, query)
    _read("search", len(found), format="page", **query.filters())
    for event in found:
        event["at"] = _moment(event["time"])
    kept = {k: v for k, v in raw.items() if v}
    return render_template("auditor/events.html", events=found, filters=raw, kept=kept,
                           cursor=cursor, institutions=_institutions(),
                           names=_names(found), OUTCOMES=search.OUTCOMES)


@bp.get("/events/export")
@auditor_page
def export() -> Response:
    """Every event the search selects, as a download (JSON Lines, CSV or FHIR AuditEvent)."""
    wanted = request.args.get("format", "")
    if wanted not in EXPORTS:
        raise Refused("bad_input", _("Choose an export format from the list."))
    _raw, query = _filters("format")
    session = db.session()
    found: list[dict[str, Any]] = []
    after = query.after
    while True:
        page, cursor = search.search(session, replace(query, after=after,
                                                      limit=search.MAX_LIMIT))
        found.extend(page)
        if cursor is None:
            break
        if len(found) >= EXPORT_MAX:
            raise Refused("too_many", _("This search selects more than %(count)s events; "
                                        "narrow it (a shorter period, one institution) or use "
                                        "authz audit export.", count=EXPORT_MAX))
        after = cursor
    try:
        body = {"jsonl": search.to_jsonl, "csv": search.to_csv,
                "fhir": search.to_fhir_ndjson}[wanted](found)
    except ValueError:
        raise Refused("bad_input", _("These events cannot be exported as FHIR AuditEvent.")) \
            from None
    _read("export", len(found), format=wanted, **query.filters())
    mimetype, suffix = EXPORTS[wanted]
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="audit-events.{suffix}"'
    return response


@bp.get("/events/<int:seq>")
@auditor_page
def event(seq: int) -> str:
    """One event with its inclusion proof in the latest checkpoint, checked here."""
    session = db.session()
    row = session.execute(select(AuditEvent.record, AuditEvent.hash)
                          .where(AuditEvent.seq == seq)).one_or_none() \
        if seq <= 2**53 - 1 else None
    if row is None:
        raise Refused("not_found", _("There is no event %(seq)s in the log.", seq=seq), 404)
    record = bytes(row.record)
    view = search.event_view(record, bytes(row.hash))
    view["at"] = _moment(view["time"])
    proof = _proof(seq, record)
    _read("event", 1, seq=seq)
    return render_template("auditor/event.html", event=view, proof=proof,
                           names=_names([view]),
                           detail=json.dumps(view["detail"], ensure_ascii=False, indent=2,
                                             sort_keys=True))


def _proof(seq: int, record: bytes) -> dict[str, Any] | None:
    """The inclusion proof and what checking it found (None: not sealed yet)."""
    session = db.session()
    latest = checkpoints.latest(session)
    if latest is None or seq > latest.tree_size:
        return None
    proof = checkpoints.inclusion(session, seq, latest.tree_size)
    leaf = merkle.leaf_hash(record)
    problem = _signature(latest)
    if problem is None and leaf.hex() != proof["leaf_hash"]:
        problem = _("the entry's stored bytes do not hash to the sealed leaf")
    if problem is None:
        try:
            merkle.verify_inclusion(seq - 1, latest.tree_size, leaf,
                                    [bytes.fromhex(p) for p in proof["proof"]],
                                    latest.root_hash)
        except merkle.ProofError as error:
            problem = str(error)
    return {**proof, "leaf": leaf.hex(), "problem": problem, "at": _moment(latest.time),
            "record_sha256": hashlib.sha256(record).hexdigest()}


# -- checkpoints ---------------------------------------------------------------------------------

@bp.get("/checkpoints")
@auditor_page
def checkpoint_list() -> str:
    """Checkpoints, newest first, each with its signature checked."""
    before = request.args.get("before", "")
    if set(request.args) - {"before"} or (before and not (before.isdigit() and len(before) < 16)):
        raise Refused("bad_input", _("This page takes no such parameter."))
    session = db.session()
    found = checkpoints.newest(session, before=int(before) if before else None, limit=PAGE + 1)
    more = len(found) > PAGE
    found = found[:PAGE]
    history = {k.kid: dict(k.public_jwk) for k in keys.history(session)}
    rows = [{"checkpoint": c, "at": _moment(c.time), "problem": check_signature(c, history)}
            for c in found]
    _read("checkpoints", len(found))
    return render_template("auditor/checkpoints.html", rows=rows,
                           cursor=found[-1].tree_size if more else None)


# -- the emergency-access review queue -----------------------------------------------------------

@bp.get("/emergency")
@auditor_page
def reviews() -> str:
    status = request.args.get("status", "pending")
    after = request.args.get("after", "")
    if set(request.args) - {"status", "after"} or status not in ("pending", "all") \
            or (after and not (after.replace("_", "").isalnum() and len(after) <= 32)):
        raise Refused("bad_input", _("This page takes no such parameter."))
    session = db.session()
    found, cursor = search.emergency_reviews(session, pending=status == "pending",
                                             after=after or None, limit=PAGE)
    for review in found:
        review["started"] = _moment(review["started_at"])
        review["expires"] = _moment(review["expires_at"])
        review["reviewed"] = _moment(review["reviewed_at"]) if review["reviewed_at"] else None
    _read("emergency_reviews", len(found), status=status)
    return render_template("auditor/reviews.html", reviews=found, status=status, cursor=cursor,
                           names=_names(found), OUTCOMES=search.REVIEW_OUTCOMES)


@bp.post("/emergency/<access_id>")
@auditor_page
def review(access_id: str) -> Response:
    _check_form()
    outcome = request.form.get("outcome", "")
    if outcome not in search.REVIEW_OUTCOMES or len(access_id) > 32:
        raise Refused("bad_input", _("Choose justified or unjustified; nothing was changed."))
    try:
        search.review(db.session(), access_id, outcome, auditor_id=g.auditor.id,
                      request_id=request_id())
    except AuthzError as error:
        raise Refused(error.code, error.description, error.status) from None
    flash(_("The review was recorded."))
    return redirect(url_for("auditor.reviews"), 303)  # type: ignore[return-value]


# -- helpers -------------------------------------------------------------------------------------

def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _institutions() -> list[Institution]:
    return list(db.session().execute(select(Institution).order_by(Institution.name)).scalars())


def _names(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Institution names for the ids on this page (names are public registry data)."""
    wanted = {r["institution"] for r in rows if r.get("institution")}
    if not wanted:
        return {}
    found = db.session().execute(select(Institution.id, Institution.name)
                                 .where(Institution.id.in_(wanted))).all()
    return {institution_id: name for institution_id, name in found}
