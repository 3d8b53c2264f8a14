"""Public keys: the live JWKS and the history of every key the service ever signed with."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import json

from authz.extensions import db
from authz.keys import service as keys

bp = Blueprint("keys", __name__)


@bp.get("/jwks.json")
def jwks() -> Response:
    """Keys that may verify a live token: the next key is published before it signs."""
    body = keys.jwks(db.session())
    db.session.rollback()
    response = Response(json.dumps(body), mimetype="application/jwk-set+json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/jwks/history.json")
def history() -> Response:
    """Every public key with its lifecycle dates, retired ones included (old receipts verify)."""
    entries = [{k: v for k, v in key.to_dict().items()} for key in keys.history(db.session())]
    db.session.rollback()
    response = Response(json.dumps({"keys": entries}), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
