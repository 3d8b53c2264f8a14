"""The demo clinic's app: a tiny relying party of the demo clinic (`/demo/clinic`, `authz demo`).

It plays an institution's two systems against the service's own public endpoints:

- the clinic's app (client ``demo-clinic-app``, ``private_key_jwt``) sends the patient to the
  authorization endpoint with PKCE and a ``health_record_access`` detail for medication; the
  patient logs in with the card and approves, which records the consent; the app checks the ID
  token and keeps only the pairwise ``sub`` (the clinic's identifier for the patient);
- the clinic's records system (client ``demo-clinic-system``, client credentials, scope
  ``decisions``) asks ``POST /v1/decisions`` whether a physician may read medication for that
  ``sub``.

The calls go through a ``Call`` function: in-process WSGI inside the service (a server never
calls itself over HTTP, DESIGN 3), or anything else that speaks HTTP to the service.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from authz.demo import CLINIC_APP
from authz.demo import CLINIC_CALLBACK
from authz.demo import CLINIC_SYSTEM
from authz.demo import ClinicClients

# (method, path, form, json, bearer) -> (status, JSON body or {})
Call = Callable[[str, str, Mapping[str, str] | None, Any, str | None], tuple[int, dict[str, Any]]]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PURPOSE = "treatment_visit"
CATEGORIES = ("medication",)
ROLE = "physician"
PRACTITIONER = "demo-dr-001"


class ClinicError(Exception):
    """A step of the clinic app failed; the message is safe to show."""


@dataclass(frozen=True)
class Pending:
    """One authorization request in flight (kept by the clinic app, not the service)."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Pending:
        return cls(secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48))

    def to_dict(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier}

    @classmethod
    def from_dict(cls, data: Any) -> Pending | None:
        if not isinstance(data, dict) or not all(
                isinstance(data.get(k), str) for k in ("state", "nonce", "verifier")):
            return None
        return cls(data["state"], data["nonce"], data["verifier"])


@dataclass(frozen=True)
class Reading:
    """The decision for one read of the patient's medication."""

    decision_id: str
    policy_version: str
    results: list[dict[str, Any]]

    @property
    def permitted(self) -> bool:
        return bool(self.results) and all(r.get("decision") == "permit" for r in self.results)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class ClinicApp:
    """The demo clinic's app and records system, as one small relying party."""

    def __init__(self, clients: ClinicClients, issuer: str, call: Call) -> None:
        self.clients = clients
        self.issuer = issuer.rstrip("/")
        self.call = call

    @property
    def redirect_uri(self) -> str:
        return self.issuer + CLINIC_CALLBACK

    def authorization_url(self, pending: Pending) -> str:
        """Where the patient's browser goes: code flow, PKCE S256, RAR for medication."""
        detail = {"type": "health_record_access", "institution": self.clients.institution,
                  "purpose": PURPOSE, "categories": list(CATEGORIES), "actions": ["read"]}
        challenge = _b64(hashlib.sha256(pending.verifier.encode()).digest())
        query = {"response_type": "code", "client_id": CLINIC_APP,
                 "redirect_uri": self.redirect_uri, "scope": "openid", "state": pending.state,
                 "nonce": pending.nonce, "code_challenge": challenge,
                 "code_challenge_method": "S256",
                 "authorization_details": json.dumps([detail], separators=(",", ":"))}
        return f"{self.issuer}/oauth/authorize?{urlencode(query)}"

    def _assertion(self, client_id: str, private_pem: str) -> dict[str, str]:
        now = int(time.time())
        token = jwt.encode({"alg": "ES256", "kid": "k1"}, {
            "iss": client_id, "sub": client_id, "aud": self.issuer, "iat": now,
            "exp": now + 60, "jti": secrets.token_urlsafe(16)}, ECKey.import_key(private_pem))
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token}

    def finish(self, pending: Pending, args: Mapping[str, str]) -> str:
        """The callback: check state and ``iss``, redeem the code, check the ID token; return
        the patient's pairwise ``sub`` at the clinic."""
        if args.get("state") != pending.state:
            raise ClinicError("the callback's state does not match this sign-in")
        if args.get("iss") != self.issuer:  # RFC 9207 §2.4: mix-up defence
            raise ClinicError("the callback does not come from this issuer")
        if "error" in args:
            raise ClinicError(f"the authorization was refused: {args.get('error', '')[:60]}")
        code = args.get("code")
        if not code:
            raise ClinicError("the callback carries no code")
        status, body = self.call("POST", "/oauth/token", {
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier,
            **self._assertion(CLINIC_APP, self.clients.app_key)}, None, None)
        if status != 200 or not isinstance(body.get("id_token"), str):
            raise ClinicError(f"the token endpoint refused the code: "
                              f"{str(body.get('error', status))[:60]}")
        return self._sub(body["id_token"], pending.nonce)

    def _sub(self, id_token: str, nonce: str) -> str:
        status, jwks = self.call("GET", "/jwks.json", None, None, None)
        if status != 200:
            raise ClinicError("the service's keys could not be read")
        try:
            token = jwt.decode(id_token, KeySet.import_key_set(jwks),  # type: ignore[arg-type]
                               algorithms=["ES256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": CLINIC_APP},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True}, exp={"essential": True}).validate(token.claims)
        except (JoseError, ValueError, TypeError, KeyError):
            raise ClinicError("the ID token did not verify") from None
        return str(token.claims["sub"])

    def system_token(self) -> str:
        """The records system's own token: client credentials, scope ``decisions``."""
        status, body = self.call("POST", "/oauth/token", {
            "grant_type": "client_credentials", "scope": "decisions",
            **self._assertion(CLINIC_SYSTEM, self.clients.system_key)}, None, None)
        if status != 200 or not isinstance(body.get("access_token"), str):
            raise ClinicError(f"the records system got no token: "
                              f"{str(body.get('error', status))[:60]}")
        return str(body["access_token"])

    def read(self, sub: str) -> Reading:
        """Ask the decision API whether a physician may read the patient's medication."""
        token = self.system_token()
        status, body = self.call("POST", "/v1/decisions", None, {
            "patient": sub, "categories": list(CATEGORIES), "action": "read",
            "purpose": PURPOSE, "role": ROLE, "practitioner": PRACTITIONER}, token)
        if status != 200 or not isinstance(body.get("results"), list):
            raise ClinicError(f"the decision API refused: {str(body.get('title', status))[:80]}")
        return Reading(str(body.get("decision_id", "")), str(body.get("policy_version", "")),
                       [r for r in body["results"] if isinstance(r, dict)])


def wsgi_call(app: Any, issuer: str) -> Call:
    """A ``Call`` that runs requests through ``app`` in this process (no socket, no cookies)."""
    from urllib.parse import urlsplit

    from werkzeug.test import Client

    parts = urlsplit(issuer)
    client = Client(app, use_cookies=False)

    def call(method: str, path: str, form: Mapping[str, str] | None, body: Any,
             bearer: str | None) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        response = client.open(path, method=method, data=dict(form) if form else None,
                               json=body, headers=headers,
                               base_url=f"{parts.scheme}://{parts.netloc}",
                               environ_base={"REMOTE_ADDR": "127.0.0.1"})
        try:
            data = json.loads(response.get_data())
        except ValueError:
            data = {}
        return response.status_code, data if isinstance(data, dict) else {}

    return call
