"""Proof with certified clients: the whole flow over real HTTP against ``authz serve``.

The server is ``authz serve`` in demo mode on SQLite with a temporary instance; clients,
institutions and keys are registered with the real CLI. Three kinds of client drive it:

1. panva's ``openid-client`` (an OpenID Certified relying party library) through
   ``node/driver.mjs``: discovery, PKCE S256 + state + nonce, the code grant with its ``iss``
   (RFC 9207), state, nonce and ID token signature checks, refresh, revocation, client
   credentials with ``private_key_jwt`` and introspection by a resource server. UserInfo, PAR
   and DPoP run as soon as the discovery document announces them.
2. Authlib's own client (``OAuth2Session`` over ``requests``): the code flow with PKCE and a
   refresh.
3. Negative cases of the OpenID conformance suite. In-process versions of some of them are in
   test_code_flow.py (code replay, trailing slash / extra query / host case in the redirect
   URI, missing nonce, refresh token reuse with the grace window patched to zero); here they run
   over real HTTP with the real grace window, together with the ones that exist nowhere else:
   path and scheme case, another loopback port, ``localhost`` for ``127.0.0.1``, redirect URI /
   verifier / client mismatches at the token endpoint and key rotation, ``max_age=0`` and
   ``prompt=login`` forcing a new card login, a refused refresh leaving its token usable, and a
   request object refused with ``request_not_supported``.

Python plays the patient's browser: a cookie jar that never follows a redirect by itself, the
card login answered with ``authz card respond`` and the demo card, the consent form approved
with its CSRF token, and the redirect back to the client captured, not followed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.cookiejar
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import MismatchingStateException
from cryptography.hazmat.primitives.asymmetric import ec
from test_serve import AUTHZ
from test_serve import serving
from tests_support import free_port

from authz.oauth.server import REFRESH_GRACE

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).parent / "node"
DRIVER = NODE_DIR / "driver.mjs"
REDIRECT = "http://127.0.0.1:9/cb"  # port 9 (discard): nothing ever answers there
RECORDS = "https://records.example/fhir"
APP_SCOPE = "openid profile offline_access consents"
PIN, PASSWORD = "1234", "DEMO2026"  # the demo cards' (authz/demo.py)
HTTP_TIMEOUT = 15
CLI_TIMEOUT = 90
DRIVER_TIMEOUT = 60


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str, *, private: bool = False) -> dict:
    numbers = key.private_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64(numbers.public_numbers.x.to_bytes(32, "big")),
           "y": b64(numbers.public_numbers.y.to_bytes(32, "big"))}
    if private:
        jwk["d"] = b64(numbers.private_value.to_bytes(32, "big"))
    return jwk


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64(hashlib.sha256(verifier.encode()).digest())


def query_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


# -- the server -----------------------------------------------------------------------------------

@dataclass
class Live:
    """A running ``authz serve`` and what the test registered in it."""

    issuer: str
    port: int
    instance: Path
    env: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    def cli(self, *args: str) -> Any:
        result = subprocess.run([AUTHZ, *args], capture_output=True, text=True,
                                timeout=CLI_TIMEOUT, env={**os.environ, **self.env})
        assert result.returncode == 0, f"authz {' '.join(args)}: {result.stdout}{result.stderr}"
        return json.loads(result.stdout) if "--json" in args else result.stdout

    def card(self, name: str = "hanako") -> Path:
        return self.instance / "demo-cards" / f"{name}.json"

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.issuer + path, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return json.loads(response.read())

    def metadata(self) -> dict:
        return self.get_json("/.well-known/openid-configuration")

    def jwks(self) -> dict:
        return self.get_json("/jwks.json")

    def verify(self, token: str, *, audience: str | None, jwks: dict | None = None,
               expiry: bool = True) -> dict:
        """A JWT's claims after checking its ES256 signature with the published JWKS."""
        kid = jwt.get_unverified_header(token)["kid"]
        key = jwt.PyJWKSet.from_dict(jwks or self.jwks())[kid].key
        return jwt.decode(token, key, algorithms=["ES256"], issuer=self.issuer,
                          audience=audience, options={"verify_aud": audience is not None,
                                                      "verify_exp": expiry})

    def post(self, path: str, data: dict[str, Any]) -> tuple[int, dict]:
        """A form POST without cookies, as a client's back channel sends it."""
        request = urllib.request.Request(self.issuer + path,
                                         data=urllib.parse.urlencode(data, doseq=True).encode())
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            with error:
                body, status = error.read(), error.code
        return status, json.loads(body) if body else {}

    def exchange(self, client_id: str, code: str, verifier: str,
                 redirect_uri: str = REDIRECT, **extra: str) -> tuple[int, dict]:
        return self.post("/oauth/token", {
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier, **extra})

    def refresh(self, client_id: str, refresh_token: str) -> tuple[int, dict]:
        return self.post("/oauth/token", {"grant_type": "refresh_token",
                                          "refresh_token": refresh_token,
                                          "client_id": client_id})


@contextmanager
def live_server(instance: Path, port: int | None = None) -> Iterator[Live]:
    """``authz serve`` in demo mode on SQLite in ``instance``; stopped however the test ends."""
    port = port or free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {"AUTHZ_INSTANCE_PATH": str(instance), "AUTHZ_DEMO": "1", "AUTHZ_ISSUER": issuer,
           "AUTHZ_DATABASE_URL": f"sqlite:///{instance / 'authz.db'}"}
    with serving(env, port):  # SIGTERM, then SIGKILL after 30 s, in its finally
        yield Live(issuer=issuer, port=port, instance=instance, env=env)


def register(live: Live, folder: Path) -> None:
    """Institutions and clients through the real CLI, against the running server's database."""
    clinic = live.cli("institution", "add", "--name", "認定テスト診療所", "--type", "clinic",
                      "--code", "1300000077", "--json")["id"]
    live.ids["clinic"] = clinic
    for name in ("app", "authlib", "conformance"):
        live.ids[name] = live.cli(
            "client", "add", "--institution", clinic, "--name", f"Patient app ({name})",
            "--auth-method", "none", "--redirect-uri", REDIRECT, "--scope", APP_SCOPE,
            "--json")["client_id"]
    system_key = ec.generate_private_key(ec.SECP256R1())
    jwks_file = folder / "system-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [ec_jwk(system_key, "sys-1")]}))
    live.ids["system"] = live.cli(
        "client", "add", "--institution", clinic, "--name", "Clinic system",
        "--auth-method", "private_key_jwt", "--jwks", str(jwks_file), "--scope", "decisions",
        "--json")["client_id"]
    live.keys["system"] = system_key
    records = live.cli("institution", "add", "--name", "記録サーバ", "--type", "resource_server",
                       "--code", "RS-CERT", "--json")["id"]
    rs_key = ec.generate_private_key(ec.SECP256R1())
    rs_jwks = folder / "rs-jwks.json"
    rs_jwks.write_text(json.dumps({"keys": [ec_jwk(rs_key, "rs-1")]}))
    live.ids["rs"] = live.cli(
        "client", "add", "--institution", records, "--name", "Record server",
        "--auth-method", "private_key_jwt", "--jwks", str(rs_jwks), "--scope", "introspect",
        "--resource-uri", RECORDS, "--json")["client_id"]
    live.keys["rs"] = rs_key


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The server the certified clients talk to."""
    folder = tmp_path_factory.mktemp("certified")
    with live_server(folder / "instance") as server:
        register(server, folder)
        yield server


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A second server for the negative cases, so that no test nears the per-address rate
    limits (60 authorization requests and 20 login pages a minute for each worker)."""
    folder = tmp_path_factory.mktemp("conformance")
    with live_server(folder / "instance") as server:
        register(server, folder)
        yield server


# -- the patient's browser ------------------------------------------------------------------------

class ConsentForm(HTMLParser):
    """What a browser submits from the page's POST form: its action, hidden fields and the
    boxes that are ticked (the page pre-selects what the patient approves by default)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self._inside = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form" and found.get("method", "").lower() == "post" and self.action is None:
            self.action, self._inside = found.get("action", ""), True
        elif tag == "input" and self._inside and found.get("name"):
            kind = found.get("type", "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in found:
                return
            if kind not in ("submit", "button", "image", "file"):
                self.fields.append((found["name"], found.get("value", "on")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # every redirect is looked at, and the one to the client is never followed


@dataclass
class Page:
    status: int
    url: str
    headers: Any
    text: str

    @property
    def location(self) -> str:
        return urllib.parse.urljoin(self.url, self.headers["Location"])


class Browser:
    """A cookie jar that follows redirects on the issuer only and answers the card login."""

    def __init__(self, live: Live, card: str = "hanako") -> None:
        self.live, self.card = live, card
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect())
        self.card_logins = 0

    def open(self, url: str, form: list[tuple[str, str]] | None = None,
             headers: dict[str, str] | None = None) -> Page:
        assert url.startswith(self.live.issuer + "/"), f"the browser left the issuer: {url}"
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=HTTP_TIMEOUT) as response:
                return Page(response.status, url, response.headers, response.read().decode())
        except urllib.error.HTTPError as error:
            with error:
                return Page(error.code, url, error.headers, error.read().decode())

    def login(self) -> None:
        """Open /login, answer its card link with the demo card, load /login again."""
        page = self.open(self.live.issuer + "/login")
        assert page.status == 200, page.text[:300]
        self.answer_card(page)
        assert self.open(self.live.issuer + "/login").status == 302

    def answer_card(self, page: Page) -> None:
        found = re.search(r'data-card-link="([^"]+)"', page.text)
        assert found, f"no card link on {page.url}: {page.text[:300]}"
        answered = subprocess.run(
            [AUTHZ, "card", "respond", "--card", str(self.live.card(self.card)), "--pin", PIN,
             "--password", PASSWORD, "--link", html.unescape(found.group(1))],
            capture_output=True, text=True, timeout=CLI_TIMEOUT,
            env={**os.environ, **self.live.env})
        assert answered.returncode == 0, answered.stdout + answered.stderr
        self.card_logins += 1

    def authorize(self, url: str, *, decision: str = "approve", max_steps: int = 12) -> str:
        """Log in when asked, approve (or deny) the consent page; the redirect to the client."""
        page = self.open(url)
        redirected: dict[str, int] = {}
        for _ in range(max_steps):
            if page.status in (301, 302, 303, 307, 308):
                target = page.location
                if not target.startswith(self.live.issuer + "/"):
                    return target  # the authorization response: captured, not followed
                redirected[target] = redirected.get(target, 0) + 1
                if redirected[target] > 2:  # once before the card login, once after it
                    raise AssertionError(f"redirect loop between {page.url} and {target}")
                page = self.open(target)
            elif page.status == 200 and "data-card-link" in page.text:
                self.answer_card(page)
                page = self.open(page.url)  # loading /login again continues the flow
            elif page.status == 200 and 'name="decision"' in page.text:
                form = ConsentForm(page.text)
                assert form.action and "csrf" in dict(form.fields), page.text[:500]
                page = self.open(urllib.parse.urljoin(page.url, form.action),
                                 form=[*form.fields, ("decision", decision)],
                                 headers={"Origin": self.live.issuer})
            else:
                raise AssertionError(f"{page.status} at {page.url}: {page.text[:500]}")
        raise AssertionError(f"no authorization response after {max_steps} steps")


@pytest.fixture(scope="module")
def patient(live: Live) -> Browser:
    """A browser with a card login, shared by the tests that only need a consenting patient."""
    browser = Browser(live)
    browser.login()
    return browser


@pytest.fixture(scope="module")
def suite_patient(suite: Live) -> Browser:
    browser = Browser(suite)
    browser.login()
    return browser


def authorize_url(live: Live, client_id: str, challenge: str, **extra: str | None) -> str:
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
        "scope": APP_SCOPE, "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12), "code_challenge": challenge,
        "code_challenge_method": "S256"}
    params.update(extra)
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{live.issuer}/oauth/authorize?{query}"


def python_code_flow(live: Live, browser: Browser, client_id: str,
                     **extra: str | None) -> tuple[str, dict[str, list[str]], str]:
    """(verifier, the authorization response's query, the authorization URL)."""
    verifier, challenge = pkce()
    url = authorize_url(live, client_id, challenge, **extra)
    callback = browser.authorize(url)
    assert callback.startswith(REDIRECT + "?"), callback
    return verifier, query_of(callback), url


# -- openid-client (Node.js) ----------------------------------------------------------------------

def _installed_openid_client() -> str | None:
    manifest = NODE_DIR / "node_modules" / "openid-client" / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


@pytest.fixture(scope="module")
def openid_client() -> str:
    """node_modules installed from the lock file (``npm ci``) when missing or stale."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the openid-client (Node.js) flows cannot run here")
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/openid-client"]["version"]
    if _installed_openid_client() != wanted:
        npm = shutil.which("npm")
        assert npm, "node is on PATH but npm is not: cannot install tests/oauth/node"
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _installed_openid_client() == wanted
    return wanted


class Driver:
    """node/driver.mjs: one JSON request a line on stdin, one answer a line on stdout."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._sink = log.open("wb")
        self.process = subprocess.Popen(
            [shutil.which("node") or "node", str(DRIVER)], cwd=NODE_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._sink, text=True, encoding="utf-8")
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._last = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def call(self, op: str, **fields: Any) -> dict:
        """The driver's whole answer: ``ok`` with ``result``, or ``error``."""
        assert self.process.stdin is not None
        self._last += 1
        self.process.stdin.write(json.dumps({"id": self._last, "op": op, **fields}) + "\n")
        self.process.stdin.flush()
        try:
            line = self._answers.get(timeout=DRIVER_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"openid-client driver gave no answer to {op} "
                                 f"in {DRIVER_TIMEOUT} s; {self.stderr()}") from None
        if line is None:
            raise AssertionError(f"openid-client driver exited during {op}: {self.stderr()}")
        answer = json.loads(line)
        assert answer["id"] == self._last
        return answer

    def __call__(self, op: str, **fields: Any) -> Any:
        """The result of an operation that must succeed."""
        answer = self.call(op, **fields)
        assert answer["ok"], f"openid-client refused {op}: {answer['error']}"
        return answer["result"]

    def stderr(self) -> str:
        self._sink.flush()
        return self.log.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._reader.join(timeout=10)
            self._sink.close()


@pytest.fixture
def node(openid_client: str, tmp_path: Path) -> Iterator[Driver]:
    driver = Driver(tmp_path / "driver.log")
    try:
        yield driver
    finally:
        driver.close()


def features(metadata: dict) -> dict[str, bool]:
    """Optional features: each of their checks below runs when discovery announces it."""
    return {"userinfo": "userinfo_endpoint" in metadata,
            "par": "pushed_authorization_request_endpoint" in metadata,
            "dpop": "dpop_signing_alg_values_supported" in metadata}


def test_openid_client_code_flow_refresh_and_revocation(node: Driver, live: Live) -> None:
    found = node("discover", name="app", issuer=live.issuer, client_id=live.ids["app"],
                 auth="none", dpop=True)
    metadata = found["metadata"]
    assert metadata["issuer"] == live.issuer
    has = features(metadata)
    assert found["dpop"] is has["dpop"]
    request = node("authorize", config="app", flow="login", redirect_uri=REDIRECT,
                   scope=APP_SCOPE, par=has["par"])
    url = request["url"]
    if has["par"]:
        assert set(query_of(url)) == {"client_id", "request_uri"}
    browser = Browser(live)
    callback = browser.authorize(url)
    assert browser.card_logins == 1  # no session yet: the card login came first
    assert query_of(callback)["iss"] == [live.issuer]

    # openid-client checks iss (RFC 9207), state, PKCE, nonce, the ID token's claims and, with
    # enableNonRepudiationChecks, its ES256 signature against the JWKS. First a mix-up: the
    # same response claiming another issuer is refused before any token request is made.
    mixed_up = callback.replace(urllib.parse.quote(live.issuer, safe=""),
                                urllib.parse.quote("https://as.example", safe=""))
    assert mixed_up != callback
    refused = node.call("callback", config="app", flow="login", url=mixed_up)
    assert not refused["ok"]
    assert '"iss"' in refused["error"]["cause"]["message"], refused
    granted = node("callback", config="app", flow="login", url=callback)
    tokens, claims = granted["tokens"], granted["claims"]
    assert claims["iss"] == live.issuer
    assert claims["aud"] == live.ids["app"]
    assert claims["nonce"] == request["nonce"]
    assert claims["acr"] == "urn:mdx:acr:jpki-auth"
    assert not claims["sub"].startswith("pat_")  # pairwise, never the internal account id
    header = granted["id_token_header"]
    assert header["alg"] == "ES256"
    assert header["kid"] in {k["kid"] for k in live.jwks()["keys"]}
    assert tokens["token_type"].lower() == ("dpop" if has["dpop"] else "bearer")
    assert tokens["refresh_token"].startswith("azrt_")
    assert set(tokens["scope"].split()) == set(APP_SCOPE.split())
    access = live.verify(tokens["access_token"], audience=live.issuer)
    assert access["sub"] == claims["sub"]
    assert access["client_id"] == live.ids["app"]
    if has["dpop"]:
        assert access["cnf"]["jkt"]  # RFC 9449 §6: the token is bound to the client's key
    if has["userinfo"]:
        info = node("userinfo", config="app", access_token=tokens["access_token"],
                    subject=claims["sub"])
        assert info["sub"] == claims["sub"]
    if has["par"]:
        # DESIGN 4: a request_uri is dead once its authorization completed
        again = browser.open(url)
        assert again.status != 200 or 'name="decision"' not in again.text
        if again.status == 302:
            assert "code" not in query_of(again.location)

    refreshed = node("refresh", config="app", refresh_token=tokens["refresh_token"])["tokens"]
    assert refreshed["refresh_token"] != tokens["refresh_token"]  # rotated
    assert refreshed["access_token"] != tokens["access_token"]
    assert live.verify(refreshed["access_token"], audience=live.issuer)["sub"] == claims["sub"]
    if has["dpop"]:
        # RFC 9449 §5: a public client's refresh token is bound to its DPoP key
        node("discover", name="app-without-dpop", issuer=live.issuer,
             client_id=live.ids["app"], auth="none", dpop=False)
        stolen = node.call("refresh", config="app-without-dpop",
                           refresh_token=refreshed["refresh_token"])
        assert not stolen["ok"], stolen
        if has["userinfo"]:
            # RFC 9449 §7.1: a DPoP-bound access token is refused as a plain bearer token
            bearer = node.call("userinfo", config="app-without-dpop",
                               access_token=refreshed["access_token"], subject=claims["sub"])
            assert not bearer["ok"]
            assert bearer["error"]["status"] == 401, bearer

    node("revoke", config="app", token=refreshed["refresh_token"],
         parameters={"token_type_hint": "refresh_token"})
    refused = node.call("refresh", config="app", refresh_token=refreshed["refresh_token"])
    assert not refused["ok"]
    assert refused["error"]["error"] == "invalid_grant", refused


def test_openid_client_private_key_jwt_client_credentials_and_introspection(
        node: Driver, live: Live, patient: Browser) -> None:
    system = node("discover", name="system", issuer=live.issuer, client_id=live.ids["system"],
                  auth="private_key_jwt",
                  jwk=ec_jwk(live.keys["system"], "sys-1", private=True))
    assert "private_key_jwt" in system["metadata"]["token_endpoint_auth_methods_supported"]
    machine = node("client_credentials", config="system", parameters={"scope": "decisions"})
    assert "refresh_token" not in machine["tokens"]
    machine_claims = live.verify(machine["tokens"]["access_token"], audience=live.issuer)
    assert machine_claims["sub"] == live.ids["system"]
    assert machine_claims["scope"] == "decisions"
    # What openid-client v6 (oauth4webapi) signs by default: aud is the issuer identifier as a
    # plain string, which is exactly what the server demands; nothing had to be configured.
    (sent,) = node("assertions", config="system")
    assert sent["header"] == {"alg": "ES256", "kid": "sys-1"}
    assert sent["payload"]["aud"] == live.issuer
    assert sent["payload"]["iss"] == sent["payload"]["sub"] == live.ids["system"]
    assert sent["payload"]["exp"] - sent["payload"]["iat"] <= 300

    # A patient's token for the record server (RFC 8707), then introspected by that server.
    node("discover", name="app", issuer=live.issuer, client_id=live.ids["app"], auth="none")
    request = node("authorize", config="app", flow="records", redirect_uri=REDIRECT,
                   scope="openid consents", parameters={"resource": RECORDS})
    callback = patient.authorize(request["url"])
    user = node("callback", config="app", flow="records", url=callback,
                parameters={"resource": RECORDS})
    user_token = user["tokens"]["access_token"]
    assert user["access_token"]["payload"]["aud"] == RECORDS
    node("discover", name="rs", issuer=live.issuer, client_id=live.ids["rs"],
         auth="private_key_jwt", jwk=ec_jwk(live.keys["rs"], "rs-1", private=True))
    looked = node("introspect", config="rs", token=user_token)
    assert looked["active"] is True
    assert looked["client_id"] == live.ids["app"]
    assert looked["aud"] in (RECORDS, [RECORDS])
    assert looked["sub"] == user["claims"]["sub"]
    # not for this resource server's audience
    assert node("introspect", config="rs", token=machine["tokens"]["access_token"]) == {
        "active": False}
    node("revoke", config="app", token=user_token,
         parameters={"token_type_hint": "access_token"})
    assert node("introspect", config="rs", token=user_token) == {"active": False}
    # a client without the introspect scope is refused
    refused = node.call("introspect", config="system", token=user_token)
    assert not refused["ok"]
    assert refused["error"]["status"] == 403, refused


# -- Authlib's client -----------------------------------------------------------------------------

def test_authlib_client_code_flow_with_pkce_and_refresh(live: Live, patient: Browser) -> None:
    client_id = live.ids["authlib"]
    with requests.Session() as http, OAuth2Session(
            client_id, scope=APP_SCOPE, redirect_uri=REDIRECT, code_challenge_method="S256",
            token_endpoint_auth_method="none") as session:
        metadata = http.get(f"{live.issuer}/.well-known/openid-configuration",
                            timeout=HTTP_TIMEOUT).json()
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        url, state = session.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        assert query_of(url)["code_challenge_method"] == ["S256"]
        callback = patient.authorize(url)
        # Authlib's client does not check RFC 9207's iss itself: the relying party does
        assert query_of(callback)["iss"] == [metadata["issuer"]]
        with pytest.raises(MismatchingStateException):  # checked before any token request
            session.fetch_token(metadata["token_endpoint"], authorization_response=callback,
                                state="another", code_verifier=verifier, timeout=HTTP_TIMEOUT)
        token = session.fetch_token(metadata["token_endpoint"], authorization_response=callback,
                                    state=state, code_verifier=verifier, timeout=HTTP_TIMEOUT)
        assert token["token_type"] == "Bearer"
        jwks = http.get(metadata["jwks_uri"], timeout=HTTP_TIMEOUT).json()
        id_token = live.verify(token["id_token"], audience=client_id, jwks=jwks)
        assert id_token["nonce"] == nonce
        digest = hashlib.sha256(token["access_token"].encode()).digest()
        assert id_token["at_hash"] == b64(digest[:16])  # OIDC Core 3.1.3.6
        assert live.verify(token["access_token"], audience=live.issuer, jwks=jwks)["sub"] == \
            id_token["sub"]

        first_refresh = token["refresh_token"]
        renewed = session.refresh_token(metadata["token_endpoint"], timeout=HTTP_TIMEOUT)
        assert renewed["refresh_token"] != first_refresh
        assert session.token["access_token"] == renewed["access_token"]
        assert live.verify(renewed["access_token"], audience=live.issuer, jwks=jwks)["sub"] == \
            id_token["sub"]
        revoked = session.revoke_token(metadata["revocation_endpoint"],
                                       renewed["refresh_token"],
                                       token_type_hint="refresh_token",
                                       timeout=HTTP_TIMEOUT)
        assert revoked.status_code == 200
    assert live.refresh(client_id, renewed["refresh_token"])[0] == 400


# -- OpenID conformance suite: negative cases -----------------------------------------------------

def test_a_replayed_code_is_refused_and_revokes_what_it_issued(suite: Live,
                                                               suite_patient: Browser) -> None:
    client_id = suite.ids["conformance"]
    verifier, query, _url = python_code_flow(suite, suite_patient, client_id)
    status, tokens = suite.exchange(client_id, query["code"][0], verifier)
    assert status == 200, tokens
    status, again = suite.exchange(client_id, query["code"][0], verifier)
    assert (status, again["error"]) == (400, "invalid_grant")
    status, refreshed = suite.refresh(client_id, tokens["refresh_token"])
    assert (status, refreshed["error"]) == (400, "invalid_grant")  # RFC 9700 §4.5.3


@pytest.mark.parametrize("redirect_uri", [
    pytest.param(REDIRECT + "/", id="trailing slash"),
    pytest.param("http://127.0.0.1:9/CB", id="path case"),
    pytest.param("HTTP://127.0.0.1:9/cb", id="scheme case"),
    pytest.param(REDIRECT + "?extra=1", id="extra query"),
    pytest.param(REDIRECT + "#frag", id="fragment"),
    pytest.param("http://127.0.0.1:10/cb", id="other loopback port"),
    pytest.param("http://localhost:9/cb", id="localhost for 127.0.0.1"),
    pytest.param("https://127.0.0.1:9/cb", id="https for http"),
])
def test_the_redirect_uri_must_match_exactly_and_is_never_redirected_to(
        suite: Live, suite_patient: Browser, redirect_uri: str) -> None:
    _verifier, challenge = pkce()
    page = suite_patient.open(authorize_url(suite, suite.ids["conformance"], challenge,
                                            redirect_uri=redirect_uri))
    assert page.status == 400, (page.status, page.headers.get("Location"))
    assert "Location" not in page.headers
    assert "code=" not in page.text


@pytest.mark.parametrize("change", [
    pytest.param({"redirect_uri": REDIRECT + "/"}, id="other redirect_uri"),
    pytest.param({"redirect_uri": None}, id="no redirect_uri"),
    pytest.param({"code_verifier": "x" * 43}, id="wrong verifier"),
    pytest.param({"code_verifier": None}, id="no verifier"),
    pytest.param({"client_id": "authlib"}, id="another client"),
])
def test_the_token_request_must_match_the_authorization(suite: Live, suite_patient: Browser,
                                                        change: dict[str, str | None]) -> None:
    client_id = suite.ids["conformance"]
    verifier, query, _url = python_code_flow(suite, suite_patient, client_id)
    data = {"grant_type": "authorization_code", "code": query["code"][0],
            "redirect_uri": REDIRECT, "client_id": client_id, "code_verifier": verifier}
    for name, value in change.items():
        if value is None:
            data.pop(name)
        else:
            data[name] = suite.ids.get(value, value)
    status, body = suite.post("/oauth/token", data)
    assert status == 400, body
    assert body["error"] in ("invalid_grant", "invalid_request"), body
    assert "access_token" not in body


def test_a_missing_nonce_is_refused_with_an_error_redirect(suite: Live,
                                                           suite_patient: Browser) -> None:
    _verifier, challenge = pkce()
    callback = suite_patient.authorize(authorize_url(suite, suite.ids["conformance"], challenge,
                                                     state="st-nonce", nonce=None))
    query = query_of(callback)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st-nonce"]
    assert query["iss"] == [suite.issuer]
    assert "code" not in query


@pytest.mark.parametrize("asks", [
    pytest.param({"max_age": "0"}, id="max_age=0"),
    pytest.param({"prompt": "login"}, id="prompt=login"),
])
def test_max_age_zero_and_prompt_login_force_a_new_card_login(suite: Live,
                                                              asks: dict[str, str]) -> None:
    browser = Browser(suite, card="taro")
    client_id = suite.ids["conformance"]
    verifier, query, _url = python_code_flow(suite, browser, client_id)
    assert browser.card_logins == 1
    status, first = suite.exchange(client_id, query["code"][0], verifier)
    assert status == 200, first
    first_login = suite.verify(first["id_token"], audience=client_id)["auth_time"]

    asked_at = int(time.time())
    verifier, query, _url = python_code_flow(suite, browser, client_id, **asks)
    assert browser.card_logins == 2  # OIDC Core 3.1.2.1: max_age=0 acts as prompt=login
    status, second = suite.exchange(client_id, query["code"][0], verifier)
    assert status == 200, second
    auth_time = suite.verify(second["id_token"], audience=client_id)["auth_time"]
    assert auth_time >= first_login
    assert auth_time >= asked_at - 1  # the new login, not the old one (1 s: clock rounding)


@pytest.mark.parametrize(("granted", "asked", "error"), [
    pytest.param(None, {"scope": "openid offline_access consents"}, "invalid_scope",
                 id="wider scope"),
    pytest.param(RECORDS, {"resource": "issuer"}, "invalid_target",
                 id="resource outside the grant"),
    pytest.param(None, {"resource": "https://unknown.example/"}, "invalid_target",
                 id="unknown resource"),
])
def test_a_refused_refresh_leaves_the_refresh_token_usable(
        suite: Live, suite_patient: Browser, granted: str | None, asked: dict[str, str],
        error: str) -> None:
    client_id = suite.ids["conformance"]
    verifier, query, _url = python_code_flow(suite, suite_patient, client_id,
                                             scope="openid offline_access", resource=granted)
    extra = {"resource": granted} if granted else {}
    status, tokens = suite.exchange(client_id, query["code"][0], verifier, **extra)
    assert status == 200, tokens
    asked = {k: suite.issuer if v == "issuer" else v for k, v in asked.items()}
    status, refused = suite.post("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client_id, **asked})
    assert (status, refused["error"]) == (400, error)  # RFC 6749 §6, RFC 8707 §2
    status, plain = suite.refresh(client_id, tokens["refresh_token"])
    assert status == 200, plain


def test_an_unsupported_request_object_is_refused(suite: Live, suite_patient: Browser) -> None:
    _verifier, challenge = pkce()
    unsigned = ".".join(b64(json.dumps(part).encode()) for part in (
        {"alg": "none"}, {"redirect_uri": "https://evil.example/cb", "max_age": 0}))
    callback = suite_patient.authorize(authorize_url(suite, suite.ids["conformance"], challenge,
                                                     state="st-request", request=unsigned + "."))
    query = query_of(callback)
    assert "code" not in query, "a request object was ignored and a code issued"
    assert query["error"][0] in ("request_not_supported", "invalid_request_object")
    assert query["state"] == ["st-request"]


def test_refresh_token_reuse_revokes_the_family(suite: Live, suite_patient: Browser) -> None:
    client_id = suite.ids["conformance"]
    verifier, query, _url = python_code_flow(suite, suite_patient, client_id)
    status, tokens = suite.exchange(client_id, query["code"][0], verifier)
    assert status == 200, tokens
    status, rotated = suite.refresh(client_id, tokens["refresh_token"])
    assert status == 200, rotated
    status, reused = suite.refresh(client_id, tokens["refresh_token"])
    assert (status, reused["error"]) == (400, "invalid_grant")
    # A reuse inside the grace window is refused without harm (a concurrent refresh); one past
    # it revokes the whole family. Waiting past it makes the outcome independent of timing.
    time.sleep(REFRESH_GRACE.total_seconds() + 1)
    status, reused = suite.refresh(client_id, tokens["refresh_token"])
    assert (status, reused["error"]) == (400, "invalid_grant")
    status, after = suite.refresh(client_id, rotated["refresh_token"])
    assert (status, after["error"]) == (400, "invalid_grant")


def test_key_rotation_signs_with_the_new_published_key_and_old_tokens_still_verify(
        tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    port = free_port()
    with live_server(instance, port) as first:
        register(first, tmp_path)
        browser = Browser(first)
        client_id = first.ids["conformance"]
        verifier, query, _url = python_code_flow(first, browser, client_id)
        status, old = first.exchange(client_id, query["code"][0], verifier)
        assert status == 200, old
        old_kid = jwt.get_unverified_header(old["id_token"])["kid"]
        published = {k["kid"] for k in first.jwks()["keys"]}
        rotated = first.cli("keys", "rotate", "--json")
        assert rotated["retiring"] == old_kid
        assert rotated["active"] in published  # RFC 7517 rollover: published before it signs
        after = {k["kid"] for k in first.jwks()["keys"]}
        assert {old_kid, rotated["active"], rotated["next"]} <= after
    # Each worker caches the active key for up to 30 s (docs/decisions.md); a restart on the same
    # instance and port takes the place of that wait. The browser keeps its login session.
    with live_server(instance, port) as second:
        second.ids, browser.live = first.ids, second
        verifier, query, _url = python_code_flow(second, browser, client_id)
        assert browser.card_logins == 1
        status, new = second.exchange(client_id, query["code"][0], verifier)
        assert status == 200, new
        jwks = second.jwks()
        assert jwt.get_unverified_header(new["id_token"])["kid"] == rotated["active"]
        assert jwt.get_unverified_header(new["access_token"])["kid"] == rotated["active"]
        assert second.verify(new["id_token"], audience=client_id, jwks=jwks)
        # tokens signed before the rotation still verify with the published JWKS (their
        # expiry is not the point here: a slow machine may take minutes to get this far)
        assert second.verify(old["id_token"], audience=client_id, jwks=jwks, expiry=False)
        assert second.verify(old["access_token"], audience=second.issuer, jwks=jwks,
                             expiry=False)
        status, refreshed = second.refresh(client_id, old["refresh_token"])
        assert status == 200, refreshed
        assert jwt.get_unverified_header(refreshed["access_token"])["kid"] == rotated["active"]
