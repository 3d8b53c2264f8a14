"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): confirm, end, go back."""

from __future__ import annotations

from typing import Any

from authlib.common.urls import add_params_to_uri
from flask import Blueprint
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from joserfc import jwt
from joserfc.errors import JoseError

from authz.api.context import request_id
from authz.extensions import db
from authz.identity import sessions as logins
from authz.oauth.inspection import published_keys
from authz.registry.models import Client
from authz.web import require_csrf
from authz.web import secure_page
from authz.web.pages import current_login

bp = Blueprint("logout", __name__)
bp.after_request(secure_page)


def _hint_client(hint: str | None) -> str | None:
    """The client an ID token we issued was for; expired hints are fine (spec §2)."""
    if not hint or len(hint) > 8192:
        return None
    try:
        decoded = jwt.decode(hint, published_keys(db.session()), algorithms=["ES256"])
    except (JoseError, ValueError, TypeError):
        return None
    claims = decoded.claims
    if claims.get("iss") != current_app.config["AUTHZ_ISSUER"]:
        return None
    aud = claims.get("aud")
    return aud if isinstance(aud, str) else None


def _return_to(values: Any) -> str | None:
    """``post_logout_redirect_uri`` only if it is one of the named client's registered URIs."""
    uri = values.get("post_logout_redirect_uri")
    hinted = _hint_client(values.get("id_token_hint"))
    client_id = values.get("client_id") or hinted
    if not uri or not client_id or (hinted and client_id != hinted):
        return None
    client = db.session().get(Client, client_id)
    if client is None or not client.enabled or uri not in client.redirect_uris:
        return None
    state = values.get("state")
    return str(add_params_to_uri(uri, {"state": state})) if state else str(uri)


@bp.route("/oauth/logout", methods=["GET", "POST"])
def end_session() -> Any:
    values = request.values
    target = _return_to(values)
    if request.method == "GET":
        if current_login() is None:
            return redirect(target) if target else render_template("logged_out.html")
        return render_template("logout.html", action=request.full_path)
    require_csrf()
    row = current_login()
    if row is not None:
        logins.end(db.session(), row.account_id, row.id, request_id=request_id())
    session.clear()
    return redirect(target) if target else render_template("logged_out.html")
