"""Card login (``/login``), logout and the account page (``/account``)."""

from __future__ import annotations

from urllib.parse import urlsplit

import segno
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select

from authz.api import browser
from authz.api.context import request_id
from authz.api.identity import verifier
from authz.errors import AuthzError
from authz.extensions import db
from authz.extensions import limiter
from authz.identity import sessions as logins
from authz.identity import transactions
from authz.identity.models import Account
from authz.identity.models import CardTransaction
from authz.identity.models import LoginSession
from authz.identity.models import Verification
from authz.web import i18n
from authz.web import require_csrf
from authz.web import secure_page

bp = Blueprint("web", __name__)
bp.after_request(secure_page)


def safe_next(value: str | None) -> str:
    """Only a path on this site: never an open redirect.

    Browsers drop tabs and newlines from URLs and read ``\\`` as ``/``, so ``/\t/evil`` or
    ``/\\evil`` would become ``//evil``: anything but printable ASCII is refused.
    """
    if value and value.isascii() and value.isprintable() and " " not in value \
            and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return url_for("web.account")


def ui_lang(value: str | None) -> str:
    """The page language, given ``ui_locales`` (OIDC Core §3.1.2.1, BCP 47 tags in order of
    preference): see :mod:`authz.web.i18n` for the order. Both languages are shown on the login
    and consent pages; this one first."""
    i18n.request_language(i18n.pick(value))
    return i18n.current()


def current_login() -> LoginSession | None:
    return logins.current(db.session(), session.get("login"))


def _finish(txn_id: str, target: str) -> Response:
    """The card answered: take the transaction, start a fresh login session, go on."""
    txn = transactions.complete(db.session(), txn_id, browser.browser_id())
    if txn.account_id is None or txn.acr is None or txn.auth_time is None:
        raise transactions.TransactionGone()
    token, _row = logins.start(db.session(), account_id=txn.account_id, acr=txn.acr,
                               amr=list(txn.amr or []), auth_time=txn.auth_time,
                               user_agent=request.user_agent.string, request_id=request_id())
    # A new cookie content at login: a session planted before login carries no login. Only the
    # moment an authorization asked for a fresh login survives, so it can see this is one.
    asked = session.get("authn_requested_at")
    session.clear()
    browser.browser_id()
    session["login"] = token
    if isinstance(asked, (int, float)):
        session["authn_requested_at"] = asked
    return redirect(target)  # type: ignore[return-value]


@bp.get("/login")
@limiter.limit("20 per minute")
def login() -> Response | str:
    """Show a card transaction; once the card answered, loading this page again logs in."""
    target = safe_next(request.args.get("next"))
    purpose = "proofing" if request.args.get("purpose") == "proofing" else "login"
    fresh = request.args.get("fresh") == "1"  # an authorization asked for a new card login
    lang = ui_lang(request.args.get("lang"))
    if purpose == "login" and not fresh and current_login() is not None:
        return redirect(target)  # type: ignore[return-value]
    issuer = current_app.config["AUTHZ_ISSUER"]
    pending = session.get("card_txn")
    txn = None
    if isinstance(pending, str):
        try:
            state = transactions.poll(db.session(), pending, browser.browser_id())["status"]
        except AuthzError:
            state = "gone"
        if state == "accepted":
            session.pop("card_txn", None)
            return _finish(pending, target)
        if state == "pending":
            txn = db.session().get(CardTransaction, pending)
            if txn is not None and txn.purpose != purpose:
                txn = None
    if txn is None:
        verifier()  # fails closed, with a clear page, when card login is not configured
        txn = transactions.create(db.session(), purpose=purpose, browser=browser.browser_id(),
                                  audience=issuer, request_id=request_id())
        session["card_txn"] = txn.id
    link = transactions.card_link(txn, issuer)
    qr = segno.make(link, error="m").svg_inline(scale=4, title="QR code of the card link")
    return render_template("login.html", link=link, short_code=txn.short_code, txn_id=txn.id,
                           qr=qr, expires_at=txn.expires_at, purpose=purpose, next=target,
                           lang=lang, lang_param=lang if "lang" in request.args else None,
                           fresh="1" if fresh else None)


@bp.post("/logout")
def logout() -> Response:
    require_csrf()
    row = current_login()
    if row is not None:
        logins.end(db.session(), row.account_id, row.id, request_id=request_id())
    session.clear()
    return redirect(url_for("web.login"))  # type: ignore[return-value]


@bp.get("/account")
def account() -> Response | str:
    row = current_login()
    if row is None:
        return redirect(url_for("web.login", next=request.path))  # type: ignore[return-value]
    db_session = db.session()
    person = db_session.get(Account, row.account_id)
    verification = db_session.execute(
        select(Verification).where(Verification.account_id == row.account_id,
                                   Verification.current.is_(True))).scalar_one_or_none()
    name = None
    if verification is not None and person is not None and person.assurance == "verified":
        name = transactions.current_attributes(verifier().keys, verification).claims()["name"]
    return render_template("account.html", login=row, account=person, name=name,
                           sessions=logins.active(db_session, row.account_id))


@bp.post("/account/sessions/<session_id>/end")
def end_session(session_id: str) -> Response:
    require_csrf()
    row = current_login()
    if row is None:
        return redirect(url_for("web.login"))  # type: ignore[return-value]
    logins.end(db.session(), row.account_id, session_id, request_id=request_id())
    return redirect(url_for("web.account"))  # type: ignore[return-value]
