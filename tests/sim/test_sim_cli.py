"""``authz card ...`` and ``authz sim ...`` through the real command group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from cryptography import x509
from sim_support import PASSWORD
from sim_support import PIN
from stub_service import SERVICE_NAME
from stub_service import SHORT_CODE

import authz.cli
from authz.sim.card import AUTH_PIN
from authz.sim.card import SIGN_CERT
from authz.sim.card import VirtualCard

ADULT_ARGS = ["--name", "山田 花子", "--birthdate", "1985-03-15", "--gender", "female",
              "--address", "東京都千代田区霞が関一丁目1番1号", "--pin", PIN,
              "--password", PASSWORD]


@pytest.fixture
def cli(runner):
    def invoke(*args: str) -> Result:
        return runner.invoke(authz.cli.authz_cli, list(args))

    return invoke


@pytest.fixture
def state(app) -> Path:
    return Path(app.instance_path) / "jpki-sim"


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def refused(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("authz: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def issue_json(cli, out: Path, *extra: str) -> dict:
    return json.loads(ok(cli("card", "issue", *ADULT_ARGS, "--out", str(out), "--json", *extra)))


def test_issue_writes_a_card_and_the_sim_state(cli, tmp_path, state):
    out = tmp_path / "card.json"
    data = issue_json(cli, out)
    assert data["token"] == "JPKIAPICCTOKEN"
    assert data["auth"]["generation"] == 1 and data["sign"]["kind"] == "sign"
    assert data["sign"]["not_after"].endswith("T14:59:59Z")
    card = VirtualCard.load(out)
    assert x509.load_der_x509_certificate(card.certificate_der(SIGN_CERT)).serial_number == (
        data["sign"]["serial"])
    for name in ("sim.db", "sim.secret", "ca/sign-g1.pem", "ca/auth-g2.key"):
        assert (state / name).exists()


def test_issue_text_output_and_generation(cli, tmp_path):
    text = ok(cli("card", "issue", *ADULT_ARGS, "--out", str(tmp_path / "c.json"),
                  "--generation", "2"))
    assert "auth certificate" in text and "(CA G2)" in text


def test_under_15_with_a_password_gets_no_sign_cert_and_is_told(cli, tmp_path):
    args = [a if a != "1985-03-15" else "2015-06-01" for a in ADULT_ARGS]
    text = ok(cli("card", "issue", *args, "--out", str(tmp_path / "kid.json")))
    assert "no signature certificate: the holder is under 15" in text
    assert not VirtualCard.load(tmp_path / "kid.json").has(SIGN_CERT)


def test_adult_without_password_gets_no_sign_cert(cli, tmp_path):
    args = ADULT_ARGS[:-2]
    data = json.loads(ok(cli("card", "issue", *args, "--out", str(tmp_path / "c.json"),
                             "--json")))
    assert data["sign"] is None and "no --password" in data["notes"][0]


def replace(args: list[str], option: str, value: str | None) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            if value is not None:
                out += [option, value]
            continue
        out.append(arg)
        del i
    return out


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--name", None, "--name is required"),
    ("--name", "", "--name is required"),
    ("--birthdate", "1985-3-15", "YYYY-MM-DD"),
    ("--birthdate", "1985-02-29", "not a calendar date"),
    ("--birthdate", "2999-01-01", "future"),
    ("--gender", "other", "male, female or unknown"),
    ("--address", " ", "address must not be empty"),
    ("--address", "〒100-0001 東京都", "postal code"),
    ("--pin", "123", "4 digits"),
    ("--pin", "12a4", "4 digits"),
    ("--pin", None, "--pin is required"),
    ("--password", "short", "6 to 16"),
    ("--password", "has space 1", "6 to 16"),
    ("--password", "A" * 17, "6 to 16"),
])
def test_issue_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, option, value, message):
    out = tmp_path / "card.json"
    line = refused(cli("card", "issue", *replace(ADULT_ARGS, option, value), "--out", str(out)))
    assert message in line
    assert not out.exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--generation", "3"], "--generation must be 1 or 2"),
    (["--out", "/nonexistent-folder/c.json"], "does not exist"),
])
def test_issue_bad_options(cli, tmp_path, extra, message):
    args = [*ADULT_ARGS, "--out", str(tmp_path / "c.json"), *extra]
    assert message in refused(cli("card", "issue", *args))


def test_issue_refuses_to_overwrite_a_card_without_force(cli, tmp_path):
    out = tmp_path / "card.json"
    first = issue_json(cli, out)
    assert "--force" in refused(cli("card", "issue", *ADULT_ARGS, "--out", str(out)))
    second = issue_json(cli, out, "--force")
    assert second["auth"]["serial"] != first["auth"]["serial"]
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    issue_json(cli, empty)  # an empty placeholder (mkstemp) is fine


def test_phone_from_card(cli, tmp_path):
    card = tmp_path / "card.json"
    issue_json(cli, card)
    phone = tmp_path / "phone.json"
    data = json.loads(ok(cli("card", "issue", "--phone-from", str(card), "--card-password",
                             PASSWORD, "--pin", "5678", "--password", "PHONE123", "--out",
                             str(phone), "--json")))
    assert data["token"] == "JPKIAPGPSETOKEN" and data["sign"] is not None
    line = refused(cli("card", "issue", "--phone-from", str(card), "--card-password", "WRONG999",
                       "--pin", "5678", "--password", "PHONE123", "--out",
                       str(tmp_path / "p2.json")), code=1)
    assert "4 tries left" in line
    same = json.loads(ok(cli("card", "issue", "--phone-from", str(card), "--pin", "5678",
                             "--password", PASSWORD, "--out", str(tmp_path / "p4.json"),
                             "--json")))  # the card's password authorises and is reused
    assert same["token"] == "JPKIAPGPSETOKEN"
    assert "--name cannot be used" in refused(cli(
        "card", "issue", "--phone-from", str(card), "--name", "x", "--card-password", PASSWORD,
        "--pin", "5678", "--password", "PHONE123", "--out", str(tmp_path / "p3.json")))


def test_lifecycle_commands(cli, tmp_path):
    card = tmp_path / "card.json"
    issued = issue_json(cli, card)
    moved = json.loads(ok(cli("sim", "move", "--card", str(card), "--address",
                              "大阪府大阪市北区1", "--json")))
    assert moved["revoked"] == [{"kind": "sign", "serial": issued["sign"]["serial"],
                                 "reason": "affiliationChanged"}]
    assert moved["sign"]["serial"] != issued["sign"]["serial"] and moved["auth"] is None
    renewed = json.loads(ok(cli("sim", "renew", "--card", str(card), "--json")))
    assert {r["reason"] for r in renewed["revoked"]} == {"superseded"}
    assert renewed["auth"] and renewed["sign"]
    revoked = json.loads(ok(cli("sim", "revoke", "--card", str(card), "--cert", "auth",
                                "--reason", "keyCompromise", "--json")))
    assert revoked["revoked"] == [{"kind": "auth", "serial": renewed["auth"]["serial"],
                                   "reason": "keyCompromise"}]
    assert "already revoked" in refused(cli("sim", "revoke", "--card", str(card), "--cert",
                                            "auth", "--reason", "keyCompromise"))
    shown = json.loads(ok(cli("card", "show", "--card", str(card), "--json")))
    statuses = {c["kind"]: (c["status"], c["revocation_reason"]) for c in shown["certificates"]}
    assert statuses["auth"] == ("revoked", "keyCompromise")
    assert statuses["sign"] == ("good", None)


@pytest.mark.parametrize("reason", ["keyCompromise", "affiliationChanged", "superseded",
                                    "cessationOfOperation", "certificateHold", "unspecified",
                                    "cACompromise", "KEYCOMPROMISE"])
def test_revoke_accepts_crl_reason_names(cli, tmp_path, reason):
    card = tmp_path / "card.json"
    issue_json(cli, card)
    ok(cli("sim", "revoke", "--card", str(card), "--cert", "both", "--reason", reason))


@pytest.mark.parametrize(("args", "message"), [
    (["--cert", "all", "--reason", "keyCompromise"], "auth, sign or both"),
    (["--cert", "both", "--reason", "removeFromCRL"], "unknown revocation reason"),
    (["--cert", "both"], "--reason is required"),
])
def test_revoke_bad_input(cli, tmp_path, args, message):
    card = tmp_path / "card.json"
    issue_json(cli, card)
    assert message in refused(cli("sim", "revoke", "--card", str(card), *args))


def test_commands_refuse_a_missing_or_foreign_card_file(cli, tmp_path):
    other = tmp_path / "other.json"
    other.write_text("{}")
    for args in (["sim", "revoke", "--card", str(tmp_path / "nope.json"), "--cert", "auth",
                  "--reason", "keyCompromise"],
                 ["sim", "move", "--card", str(other), "--address", "東京都港区1"],
                 ["card", "show", "--card", str(other)]):
        assert "cannot read card file" in refused(cli(*args))


def test_reset_pin_command(cli, tmp_path):
    out = tmp_path / "card.json"
    issue_json(cli, out)
    card = VirtualCard.load(out)
    for _ in range(3):
        with pytest.raises(Exception):  # noqa: B017, PT011 - lock it
            card.verify(AUTH_PIN, "0000")
    ok(cli("sim", "reset-pin", "--card", str(out), "--cert", "auth", "--pin", "4321"))
    VirtualCard.load(out).verify(AUTH_PIN, "4321")
    assert "4 digits" in refused(cli("sim", "reset-pin", "--card", str(out), "--cert", "auth",
                                     "--pin", "43210"))


def test_fault_command(cli):
    assert ok(cli("sim", "fault")).strip() == "no faults set"
    assert json.loads(ok(cli("sim", "fault", "--set", "stale", "--json"))) == {"faults": ["stale"]}
    ok(cli("sim", "fault", "--set", "crl_stale"))
    assert json.loads(ok(cli("sim", "fault", "--unset", "stale", "--json")))["faults"] == [
        "crl_stale"]
    assert json.loads(ok(cli("sim", "fault", "--clear", "--json")))["faults"] == []
    assert "unknown fault" in refused(cli("sim", "fault", "--set", "slow"))
    assert "one of" in refused(cli("sim", "fault", "--set", "stale", "--clear"))


def test_config_anchors_and_crl_commands(cli, tmp_path, state):
    settings = json.loads(ok(cli("sim", "config", "--generation", "2", "--policy",
                                 "card/sign=1.2.392.200149.8.5.1.0.20", "--json")))
    assert settings["generation"] == 2
    assert settings["policies"]["card/sign"] == "1.2.392.200149.8.5.1.0.20"
    assert "not an OID" in refused(cli("sim", "config", "--policy", "card/sign=nope"))
    assert "policy slot" in refused(cli("sim", "config", "--policy", "x=1.2.3"))
    assert "base URL" in refused(cli("sim", "config", "--base-url", "ftp://x"))
    pems = ok(cli("sim", "anchors", "--kind", "sign"))
    assert pems.count("BEGIN CERTIFICATE") == 2
    assert ok(cli("sim", "anchors")).count("BEGIN CERTIFICATE") == 4
    out = tmp_path / "sign.crl"
    ok(cli("sim", "crl", "--kind", "sign", "--generation", "2", "--out", str(out)))
    assert x509.load_der_x509_crl(out.read_bytes()).issuer == x509.load_pem_x509_certificate(
        (state / "ca" / "sign-g2.pem").read_bytes()).subject


def test_serve_refuses_a_public_address(cli):
    assert "loopback" in refused(cli("sim", "serve", "--host", "0.0.0.0"))  # noqa: S104


# -- the card app ---------------------------------------------------------------------------------

def test_respond_logs_in_after_proofing(cli, issue, service):
    card = issue()
    text = ok(cli("card", "respond", "--card", str(card.path), "--pin", PIN, "--password",
                  PASSWORD, "--link", service.link))
    lines = text.splitlines()
    assert lines[0] == f"Service: {SERVICE_NAME}" and SHORT_CODE in lines[1]
    assert lines[-1] == "The service accepted the response."


def test_respond_proofing_needs_a_password(cli, issue, service):
    card = issue()
    line = refused(cli("card", "respond", "--card", str(card.path), "--pin", PIN, "--link",
                       service.link), code=1)
    assert "--password" in line


@pytest.mark.parametrize(("args", "message"), [
    (["--pin", "12345"], "4 digits"),
    (["--pin", PIN, "--password", "bad pw"], "6 to 16"),
    (["--pin", PIN, "--timeout", "soon"], "--timeout"),
    (["--pin", PIN, "--uv", "iris"], "--uv"),
    (["--uv", "face"], "phone credential"),
    ([], "--pin is required"),
])
def test_respond_bad_input_exits_2_before_any_request(cli, issue, service, args, message):
    card = issue()
    line = refused(cli("card", "respond", "--card", str(card.path), "--link", service.link, *args))
    assert message in line
    assert service.events == []


def test_respond_rejected_and_wrong_pin_exit_1(cli, issue, service):
    card = issue()
    assert "wrong PIN: 2 tries left" in refused(cli(
        "card", "respond", "--card", str(card.path), "--pin", "0000", "--link", service.link),
        code=1)
    service.mode = "reject"
    assert "refused the response" in refused(cli(
        "card", "respond", "--card", str(card.path), "--pin", PIN, "--link", service.link),
        code=1)
