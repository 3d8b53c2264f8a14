"""``GET /v1/me/access-history``: a patient's own access history (DESIGN section 8).

A ``consents``-scoped token of the patient's own app; the account comes from the token only,
so no parameter can name another patient.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from authz import audit
from authz.api.auth import require_token
from authz.api.context import request_id
from authz.audit import history
from authz.database import write
from authz.errors import InvalidInput
from authz.errors import PermissionDenied
from authz.extensions import db

bp = Blueprint("history", __name__)


@bp.get("/v1/me/access-history")
def access_history() -> Response:
    caller = require_token("consents")
    if caller.account_id is None:
        raise PermissionDenied("This call needs a patient's own token.")
    repeated = [k for k in request.args if len(request.args.getlist(k)) > 1]
    if repeated:
        raise InvalidInput(f"parameter {repeated[0][:40]!r} given twice")
    query = history.parse_query(request.args.to_dict())
    session = db.session()
    entries, cursor = history.history(session, caller.account_id, query)
    with write(session):
        audit.record(session, audit.Event(
            type="audit.history_read", actor=f"patient:{caller.account_id}",
            client=caller.client_id, patient=caller.account_id, request_id=request_id(),
            detail={"count": len(entries)}))
    next_url = None
    if cursor is not None:
        next_url = f"{request.path}?" + urlencode({**request.args.to_dict(),
                                                   "before": str(cursor)})
    return jsonify({"entries": entries, "next_before": cursor, "next": next_url})
