"""HTTP face of JPKI-SIM under ``/jpki-sim/``: OCSP, CRLs, ARLs and the link service (b7, b10).

Mount it with :func:`register` (the main app in demo mode) or run it alone with
:func:`create_app` (``authz sim serve``). Views only parse, call the authority and render.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from pathlib import Path
from typing import Any
from typing import cast

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from authz.errors import AuthzError
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.sim import profiles
from authz.sim.authority import SimAuthority
from authz.sim.profiles import Kind
from authz.sim.status import SimTimeout

EXTENSION = "authz.jpki_sim"
MAX_OCSP_REQUEST = 16 * 1024
MAX_LINK_REQUEST = 16 * 1024
PKIX_CRL = "application/pkix-crl"

bp = Blueprint("jpki_sim", __name__, url_prefix="/jpki-sim")


class _Mount:
    """Per-app state: where the simulator lives; it is opened on first use, not at assembly."""

    def __init__(self, state_dir: Path, base_url: str | None, fault_sleep: float) -> None:
        self.state_dir = state_dir
        self.base_url = base_url
        self.fault_sleep = fault_sleep
        self._sim: SimAuthority | None = None
        self._lock = threading.Lock()

    def authority(self) -> SimAuthority:
        with self._lock:
            if self._sim is None:
                self._sim = SimAuthority.open(self.state_dir, base_url=self.base_url)
            return self._sim


def register(app: Flask, state_dir: Path, *, base_url: str | None = None,
             fault_sleep: float = 30.0) -> None:
    """Mount the simulator's endpoints on ``app``; the state folder opens on first request."""
    # base_url seeds the URI prefix of a new state folder (default: the app's AUTHZ_ISSUER);
    # fault_sleep is how long the ``timeout`` fault stalls an OCSP request.
    app.extensions[EXTENSION] = _Mount(Path(state_dir), base_url or app.config.get("AUTHZ_ISSUER"),
                                       fault_sleep)
    app.register_blueprint(bp)


def authority_of(app: Flask) -> SimAuthority:
    """The simulator mounted on ``app``, for in-process status and link sources."""
    return cast(_Mount, app.extensions[EXTENSION]).authority()


def create_app(state_dir: Path, *, base_url: str | None = None,
               fault_sleep: float = 30.0) -> Flask:
    """A tiny app serving only the simulator (``authz sim serve``)."""
    app = Flask(__name__)
    register(app, state_dir, base_url=base_url, fault_sleep=fault_sleep)
    app.register_error_handler(AuthzError, _authz_problem)
    app.register_error_handler(HTTPException, _http_problem)
    return app


def _mount() -> _Mount:
    return cast(_Mount, current_app.extensions[EXTENSION])


def _kind(value: str) -> Kind:
    if value not in profiles.KINDS:
        raise NotFound("no such CA")
    return value


def _der(data: bytes, mimetype: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- OCSP (RFC 6960 appendix A: POST with application/ocsp-request) -------------------------------

@bp.post("/ocsp")
def ocsp() -> Response:
    """One OCSP request in, one signed OCSP response out."""
    if request.mimetype != "application/ocsp-request":
        abort(415)
    request.max_content_length = MAX_OCSP_REQUEST
    data = request.get_data(cache=False)
    try:
        answer = _mount().authority().ocsp_respond(data)
    except SimTimeout:
        # b7 timeout fault: stall past the client's timeout, then give up without an answer.
        time.sleep(_mount().fault_sleep)
        abort(503)
    return _der(answer, "application/ocsp-response")


# -- CRLs and ARLs --------------------------------------------------------------------------------

@bp.get("/crl/<kind>/g<int:generation>.crl")
def full_crl(kind: str, generation: int) -> Response:
    """The full CRL of one CA generation."""
    return _der(_mount().authority().crl(_kind(kind), generation), PKIX_CRL)


@bp.get("/crl/<kind>/<prefecture>/<city>.crl")
def dp_crl(kind: str, prefecture: str, city: str) -> Response:
    """The CRL of one municipality's distribution point (generation 1)."""
    return _der(_mount().authority().dp_crl(_kind(kind), prefecture, city, 1), PKIX_CRL)


@bp.get("/crl/<kind>/g<int:generation>/<prefecture>/<city>.crl")
def dp_crl_generation(kind: str, generation: int, prefecture: str, city: str) -> Response:
    """The CRL of one municipality's distribution point of a later CA generation."""
    return _der(_mount().authority().dp_crl(_kind(kind), prefecture, city, generation),
                PKIX_CRL)


@bp.get("/arl/<name>.crl")
def arl(name: str) -> Response:
    """The empty ARL of a CA: ``sign`` / ``auth`` (generation 1) or ``sign-g2`` and so on."""
    kind, _, generation = name.partition("-g")
    if generation and not generation.isdigit():
        raise NotFound("no such CA")
    return _der(_mount().authority().arl(_kind(kind), int(generation or 1)), PKIX_CRL)


# -- link service ---------------------------------------------------------------------------------

@bp.post("/link/resolve")
def link_resolve() -> Response:
    """``{"cert": base64url DER, "rp_id": ...}`` -> the link record (b7)."""
    request.max_content_length = MAX_LINK_REQUEST
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object with cert and rp_id")
    cert, rp_id = body.get("cert"), body.get("rp_id")
    if not isinstance(cert, str) or not isinstance(rp_id, str):
        raise InvalidInput("cert (base64url DER) and rp_id must be strings")
    try:
        der = base64.urlsafe_b64decode(cert + "=" * (-len(cert) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput("cert is not base64url") from None
    return jsonify(_mount().authority().link_resolve(der, rp_id))


# -- errors of the standalone app (the main app renders its own, in one place) ---------------------

def _problem(status: int, title: str) -> Response:
    body: dict[str, Any] = {"title": title, "status": status}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def _authz_problem(error: AuthzError) -> Response:
    return _problem(error.status, error.description if error.status < 500 else "Internal error.")


def _http_problem(error: HTTPException) -> Response:
    return _problem(error.code or 500, error.name or "Error")
