"""Server-rendered pages: card login and the patient's account page."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import abort
from flask import request
from flask import session

from authz.api import browser

# Strict CSP: scripts and styles only from this origin, no framing, forms post only here.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def csrf_token() -> str:
    """The session's CSRF token, for the hidden field of every form."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


def require_csrf() -> None:
    """A POSTed form must carry the session's token and come from this origin."""
    browser.require_same_origin()
    sent = request.form.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), csrf_token().encode()):
        abort(400, "The form expired; reload the page and try again.")


def form_refusal() -> tuple[str, str, int] | None:
    """Why a POSTed page form is refused, as (reason, message, status); None when it came from
    this origin with the session's CSRF token. Each blueprint turns it into its refusal page."""
    from flask_babel import gettext

    from authz.errors import AuthzError

    try:
        browser.require_same_origin()
    except AuthzError:
        return ("cross_site", gettext("This form was sent from another site; nothing was "
                                      "changed."), 403)
    sent = request.form.get("csrf", "")
    if not hmac.compare_digest(sent.encode(), csrf_token().encode()):
        return ("csrf", gettext("This form has expired or was not sent from this page; "
                                "nothing was changed. Reload the page and try again."), 400)
    return None


def nul_refused() -> Response:
    """The page that refuses NUL in a page's URL or form (before any view or query runs)."""
    from flask import render_template
    from flask_babel import gettext

    body = render_template("message.html", title=gettext("Nothing was changed"), back=None,
                           message=gettext("The request contains characters that are not "
                                           "allowed; nothing was changed."))
    return secure_page(Response(body, status=400, mimetype="text/html"))


def page_errors(bp: Blueprint, render: Callable[[str, int], tuple[str, int]]) -> None:
    """Service and HTTP errors raised in ``bp``'s views become ``bp``'s own refusal page."""
    from flask_babel import gettext
    from werkzeug.exceptions import HTTPException

    from authz.errors import AuthzError

    @bp.errorhandler(AuthzError)
    def _service_error(error: AuthzError) -> tuple[str, int]:
        return render(error.description, error.status if error.status < 500 else 500)

    @bp.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[str, int]:
        status = error.code or 500
        message = gettext("This page does not exist.") if status == 404 else \
            gettext("This request cannot be handled.")
        return render(message, status)


def secure_page(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def register_web(app: Flask) -> None:
    from authz.web import auditor
    from authz.web import authorize
    from authz.web import demo
    from authz.web import logout
    from authz.web import pages
    from authz.web import portal
    from authz.web.i18n import init_i18n

    init_i18n(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(authorize.bp)
    app.register_blueprint(logout.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(auditor.bp)
    app.register_blueprint(demo.bp)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["here"] = here


def here() -> str:
    """This page's address for the language switch to come back to (GET pages only)."""
    if request.method != "GET":
        return "/auditor" if request.blueprint == "auditor" else "/portal"
    return request.full_path.rstrip("?")
