"""Card transactions over HTTP (DESIGN 8): the browser's side and the card app's side."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from authz.api import browser
from authz.api.context import request_id
from authz.api.identity import verifier
from authz.errors import InvalidInput
from authz.extensions import db
from authz.extensions import limiter
from authz.identity import transactions

bp = Blueprint("jpki", __name__, url_prefix="/jpki")


def _code() -> str:
    code = request.args.get("code", "")
    if not code.isascii() or not code.isdigit() or len(code) != 6:
        raise InvalidInput("the link's code is missing or malformed")
    return code


def _per_transaction() -> str:
    return f"jpki-txn:{(request.view_args or {}).get('txn_id', '')}"


@bp.post("/transactions")
@limiter.limit("10 per minute")
def create() -> tuple[Response, int]:
    """Start a card transaction for this browser session."""
    browser.require_same_origin()
    purpose = browser.json_body().get("purpose", "login")
    if not isinstance(purpose, str):
        raise InvalidInput('purpose must be "login" or "proofing"')
    verifier()  # unconfigured card login is refused before anything is stored
    issuer = current_app.config["AUTHZ_ISSUER"]
    txn = transactions.create(db.session(), purpose=purpose, browser=browser.browser_id(),
                              audience=issuer, request_id=request_id())
    return jsonify(id=txn.id, link=transactions.card_link(txn, issuer),
                   short_code=txn.short_code,
                   expires_at=txn.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")), 201


@bp.get("/transactions/<txn_id>")
def status(txn_id: str) -> Response:
    """Where this browser's transaction stands; other sessions get 404."""
    return jsonify(transactions.poll(db.session(), txn_id, browser.browser_id()))


@bp.get("/transactions/<txn_id>/card")
@limiter.limit("30 per minute", key_func=_per_transaction)
def card_view(txn_id: str) -> Response:
    """What the card app shows and signs."""
    config = current_app.config
    return jsonify(transactions.card_view(
        db.session(), txn_id, _code(), service_name=config["AUTHZ_SERVICE_NAME"],
        audience=config["AUTHZ_ISSUER"], request_id=request_id()))


@bp.post("/transactions/<txn_id>/card")
@limiter.limit("10 per minute", key_func=_per_transaction)
def card_response(txn_id: str) -> Response:
    """The card's answer; refused answers get one generic message, the reason is audited."""
    code = _code()
    body = browser.json_body()
    outcome = transactions.respond(db.session(), verifier(), txn_id, code, body,
                                   request_id=request_id())
    return jsonify(outcome.to_dict())
