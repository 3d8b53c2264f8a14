"""Demo mode pages: the landing page, the demo wallet, the demo clinic's app, the log check.

Everything under ``/demo`` answers 404 unless ``AUTHZ_DEMO=1``; outside demo mode ``/`` is a
short service page. The wallet signs with the demo cards in this process, through the same
card-app code as ``authz card respond`` (``authz.sim.cardapp.respond``), but without HTTP: a
server never calls itself over HTTP (DESIGN 3).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask_babel import gettext
from itsdangerous import BadSignature
from itsdangerous import URLSafeSerializer

from authz import demo
from authz.api.context import request_id
from authz.api.identity import verifier
from authz.demo_clinic import ClinicApp
from authz.demo_clinic import ClinicError
from authz.demo_clinic import Pending
from authz.demo_clinic import wsgi_call
from authz.errors import AuthzError
from authz.extensions import db
from authz.extensions import limiter
from authz.identity import transactions
from authz.sim.card import VirtualCard
from authz.sim.cardapp import CardAppError
from authz.sim.cardapp import respond
from authz.web import require_csrf
from authz.web import secure_page

bp = Blueprint("demo", __name__)
bp.after_request(secure_page)

CLINIC_COOKIE = "demo_clinic"
MAX_LINK = 512
_TXN = re.compile(r"[A-Za-z0-9_-]{8,64}")


@bp.before_request
def _demo_only() -> None:
    if request.path.startswith("/demo") and not current_app.config["AUTHZ_DEMO"]:
        abort(404)


@bp.get("/")
def landing() -> str:
    """Demo mode: the story, step by step; otherwise a short page about the service."""
    if not current_app.config["AUTHZ_DEMO"]:
        return render_template("demo/service.html")
    return render_template("demo/landing.html", pin=demo.DEMO_PIN, password=demo.DEMO_PASSWORD)


# -- the demo wallet -----------------------------------------------------------------------------

def _cards() -> list[tuple[str, demo.DemoCard]]:
    folder = Path(current_app.instance_path) / "demo-cards"
    return [(card.file, card) for card in demo.DEMO_CARDS if (folder / card.file).is_file()]


def _txn_of(link: str) -> tuple[str, str]:
    """(transaction id, short code) of one of this service's card links, or InvalidLink."""
    issuer = current_app.config["AUTHZ_ISSUER"].rstrip("/")
    if len(link) > MAX_LINK or not link.isascii() or not link.isprintable() \
            or not link.startswith(issuer + "/jpki/transactions/"):
        raise CardAppError(gettext("this is not a card link of this service"))
    parts = urlsplit(link)
    match = re.fullmatch(r"/jpki/transactions/([^/]+)/card", parts.path[len(urlsplit(
        issuer).path):])
    codes = parse_qs(parts.query).get("code", [])
    if match is None or not _TXN.fullmatch(match.group(1)) or len(codes) != 1 \
            or not re.fullmatch(r"[0-9]{6}", codes[0]):
        raise CardAppError(gettext("this is not a card link of this service"))
    return match.group(1), codes[0]


class _InProcess:
    """The card app's transport inside the service: the link's two calls, without HTTP."""

    def __init__(self, link: str) -> None:
        self.txn_id, self.code = _txn_of(link)

    def get(self) -> dict[str, Any]:
        config = current_app.config
        try:
            return transactions.card_view(
                db.session(), self.txn_id, self.code, service_name=config["AUTHZ_SERVICE_NAME"],
                audience=config["AUTHZ_ISSUER"], request_id=request_id())
        except AuthzError:
            raise CardAppError(gettext("the link is unknown, expired or already used")) from None

    def post(self, body: dict[str, str]) -> dict[str, Any]:
        try:
            outcome = transactions.respond(db.session(), verifier(), self.txn_id, self.code,
                                           body, request_id=request_id())
        except AuthzError as error:
            raise CardAppError(gettext("the service refused the response: %(reason)s",
                                       reason=error.description)) from None
        return outcome.to_dict()


def _back() -> str | None:
    from authz.web.pages import safe_next

    back = request.values.get("back")
    return safe_next(back) if back else None


@bp.get("/demo/wallet")
def wallet() -> str | tuple[str, int]:
    """The demo cards; with ``link``, what the card would show before the PIN is asked."""
    link = request.args.get("link", "").strip()
    challenge, error = None, None
    if link:
        try:
            challenge = _InProcess(link).get()
        except CardAppError as refused:
            error = str(refused)
    page = render_template("demo/wallet.html", cards=_cards(), link=link, back=_back(),
                           challenge=challenge, error=error, lines=[])
    return (page, 400) if error else page


@bp.post("/demo/wallet")
@limiter.limit("20 per minute")
def wallet_sign() -> str | tuple[str, int]:
    """Sign the link with the chosen demo card after the PIN (and password) entry."""
    require_csrf()
    link = request.form.get("link", "").strip()
    chosen = request.form.get("card", "")
    cards = dict(_cards())
    lines: list[str] = []
    try:
        if chosen not in cards:
            raise CardAppError(gettext("choose one of the demo cards"))
        transport = _InProcess(link)
        card = VirtualCard.load(Path(current_app.instance_path) / "demo-cards" / chosen)
        pin = request.form.get("pin", "")
        password = request.form.get("password", "") or None
        respond(card, link, pin=pin, password=password, show=lines.append,
                transport=transport)
    except CardAppError as refused:
        return render_template("demo/wallet.html", cards=list(cards.items()), link=link,
                               back=_back(), challenge=None, error=str(refused), lines=lines,
                               chosen=chosen), 400
    return render_template("demo/wallet_done.html", lines=lines, back=_back(),
                           card=cards[chosen])


# -- the demo clinic's app -----------------------------------------------------------------------

def _clinic() -> ClinicApp:
    issuer = current_app.config["AUTHZ_ISSUER"]
    clients = demo.ensure_clinic_app(db.session(), issuer, Path(current_app.instance_path))
    if clients is None:
        raise ClinicError(gettext("the demo clinic is not registered: start the service with"
                                  " AUTHZ_DEMO=1 (make run)"))
    return ClinicApp(clients, issuer, wsgi_call(current_app._get_current_object(),  # type: ignore[attr-defined]
                                                issuer))


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="demo-clinic")


def _clinic_state() -> dict[str, Any]:
    """The clinic app's own cookie (its session, apart from the service's)."""
    raw = request.cookies.get(CLINIC_COOKIE)
    if not raw:
        return {}
    try:
        value = _serializer().loads(raw)
    except BadSignature:
        return {}
    return value if isinstance(value, dict) else {}


def _with_state(response: Response, state: dict[str, Any]) -> Response:
    response.set_cookie(CLINIC_COOKIE, _serializer().dumps(state), path="/demo/clinic",
                        httponly=True, samesite="Lax",
                        secure=current_app.config["AUTHZ_ISSUER"].startswith("https://"))
    return response


def _clinic_page(status: int = 200, **context: Any) -> Response:
    sub = _clinic_state().get("sub")
    context.setdefault("signed_in", isinstance(sub, str))
    response = Response(render_template("demo/clinic.html", **context), status,
                        mimetype="text/html")
    return response


@bp.get("/demo/clinic")
def clinic() -> Response:
    return _clinic_page()


@bp.post("/demo/clinic/start")
def clinic_start() -> Response:
    """Send the patient to the authorization endpoint (code + PKCE + RAR for medication)."""
    require_csrf()
    try:
        app = _clinic()
    except ClinicError as error:
        return _clinic_page(503, error=str(error))
    pending = Pending.new()
    return _with_state(redirect(app.authorization_url(pending), 303),  # type: ignore[arg-type]
                       {"pending": pending.to_dict()})


@bp.get("/demo/clinic/callback")
def clinic_callback() -> Response:
    """The authorization response: redeem the code, keep the pairwise sub, read once."""
    pending = Pending.from_dict(_clinic_state().get("pending"))
    if pending is None:
        return _clinic_page(400, error=gettext("This sign-in is not in progress (already"
                                               " finished, or started in another browser)."
                                               " Start again."))
    try:
        app = _clinic()
        sub = app.finish(pending, request.args.to_dict())
        reading = app.read(sub)
    except ClinicError as error:
        return _with_state(_clinic_page(400, error=str(error), signed_in=False), {})
    return _with_state(_clinic_page(reading=reading, signed_in=True), {"sub": sub})


@bp.post("/demo/clinic/read")
def clinic_read() -> Response:
    """Read again: a new decision for the same patient."""
    require_csrf()
    sub = _clinic_state().get("sub")
    if not isinstance(sub, str):
        return _clinic_page(400, error=gettext("The clinic does not know a patient yet: sign in"
                                               " first."))
    try:
        reading = _clinic().read(sub)
    except ClinicError as error:
        return _clinic_page(400, error=str(error))
    return _clinic_page(reading=reading)
