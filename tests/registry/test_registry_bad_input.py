"""Bad input to the registry CLI: exit 2, one ``authz: error:`` line, and nothing written.

Every case runs through the real ``authz`` command group. "Nothing written" means the counts of
institutions and clients and the audit chain length (``audit_head.seq``) are unchanged, and the
chain still verifies.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy.orm import Session

from authz.audit.verify import verify_database
from authz.errors import Conflict
from authz.registry import rules
from authz.registry import service

NEW_CODE = "1300009999"
APP = "https://app.example/cb"


@dataclass
class World:
    """What exists before each bad command: a few institutions and one client."""

    hospital: str
    hospital_code: str
    pharmacy: str
    resource_server: str
    client_id: str
    jwk: Callable[..., dict[str, Any]]
    rsa_jwk: Callable[..., dict[str, Any]]
    file: Callable[[Any], str]
    tmp: Path

    def jwks(self, *keys: dict[str, Any]) -> str:
        return self.file({"keys": list(keys) or [self.jwk()]})


@pytest.fixture
def world(create_institution, create_client, make_jwk, make_rsa_jwk, write_file,
          tmp_path) -> World:
    hospital = create_institution()
    return World(
        hospital=hospital.id, hospital_code=hospital.code,
        pharmacy=create_institution(type="pharmacy").id,
        resource_server=create_institution(type="resource_server").id,
        client_id=create_client(institution=hospital.id, client_id="existing-app").client_id,
        jwk=make_jwk, rsa_jwk=make_rsa_jwk, file=write_file, tmp=tmp_path)


def institution_add(*, name: str = "新病院", kind: str = "hospital", code: str = NEW_CODE,
                    roles: tuple[str, ...] = (), emergency: bool = False) -> list[str]:
    args = ["institution", "add", "--name", name, "--type", kind, "--code", code, "--json"]
    for role in roles:
        args += ["--role", role]
    return args + (["--emergency"] if emergency else [])


def client_add(institution: str, *, name: str = "App", auth: str = "none",
               uris: tuple[str, ...] = (APP,), scope: str = "openid consents",
               jwks: str | None = None, client_id: str | None = None) -> list[str]:
    args = ["client", "add", "--institution", institution, "--name", name,
            "--auth-method", auth, "--scope", scope, "--json"]
    for uri in uris:
        args += ["--redirect-uri", uri]
    if jwks is not None:
        args += ["--jwks", jwks]
    if client_id is not None:
        args += ["--client-id", client_id]
    return args


def confidential(w: World, *, uris: tuple[str, ...] = (APP,), scope: str = "openid decisions",
                 jwks: str | None = None, institution: str | None = None) -> list[str]:
    return client_add(institution or w.hospital, auth="private_key_jwt", uris=uris, scope=scope,
                      jwks=jwks if jwks is not None else w.jwks())


def redirect(uri: str) -> Callable[[World], list[str]]:
    return lambda w: client_add(w.hospital, uris=(uri,))


def off_curve(w: World) -> dict[str, Any]:
    key = w.jwk()
    y = bytearray(base64.urlsafe_b64decode(key["y"] + "="))
    y[-1] ^= 1
    return dict(key, y=base64.urlsafe_b64encode(bytes(y)).rstrip(b"=").decode())


def padded_x(w: World) -> dict[str, Any]:
    """The same point with x spelled as 33 octets (a leading zero): not canonical."""
    key = w.jwk()
    x = base64.urlsafe_b64decode(key["x"] + "=")
    return dict(key, x=base64.urlsafe_b64encode(b"\0" + x).rstrip(b"=").decode())


def assert_one_error_line(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authz: error: ")
    assert fragment in lines[0]


BAD = [
    # -- institutions: type --
    pytest.param(lambda w: institution_add(kind="Hospital"), "unknown institution type 'Hospital'",
                 id="type-capitalised"),
    pytest.param(lambda w: institution_add(kind="hospital "), "unknown institution type",
                 id="type-trailing-space"),
    pytest.param(lambda w: institution_add(kind=""), "unknown institution type", id="type-empty"),
    pytest.param(lambda w: institution_add(kind="dental_office"),
                 "unknown institution type 'dental_office'", id="type-unknown"),
    pytest.param(lambda w: institution_add(kind="hospital\nclinic"), "unknown institution type",
                 id="type-with-newline"),
    # -- institutions: roles and emergency --
    pytest.param(lambda w: institution_add(roles=("surgeon",)), "unknown role 'surgeon'",
                 id="role-unknown"),
    pytest.param(lambda w: institution_add(roles=("Physician",)), "unknown role",
                 id="role-capitalised"),
    pytest.param(lambda w: institution_add(kind="pharmacy", roles=("physician",)),
                 "a pharmacy cannot assert the role 'physician'", id="role-not-for-pharmacy"),
    pytest.param(lambda w: institution_add(kind="research", roles=("physician",)),
                 "cannot assert the role", id="role-not-for-research"),
    pytest.param(lambda w: institution_add(kind="resource_server", roles=("nurse",)),
                 "cannot assert the role", id="role-not-for-resource-server"),
    pytest.param(lambda w: institution_add(kind="clinic", roles=("emergency_physician",)),
                 "cannot assert the role 'emergency_physician'", id="emergency-role-clinic"),
    pytest.param(lambda w: institution_add(roles=("physician", "emergency_physician")),
                 "the emergency_physician role needs --emergency", id="emergency-role-no-flag"),
    pytest.param(lambda w: institution_add(kind="clinic", emergency=True),
                 "only a hospital can be registered for emergency care", id="emergency-clinic"),
    pytest.param(lambda w: institution_add(kind="pharmacy", emergency=True),
                 "only a hospital", id="emergency-pharmacy"),
    # -- institutions: code --
    pytest.param(lambda w: institution_add(code=w.hospital_code), "is already registered",
                 id="code-duplicate"),
    pytest.param(lambda w: institution_add(code=""), "institution code", id="code-empty"),
    pytest.param(lambda w: institution_add(code="13 00001"), "institution code",
                 id="code-space"),
    pytest.param(lambda w: institution_add(code="-1300001"), "institution code",
                 id="code-leading-dash"),
    pytest.param(lambda w: institution_add(code="1" * 33), "institution code", id="code-long"),
    pytest.param(lambda w: institution_add(code="1300001\n"), "institution code",
                 id="code-trailing-newline"),
    pytest.param(lambda w: institution_add(code="病院コード"), "institution code",
                 id="code-kanji"),
    # -- institutions: name --
    pytest.param(lambda w: institution_add(name=""), "name must be 1 to 200", id="name-empty"),
    pytest.param(lambda w: institution_add(name=" \u3000 "), "name must be 1 to 200",
                 id="name-blank"),
    pytest.param(lambda w: institution_add(name="病" * 201), "name must be 1 to 200",
                 id="name-long"),
    pytest.param(lambda w: institution_add(name="A\nB"), "control characters", id="name-newline"),
    pytest.param(lambda w: institution_add(name="A\tB"), "control characters", id="name-tab"),
    pytest.param(lambda w: institution_add(name="A\u2028B"), "line breaks",
                 id="name-line-separator"),
    pytest.param(lambda w: institution_add(name="A\u202eB"), "control characters",
                 id="name-bidi-override"),
    pytest.param(lambda w: institution_add(name="A\u200bB"), "control characters",
                 id="name-zero-width-space"),
    # -- clients: identity --
    pytest.param(lambda w: client_add("ins_0000000000000000"),
                 "no institution 'ins_0000000000000000'", id="institution-unknown"),
    pytest.param(lambda w: client_add(""), "no institution ''", id="institution-empty"),
    pytest.param(lambda w: client_add(w.hospital, client_id=w.client_id),
                 "client id 'existing-app' is already registered", id="client-id-duplicate"),
    pytest.param(lambda w: client_add(w.hospital, client_id=""), "client id must be",
                 id="client-id-empty"),
    pytest.param(lambda w: client_add(w.hospital, client_id="ab"), "client id must be",
                 id="client-id-short"),
    pytest.param(lambda w: client_add(w.hospital, client_id="my app"), "client id must be",
                 id="client-id-space"),
    pytest.param(lambda w: client_add(w.hospital, client_id="app\n"), "client id must be",
                 id="client-id-trailing-newline"),
    pytest.param(lambda w: client_add(w.hospital, client_id="a" * 65), "client id must be",
                 id="client-id-long"),
    pytest.param(lambda w: client_add(w.hospital, name=""), "name must be", id="client-name"),
    # -- clients: redirect URIs --
    pytest.param(redirect("/cb"), "must be absolute", id="uri-relative-path"),
    pytest.param(redirect("cb"), "must be absolute", id="uri-relative"),
    pytest.param(redirect("//app.example/cb"), "must be absolute", id="uri-scheme-relative"),
    pytest.param(redirect("https://app.example/cb#x"), "must not have a fragment",
                 id="uri-fragment"),
    pytest.param(redirect("https://app.example/cb#"), "must not have a fragment",
                 id="uri-empty-fragment"),
    pytest.param(redirect("http://app.example/cb"), "http on a non-loopback host",
                 id="uri-http-remote"),
    pytest.param(redirect("http://10.0.0.8:8080/cb"), "http on a non-loopback host",
                 id="uri-http-private-ip"),
    pytest.param(redirect("http://127.0.0.1.nip.io/cb"), "http on a non-loopback host",
                 id="uri-http-loopback-lookalike"),
    pytest.param(redirect("http://localhost.evil.example/cb"), "http on a non-loopback host",
                 id="uri-http-localhost-subdomain"),
    pytest.param(redirect("javascript:alert(document.cookie)"), "must be https",
                 id="uri-javascript"),
    pytest.param(redirect("JavaScript:alert(1)"), "must be https", id="uri-javascript-case"),
    pytest.param(redirect("data:text/html,hi"), "must be https", id="uri-data"),
    pytest.param(redirect("file:///etc/passwd"), "must be https", id="uri-file"),
    pytest.param(redirect("https://*.app.example/cb"), "wildcard", id="uri-wildcard-host"),
    pytest.param(redirect("https://app.example/*"), "wildcard", id="uri-wildcard-path"),
    pytest.param(redirect("https://user@app.example/cb"), "credentials", id="uri-userinfo"),
    pytest.param(redirect("https://user:pw@app.example/cb"), "credentials",
                 id="uri-userinfo-password"),
    pytest.param(redirect("https://app.example@evil.example/cb"), "credentials",
                 id="uri-userinfo-lookalike"),
    pytest.param(redirect("https:///cb"), "has no host", id="uri-https-no-host"),
    pytest.param(redirect("https://app.example:99999/cb"), "malformed", id="uri-bad-port"),
    pytest.param(redirect("https://[::1/cb"), "malformed", id="uri-bad-ipv6"),
    pytest.param(redirect(""), "empty", id="uri-empty"),
    pytest.param(redirect(" https://app.example/cb"), "surrounding spaces", id="uri-space"),
    pytest.param(redirect("https://app.example/c b"), "must be ASCII", id="uri-inner-space"),
    pytest.param(redirect("https://app.example/c\nb"), "must be ASCII", id="uri-newline"),
    pytest.param(redirect("https://app.ex\tample/cb"), "must be ASCII", id="uri-tab"),
    pytest.param(redirect("https://app.example\\@evil.example/"), "must be ASCII",
                 id="uri-backslash"),
    pytest.param(redirect("https://\u0430pp.example/cb"), "must be ASCII",
                 id="uri-homograph-host"),
    pytest.param(redirect("https://app.example/コールバック"), "must be ASCII",
                 id="uri-non-ascii-path"),
    pytest.param(redirect("https://app.example/%zz"), "must be ASCII", id="uri-bad-percent"),
    pytest.param(redirect("https://app.example/" + "a" * rules.MAX_URI), "too long",
                 id="uri-too-long"),
    pytest.param(redirect("myapp:/cb"), "must be https", id="uri-private-scheme-no-dot"),
    pytest.param(redirect("jp.example.app://cb"), "must be https",
                 id="uri-private-scheme-authority"),
    pytest.param(lambda w: confidential(w, uris=("jp.example.app:/cb",)), "must be https",
                 id="uri-private-scheme-confidential"),
    pytest.param(lambda w: confidential(w, uris=("http://app.example/cb",)),
                 "http on a non-loopback host", id="uri-http-remote-confidential"),
    pytest.param(lambda w: client_add(w.hospital, uris=(APP, "https://app.example/x#y")),
                 "fragment", id="uri-second-bad"),
    pytest.param(lambda w: client_add(w.hospital, uris=tuple(
        f"https://app.example/{i}" for i in range(rules.MAX_REDIRECT_URIS + 1))),
        f"at most {rules.MAX_REDIRECT_URIS} redirect URIs", id="uri-too-many"),
    pytest.param(lambda w: client_add(w.hospital, uris=(), scope="consents"),
                 "a public client (auth method none) needs a redirect URI", id="uri-none-public"),
    pytest.param(lambda w: confidential(w, uris=()),
                 "a client with the openid scope needs a redirect URI", id="uri-none-openid"),
    # -- clients: JWKS --
    pytest.param(lambda w: client_add(w.hospital, auth="private_key_jwt", scope="decisions"),
                 "private_key_jwt needs --jwks", id="jwks-missing"),
    pytest.param(lambda w: client_add(w.hospital, jwks=w.jwks()),
                 "a public client (auth method none) has no JWKS", id="jwks-for-public"),
    pytest.param(lambda w: confidential(w, jwks=w.file("{not json")), "not valid JSON",
                 id="jwks-invalid-json"),
    pytest.param(lambda w: confidential(w, jwks=w.file(b"\xff\xfe\x00garbage")),
                 "not valid JSON", id="jwks-binary"),
    pytest.param(lambda w: confidential(w, jwks=w.file("")), "not valid JSON", id="jwks-empty"),
    pytest.param(lambda w: confidential(w, jwks=w.file([])), 'must be an object {"keys"',
                 id="jwks-array"),
    pytest.param(lambda w: confidential(w, jwks=w.file({"keys": []})), "at least one key",
                 id="jwks-no-keys"),
    pytest.param(lambda w: confidential(w, jwks=w.file(w.jwk())), 'must be an object {"keys"',
                 id="jwks-bare-jwk"),
    pytest.param(lambda w: confidential(w, jwks=w.file({"keys": ["k1"]})),
                 "each JWKS entry must be an object", id="jwks-entry-string"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.jwk(private=True))),
                 "JWKS holds a private key", id="jwks-private-key"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.jwk("a"), w.jwk("b", private=True))),
                 "JWKS holds a private key", id="jwks-second-key-private"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.rsa_jwk())), "must be EC P-256",
                 id="jwks-rsa"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks({"kty": "oct", "kid": "h", "k": "c2Vj"})),
                 "must be EC P-256", id="jwks-symmetric"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.jwk(crv="P-384"))), "must be EC P-256",
                 id="jwks-p384"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.jwk(crv="P-521"))), "must be EC P-256",
                 id="jwks-p521"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(dict(w.jwk(), alg="ES384"))),
                 "for ES256 signatures", id="jwks-alg-es384"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(dict(w.jwk(), use="enc"))),
                 "for ES256 signatures", id="jwks-use-enc"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(dict(w.jwk(), key_ops=["sign"]))),
                 "key_ops", id="jwks-key-ops-sign"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.jwk("same"), w.jwk("same"))),
                 "key ids must be unique", id="jwks-duplicate-kid"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(w.jwk(kid=""))), "needs a kid",
                 id="jwks-empty-kid"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks({k: v for k, v in w.jwk().items()
                                                        if k != "kid"})),
                 "needs a kid", id="jwks-no-kid"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(dict(w.jwk(), kid=["a"]))),
                 "needs a kid", id="jwks-kid-not-string"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(off_curve(w))), "invalid key",
                 id="jwks-point-not-on-curve"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(padded_x(w))), "32-byte base64url",
                 id="jwks-coordinate-not-canonical"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(dict(w.jwk(), x="!" * 43))),
                 "32-byte base64url", id="jwks-coordinate-not-base64url"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks({k: v for k, v in w.jwk().items()
                                                        if k != "y"})),
                 "32-byte base64url", id="jwks-no-y"),
    pytest.param(lambda w: confidential(w, jwks=w.jwks(
        *(w.jwk(f"k{i}") for i in range(rules.MAX_JWKS_KEYS + 1)))), "at most", id="jwks-many"),
    pytest.param(lambda w: confidential(w, jwks=w.file(
        {"keys": [w.jwk()], "pad": "x" * rules.MAX_JWKS_BYTES})), "larger than",
        id="jwks-too-large"),
    pytest.param(lambda w: confidential(w, jwks=str(w.tmp / "missing.json")), "cannot read",
                 id="jwks-file-missing"),
    # -- clients: scopes --
    pytest.param(lambda w: client_add(w.hospital, scope="openid email"), "unknown scope 'email'",
                 id="scope-unknown"),
    pytest.param(lambda w: client_add(w.hospital, scope="OPENID"), "unknown scope",
                 id="scope-capitalised"),
    pytest.param(lambda w: client_add(w.hospital, scope=""), "at least one scope",
                 id="scope-empty"),
    pytest.param(lambda w: client_add(w.hospital, scope=" \t "), "at least one scope",
                 id="scope-blank"),
    pytest.param(lambda w: confidential(w, scope="introspect"),
                 "only a resource_server institution may hold the introspect scope",
                 id="scope-introspect-hospital"),
    pytest.param(lambda w: confidential(w, scope="introspect", institution=w.pharmacy),
                 "only a resource_server", id="scope-introspect-pharmacy"),
    pytest.param(lambda w: client_add(w.hospital, scope="openid decisions"),
                 "scope 'decisions' needs private_key_jwt", id="scope-decisions-public"),
    pytest.param(lambda w: client_add(w.resource_server, scope="openid introspect"),
                 "scope 'introspect' needs private_key_jwt", id="scope-introspect-public"),
    pytest.param(lambda w: client_add(w.hospital, scope="openid audit"),
                 "scope 'audit' needs private_key_jwt", id="scope-audit-public"),
    # -- clients: destructive commands need --yes; unknown ids --
    pytest.param(lambda w: ["client", "disable", w.client_id], "pass --yes",
                 id="disable-without-yes"),
    pytest.param(lambda w: ["client", "delete", w.client_id], "pass --yes",
                 id="delete-without-yes"),
    pytest.param(lambda w: ["client", "delete", w.client_id, "--json"], "pass --yes",
                 id="delete-json-without-yes"),
    pytest.param(lambda w: ["client", "disable", "no-such-app", "--yes"], "no client",
                 id="disable-unknown"),
    pytest.param(lambda w: ["client", "enable", "no-such-app"], "no client",
                 id="enable-unknown"),
    pytest.param(lambda w: ["client", "delete", "no-such-app", "--yes"], "no client",
                 id="delete-unknown"),
    pytest.param(lambda w: ["client", "show", "no-such-app"], "no client", id="show-unknown"),
    pytest.param(lambda w: ["institution", "show", "ins_nope"], "no institution 'ins_nope'",
                 id="institution-show-unknown"),
]


@pytest.mark.parametrize(("build", "fragment"), BAD)
def test_bad_input_is_one_error_line_and_writes_nothing(cli, world, written, db: Session,
                                                         build, fragment):
    before = written()
    result = cli(*build(world))
    assert_one_error_line(result, fragment)
    assert written() == before
    assert verify_database(db).ok
    shown = json.loads(cli("client", "show", world.client_id, "--json").stdout)
    assert shown["enabled"] is True  # a refused disable did not happen either


USAGE = [
    pytest.param(lambda w: ["institution", "add", "--type", "hospital", "--code", NEW_CODE],
                 "Missing option '--name'", id="institution-no-name"),
    pytest.param(lambda w: ["institution", "add", "--name", "x", "--code", NEW_CODE],
                 "Missing option '--type'", id="institution-no-type"),
    pytest.param(lambda w: ["institution", "add", "--name", "x", "--type", "clinic"],
                 "Missing option '--code'", id="institution-no-code"),
    pytest.param(lambda w: institution_add() + ["--role"], "requires an argument",
                 id="institution-role-no-value"),
    pytest.param(lambda w: institution_add() + ["--colour", "red"], "No such option",
                 id="institution-unknown-option"),
    pytest.param(lambda w: client_add(w.hospital, auth="client_secret_basic"),
                 "Invalid value for '--auth-method'", id="auth-method-unknown"),
    pytest.param(lambda w: client_add(w.hospital, auth="None"),
                 "Invalid value for '--auth-method'", id="auth-method-capitalised"),
    pytest.param(lambda w: ["client", "add", "--institution", w.hospital, "--name", "x",
                            "--auth-method", "none"], "Missing option '--scope'",
                 id="client-no-scope"),
    pytest.param(lambda w: confidential(w, jwks=str(w.tmp)), "is a directory",
                 id="jwks-directory"),
    pytest.param(lambda w: ["client", "disable"], "Missing argument", id="disable-no-id"),
    pytest.param(lambda w: ["client", "frobnicate"], "No such command", id="unknown-command"),
]


@pytest.mark.parametrize(("build", "fragment"), USAGE)
def test_click_usage_errors_exit_2_and_write_nothing(cli, world, written, build, fragment):
    before = written()
    result = cli(*build(world))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert "Error: " in result.stderr
    assert fragment in result.stderr
    assert written() == before


def test_bad_input_after_good_input_leaves_the_good_input(cli, world, written, db):
    """A refused command between two good ones neither undoes nor duplicates anything."""
    before = written()
    assert cli(*institution_add()).exit_code == 0
    assert cli(*institution_add(name="別名")).exit_code == 2  # same code
    assert cli(*client_add(world.hospital, client_id="new-app")).exit_code == 0
    assert cli(*client_add(world.pharmacy, client_id="new-app")).exit_code == 2
    assert written() == before._replace(institutions=before.institutions + 1,
                                        clients=before.clients + 1,
                                        audit_seq=before.audit_seq + 2)
    assert verify_database(db).ok


@pytest.mark.parametrize("taken", ["_code_taken", "_client_id_taken"])
def test_unique_violation_from_a_race_is_a_conflict(world, db, written, monkeypatch, taken):
    """If a concurrent writer wins between the check and the insert (PostgreSQL read committed),
    the unique constraint still refuses it, and the caller sees the same Conflict."""
    monkeypatch.setattr(service, taken, lambda session, value: False)
    before = written()
    with pytest.raises(Conflict, match="already registered"):
        if taken == "_code_taken":
            service.add_institution(db, service.InstitutionSpec(
                "x", "clinic", world.hospital_code), actor="test")
        else:
            service.add_client(db, service.ClientSpec(
                world.pharmacy, "x", "none", [APP], "openid", client_id=world.client_id),
                actor="test")
    assert written() == before
    assert verify_database(db).ok
