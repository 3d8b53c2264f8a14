"""A tiny stand-in for the service's card link (docs/jpki-contract.md), for card app tests.

It implements the contract the way the real service will: GET the challenge, POST the signed
response, ``proofing_required`` for an unknown person, then ``accepted`` after the sign-cert
proof. It checks signatures itself and uses the simulator's link service to know persons.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.sim.authority import SimAuthority

SERVICE_NAME = "テスト医療連携 (test)"
SHORT_CODE = "482915"


def canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StubService:
    """The card-link half of the service, on 127.0.0.1 with a free port."""

    def __init__(self, sim: SimAuthority) -> None:
        self.sim = sim
        self.accounts: set[str] = set()
        self.events: list[tuple[str, Any]] = []
        self.mode = "normal"  # normal | reject | gone | redirect | slow | garbage | cookie
        self.step = "login"
        self.released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.txn = secrets.token_urlsafe(12)
        self.tbs = ""
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def link(self) -> str:
        return f"{self.issuer}/jpki/transactions/{self.txn}/card?code={SHORT_CODE}"

    def start(self) -> StubService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def new_tbs(self, purpose: str, audience: str | None = None) -> str:
        self.tbs = canonical({"aud": audience or self.issuer, "iat": 1760000000,
                              "nonce": base64.urlsafe_b64encode(secrets.token_bytes(32))
                              .rstrip(b"=").decode(), "purpose": purpose, "txn": self.txn,
                              "v": 1})
        return self.tbs

    def posts(self) -> list[dict[str, Any]]:
        return [body for kind, body in self.events if kind == "POST"]

    # -- HTTP -----------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                stub.events.append(("GET", {"path": self.path, "cookie": self.headers["Cookie"]}))
                if not self.path.startswith(f"/jpki/transactions/{stub.txn}/card"):
                    return self._json(404, {"title": "Not found.", "status": 404})
                if stub.mode == "gone":
                    return self._json(410, {"title": "Expired.", "status": 410})
                if stub.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return None
                if stub.mode == "garbage":
                    return self._json(200, {"hello": "world"})
                body = {"service": SERVICE_NAME, "audience": stub.issuer,
                        "transaction": stub.txn, "short_code": SHORT_CODE, "step": stub.step,
                        "tbs": stub.tbs or stub.new_tbs(stub.step),
                        "expires_at": "2099-01-01T00:00:00Z"}
                extra = {"Set-Cookie": "sid=abc; Path=/"} if stub.mode == "cookie" else {}
                return self._json(200, body, extra)

            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(size))
                stub.events.append(("POST", {**body, "_cookie": self.headers["Cookie"]}))
                if stub.mode == "slow":
                    stub.released.wait(5)
                    return None
                if stub.mode == "reject":
                    return self._json(400, {"title": "The card response was not accepted.",
                                            "status": 400})
                status, answer = stub.check(body)
                return self._json(status, answer)

            def _json(self, status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                content = "application/json" if status < 400 else "application/problem+json"
                self.send_header("Content-Type", content)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def check(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Verify the signed response the way the service's b6 steps 1, 2, 3 and 7 do."""
        refused = (400, {"title": "The card response was not accepted.", "status": 400})
        if body == {"decline": "no_signature_certificate"} and self.step == "proofing":
            return 200, {"status": "accepted"}  # a login-only account (docs/jpki-contract.md)
        if body.get("tbs") != self.tbs:
            return refused
        cert = x509.load_der_x509_certificate(unb64url(body["cert"]))
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(unb64url(body["signature"]), self.tbs.encode(), padding.PKCS1v15(),
                   hashes.SHA256())
        purpose = json.loads(self.tbs)["purpose"]
        link = self.sim.link_resolve(cert.public_bytes(serialization.Encoding.DER), "stub-rp")
        if link["kind"] != ("auth" if purpose == "login" else "sign"):
            return refused
        if purpose == "login":
            if link["person_link_id"] in self.accounts:
                return 200, {"status": "accepted"}
            self.step = "proofing"
            return 200, {"status": "proofing_required", "step": "proofing",
                         "tbs": self.new_tbs("proofing")}
        self.accounts.add(str(link["person_link_id"]))
        return 200, {"status": "accepted"}
