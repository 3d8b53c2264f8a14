"""The card app: answer a service's card link with a virtual card (docs/jpki-contract.md).

``GET link`` -> show service name and short code -> sign SHA-256(tbs) as a DigestInfo with the
auth key (login, PIN) or the sign key (proofing, password) -> ``POST link``; on
``proofing_required`` sign the new TBS with the sign key and post again. No cookies, no
redirects: the link alone identifies the transaction (DESIGN section 3).
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol
from urllib.parse import urlsplit

from authz.config import is_loopback_host
from authz.sim.card import AUTH_CERT
from authz.sim.card import AUTH_KEY
from authz.sim.card import AUTH_PIN
from authz.sim.card import SIGN_CERT
from authz.sim.card import SIGN_KEY
from authz.sim.card import SIGN_PIN
from authz.sim.card import CardError
from authz.sim.card import PinBlocked
from authz.sim.card import PinIncorrect
from authz.sim.card import VirtualCard
from authz.sim.card import digest_info

MAX_BODY = 64 * 1024
STEPS = ("login", "proofing")
UV_METHODS = ("pin", "face", "fpt")


class CardAppError(Exception):
    """A failed run: one line for the user and the exit code (1 refused/failed, 2 bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Challenge:
    """What ``GET link`` returned, checked for consistency."""

    service: str
    audience: str
    transaction: str
    short_code: str
    step: str
    tbs: str


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Transport(Protocol):
    """How the card app reaches the link: ``GET`` the challenge, ``POST`` a response."""

    def get(self) -> dict[str, Any]: ...

    def post(self, body: dict[str, str]) -> dict[str, Any]: ...


def respond(card: VirtualCard, link: str, *, pin: str | None, password: str | None = None,
            uv: str = "pin", timeout: float = 10.0,
            show: Callable[[str], None] = print, transport: Transport | None = None) -> str:
    """Run the card flow against ``link``; returns ``accepted`` or raises CardAppError.

    ``transport`` replaces HTTP for a caller inside the service itself (the demo wallet): a
    server never calls itself over HTTP (DESIGN 3).
    """
    if uv not in UV_METHODS:
        raise CardAppError("--uv must be pin, face or fpt", 2)
    parts = urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CardAppError("the link must be an absolute http(s) URL", 2)
    client = transport if transport is not None else _Client(link, timeout)
    challenge = _challenge(client.get())
    if not link.startswith(challenge.audience.rstrip("/") + "/"):
        # The card signs for the audience it is shown; a link on another origin is a relay.
        raise CardAppError(f"the link is not on the service's own address "
                           f"({challenge.audience}); refusing to sign")
    show(f"Service: {challenge.service}")
    show(f"Code: {challenge.short_code} (check that the screen shows the same code)")
    step, tbs = challenge.step, challenge.tbs
    for _ in range(2):
        if step == "proofing" and not card.has(SIGN_PIN):
            # docs/jpki-contract.md: a card without a signature certificate (holder under 15)
            # says so; the service then opens a login-only account.
            show("This card has no signature certificate: continuing with login only.")
            body = {"decline": DECLINE}
        else:
            body = _signed(card, step, tbs, pin=pin, password=password, uv=uv)
        reply = client.post(body)
        status = reply.get("status")
        if status == "accepted":
            return "accepted"
        if status == "proofing_required" and step == "login":
            step, tbs = "proofing", str(reply.get("tbs", ""))
            _check_tbs(tbs, challenge, "proofing")
            show("The service asks for identity proofing with the signature certificate.")
            continue
        break
    raise CardAppError(f"unexpected answer from the service: {str(status)[:40]!r}")


DECLINE = "no_signature_certificate"


def _challenge(data: dict[str, Any]) -> Challenge:
    fields = ("service", "audience", "transaction", "short_code", "step", "tbs")
    if not all(isinstance(data.get(name), str) for name in fields):
        raise CardAppError("the service's answer is not a card challenge")
    challenge = Challenge(*(str(data[name]) for name in fields))
    if challenge.step not in STEPS:
        raise CardAppError(f"unknown step {challenge.step[:20]!r}")
    _check_tbs(challenge.tbs, challenge, challenge.step)
    return challenge


def _check_tbs(tbs: str, challenge: Challenge, purpose: str) -> None:
    # b5: the card only signs a TBS bound to the audience, transaction and step it displays.
    try:
        parsed = json.loads(tbs)
    except ValueError:
        raise CardAppError("the text to sign is not the expected JSON") from None
    if not isinstance(parsed, dict) or parsed.get("v") != 1:
        raise CardAppError("the text to sign is not the expected JSON")
    if (parsed.get("aud") != challenge.audience or parsed.get("txn") != challenge.transaction
            or parsed.get("purpose") != purpose):
        raise CardAppError("the text to sign does not match the service, transaction or step")


def _signed(card: VirtualCard, step: str, tbs: str, *, pin: str | None, password: str | None,
            uv: str) -> dict[str, str]:
    card.select_ap()
    try:
        if step == "login":
            if uv == "pin":
                if pin is None:
                    raise CardAppError("--pin is needed", 2)
                card.verify(AUTH_PIN, pin)
            else:
                card.verify_biometric(AUTH_PIN)
            cert, key, used = card.read(AUTH_CERT), AUTH_KEY, uv
        else:
            if password is None:
                raise CardAppError("the service needs identity proofing with the signature"
                                   " certificate: run again with --password")
            if not card.has(SIGN_PIN):
                raise CardAppError("this card has no signature certificate (holder under 15,"
                                   " or none issued), so identity proofing is not possible")
            card.verify(SIGN_PIN, password)
            cert, key, used = card.read(SIGN_CERT), SIGN_KEY, "pin"
        signature = card.sign(key, digest_info(tbs.encode("utf-8")))
    except PinIncorrect as error:
        what = "PIN" if step == "login" else "signature password"
        raise CardAppError(f"wrong {what}: {error.tries_left} tries left") from None
    except PinBlocked:
        what = "PIN" if step == "login" else "signature password"
        raise CardAppError(f"the {what} is locked (SW 6983); reset it with"
                           " `authz sim reset-pin`") from None
    except CardError as error:
        raise CardAppError(f"the card refused: {error}") from None
    return {"cert": b64url(cert), "signature": b64url(signature), "tbs": tbs,
            "token": card.token, "uv": used}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could carry the signed response to another origin; we stop instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Client:
    """Plain urllib: no cookie jar, no redirects, proxies skipped for loopback services."""

    def __init__(self, link: str, timeout: float) -> None:
        self.link = link
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if is_loopback_host(urlsplit(link).hostname):
            handlers.append(urllib.request.ProxyHandler({}))
        self.opener = urllib.request.build_opener(*handlers)

    def get(self) -> dict[str, Any]:
        return self._call(urllib.request.Request(  # noqa: S310 - http(s) checked in respond()
            self.link, headers={"Accept": "application/json"}, method="GET"), getting=True)

    def post(self, body: dict[str, str]) -> dict[str, Any]:
        return self._call(urllib.request.Request(  # noqa: S310 - http(s) checked in respond()
            self.link, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"}),
            getting=False)

    def _call(self, request: urllib.request.Request, *, getting: bool) -> dict[str, Any]:
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                payload = response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as error:
            with error:
                title = _title(error.read(MAX_BODY))
            if getting and error.code in (404, 410):
                raise CardAppError(f"the link is unknown, expired or already used"
                                   f" (HTTP {error.code})") from None
            if 300 <= error.code < 400:
                raise CardAppError(f"the service redirected (HTTP {error.code});"
                                   " refusing to follow") from None
            raise CardAppError(f"the service refused the response: {title}"
                               f" (HTTP {error.code})") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise CardAppError(f"cannot reach the service: {reason}") from None
        if len(payload) > MAX_BODY:
            raise CardAppError("the service's answer is too large")
        try:
            data = json.loads(payload)
        except ValueError:
            raise CardAppError("the service's answer is not JSON") from None
        if not isinstance(data, dict):
            raise CardAppError("the service's answer is not a JSON object")
        return data


def _title(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return "no details"
    title = data.get("title") if isinstance(data, dict) else None
    return str(title)[:200] if title else "no details"
