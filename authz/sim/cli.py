"""``authz card ...`` and ``authz sim ...``: thin wrappers over the simulator (DESIGN section 8).

Bad input raises :class:`~authz.errors.InvalidInput`, which the ``authz`` group prints as one
``authz: error: ...`` line with exit code 2, before anything is written. A refusal by the card
or the service is one line with exit code 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import cast

import click
from cryptography import x509
from flask import current_app
from flask.cli import AppGroup

from authz.config import is_loopback_host
from authz.errors import InvalidInput
from authz.sim import lifecycle
from authz.sim.authority import FAULTS
from authz.sim.authority import POLICY_SLOTS
from authz.sim.authority import SimAuthority
from authz.sim.card import AUTH_PIN
from authz.sim.card import CERT_FILES
from authz.sim.card import SIGN_PIN
from authz.sim.card import CardError
from authz.sim.card import CardFileError
from authz.sim.card import VirtualCard
from authz.sim.cardapp import UV_METHODS
from authz.sim.cardapp import CardAppError
from authz.sim.cardapp import respond
from authz.sim.profiles import Kind

STATE_FOLDER = "jpki-sim"
KIND_OF_FILE = {"0001": "sign", "0002": "sign CA", "000A": "auth", "000B": "auth CA"}


class Failed(click.ClickException):
    """A refusal (wrong PIN, rejected response, unreachable service): one line, exit 1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"authz: error: {self.format_message()}", err=True)


def state_dir() -> Path:
    """The simulator's state folder: ``INSTANCE/jpki-sim`` (docs/jpki-contract.md)."""
    return Path(current_app.instance_path) / STATE_FOLDER


def _sim(base_url: str | None = None) -> SimAuthority:
    return SimAuthority.open(state_dir(), base_url=base_url or current_app.config["AUTHZ_ISSUER"])


def _need(value: str | None, option: str) -> str:
    if value is None or value == "":
        raise InvalidInput(f"{option} is required")
    return value


def _card(path: str | None) -> VirtualCard:
    target = Path(_need(path, "--card"))
    try:
        return VirtualCard.load(target)
    except (OSError, CardFileError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise InvalidInput(f"cannot read card file {target}: {reason}") from None


def _generation(value: str | None) -> int | None:
    if value is None:
        return None
    if value not in ("1", "2"):
        raise InvalidInput("--generation must be 1 or 2")
    return int(value)


def _emit(value: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    click.echo(json.dumps(value, ensure_ascii=False) if as_json else text(value))


def _report(report: lifecycle.CardReport, as_json: bool) -> None:
    _emit(report.to_dict(), as_json, lambda _: report.describe())


# -- authz card ---------------------------------------------------------------------------------

@click.group("card", cls=AppGroup)
def card_group() -> None:
    """Virtual My Number Cards (JPKI-SIM): issue, answer a card link, inspect."""


@card_group.command("issue")
@click.option("--name", help="氏 名 (family and given name, space-separated).")
@click.option("--birthdate", help="YYYY-MM-DD.")
@click.option("--gender", help="male, female or unknown.")
@click.option("--address", help="From the prefecture on, no postal code.")
@click.option("--pin", help="Authentication PIN: 4 digits.")
@click.option("--password", help="Signature password: 6-16 of A-Z, 0-9 (upper-cased).")
@click.option("--out", help="Card file to write.")
@click.option("--phone-from", "phone_from", help="Issue smartphone credentials from this card.")
@click.option("--card-password",
              help="The source card's signature password (--phone-from; default: --password).")
@click.option("--generation", help="CA generation to issue from: 1 or 2 (default: configured).")
@click.option("--force", is_flag=True, help="Replace an existing card file.")
@click.option("--json", "as_json", is_flag=True)
def card_issue(name: str | None, birthdate: str | None, gender: str | None, address: str | None,
               pin: str | None, password: str | None, out: str | None, phone_from: str | None,
               card_password: str | None, generation: str | None, force: bool,
               as_json: bool) -> None:
    """Issue a virtual card (auth certificate; sign certificate from age 15)."""
    target = _out_path(_need(out, "--out"), force)
    gen = _generation(generation)
    if phone_from is not None:
        given = [o for o, v in (("--name", name), ("--birthdate", birthdate), ("--gender", gender),
                                ("--address", address)) if v is not None]
        if given:
            raise InvalidInput(f"{given[0]} cannot be used with --phone-from: phone credentials"
                               " carry the card's attributes")
        source = _card(phone_from)
        try:
            report = lifecycle.issue_phone(
                _sim(), source, card_password=card_password or _need(password, "--password"),
                pin=_need(pin, "--pin"), password=_need(password, "--password"), out=target,
                generation=gen)
        except CardError as error:
            raise Failed(f"the source card refused: {error}") from None
    else:
        report = lifecycle.issue_card(
            _sim(), name=_need(name, "--name"), birthdate=_need(birthdate, "--birthdate"),
            gender=_need(gender, "--gender"), address=_need(address, "--address"),
            pin=_need(pin, "--pin"), password=password, out=target, generation=gen)
    _report(report, as_json)


def _out_path(out: str, force: bool) -> Path:
    target = Path(out)
    if not target.parent.is_dir():
        raise InvalidInput(f"folder {target.parent} does not exist")
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder")
    if target.exists() and target.stat().st_size > 0 and not force:
        raise InvalidInput(f"{target} exists; pass --force to replace it (its certificates stay"
                           " valid until revoked)")
    return target


@card_group.command("respond", with_appcontext=False)
@click.option("--card", "card_path", help="Card file.")
@click.option("--pin", help="Authentication PIN (4 digits).")
@click.option("--password", help="Signature password, for identity proofing.")
@click.option("--link", help="The card link the service shows.")
@click.option("--timeout", default="10", show_default=True, help="Seconds per HTTP request.")
@click.option("--uv", default="pin", show_default=True,
              help="User verification: pin, or face/fpt (phone, simulated biometric).")
def card_respond(card_path: str | None, pin: str | None, password: str | None,
                 link: str | None, timeout: str, uv: str) -> None:
    """Answer a service's card link: show service and code, sign, post (exit 0 on accepted)."""
    if uv not in UV_METHODS:
        raise InvalidInput("--uv must be pin, face or fpt")
    if uv == "pin" or pin is not None:
        lifecycle.pin_value(AUTH_PIN, _need(pin, "--pin"))
    if password is not None:
        lifecycle.pin_value(SIGN_PIN, password)
    try:
        seconds = float(timeout)
    except ValueError:
        raise InvalidInput("--timeout must be a number of seconds") from None
    if not 0 < seconds <= 300:
        raise InvalidInput("--timeout must be between 0 and 300 seconds")
    card = _card(card_path)
    if uv != "pin" and not card.is_phone:
        raise InvalidInput("--uv face/fpt needs a phone credential")
    try:
        outcome = respond(card, _need(link, "--link"), pin=pin, password=password, uv=uv,
                          timeout=seconds, show=click.echo)
    except CardAppError as error:
        if error.exit_code == 2:
            raise InvalidInput(str(error)) from None
        raise Failed(str(error)) from None
    click.echo(f"The service {outcome} the response.")


@card_group.command("show")
@click.option("--card", "card_path", help="Card file.")
@click.option("--json", "as_json", is_flag=True)
def card_show(card_path: str | None, as_json: bool) -> None:
    """Show a card's token, certificates (with status) and PIN tries left."""
    card = _card(card_path)
    sim = _sim()
    info = card.describe()
    certs = []
    for ef in CERT_FILES:
        if card.has(ef):
            cert = x509.load_der_x509_certificate(card.certificate_der(ef))
            record = sim.find(cert) if ef in ("0001", "000A") else None
            certs.append({"file": ef, "kind": KIND_OF_FILE[ef], "serial": cert.serial_number,
                          "subject": cert.subject.rfc4514_string(),
                          "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "status": record.status if record else None,
                          "revocation_reason": record.revoked_reason if record else None})
    info["certificates"] = certs
    _emit(info, as_json, _describe_card)


def _describe_card(info: dict[str, Any]) -> str:
    lines = [f"token {info['token']}"]
    for cert in info["certificates"]:
        status = f"\t{cert['status']}" if cert["status"] else ""
        reason = f" ({cert['revocation_reason']})" if cert["revocation_reason"] else ""
        lines.append(f"{cert['file']}\t{cert['kind']}\t{cert['serial']:x}\tuntil "
                     f"{cert['not_after']}{status}{reason}")
    for ef, pin in info["pins"].items():
        lines.append(f"PIN {ef}\t{pin['tries_left']}/{pin['max_tries']} tries left")
    return "\n".join(lines)


# -- authz sim ----------------------------------------------------------------------------------

@click.group("sim", cls=AppGroup)
def sim_group() -> None:
    """The simulated JPKI issuing side: lifecycle events, faults, status server."""


@sim_group.command("revoke")
@click.option("--card", "card_path", help="Card file.")
@click.option("--cert", "which", help="auth, sign or both.")
@click.option("--reason", help="A CRLReason name, e.g. keyCompromise, affiliationChanged.")
@click.option("--json", "as_json", is_flag=True)
def sim_revoke(card_path: str | None, which: str | None, reason: str | None,
               as_json: bool) -> None:
    """Revoke a card's certificate(s), e.g. after a loss report (keyCompromise)."""
    which = _need(which, "--cert")
    reason = _need(reason, "--reason")
    _report(lifecycle.revoke(_sim(), _card(card_path), which, reason), as_json)


@sim_group.command("reset-pin", with_appcontext=False)
@click.option("--card", "card_path", help="Card file.")
@click.option("--cert", "which", help="auth or sign.")
@click.option("--pin", help="The new PIN (auth) or password (sign).")
@click.option("--json", "as_json", is_flag=True)
def sim_reset_pin(card_path: str | None, which: str | None, pin: str | None,
                  as_json: bool) -> None:
    """Reset a PIN at the (simulated) municipal office: new value, tries restored, unlocked."""
    which = _need(which, "--cert")
    pin = _need(pin, "--pin")
    _report(lifecycle.reset_pin(_card(card_path), which, pin), as_json)


@sim_group.command("move")
@click.option("--card", "card_path", help="Card file.")
@click.option("--address", help="The new address.")
@click.option("--name", help="The new name (change of name).")
@click.option("--password", help="New signature password (needed if the card has none).")
@click.option("--json", "as_json", is_flag=True)
def sim_move(card_path: str | None, address: str | None, name: str | None,
             password: str | None, as_json: bool) -> None:
    """Move or change of name: sign certificate revoked (affiliationChanged), a new one issued."""
    card = _card(card_path)
    _report(lifecycle.move(_sim(), card, address=address, name=name, password=password), as_json)


@sim_group.command("renew")
@click.option("--card", "card_path", help="Card file.")
@click.option("--password", help="New signature password (needed if the card has none).")
@click.option("--generation", help="CA generation for the new certificates: 1 or 2.")
@click.option("--json", "as_json", is_flag=True)
def sim_renew(card_path: str | None, password: str | None, generation: str | None,
              as_json: bool) -> None:
    """Renewal: both certificates revoked (superseded), a new pair, old->new links."""
    gen = _generation(generation)
    card = _card(card_path)
    _report(lifecycle.renew(_sim(), card, password=password, generation=gen), as_json)


@sim_group.command("fault")
@click.option("--set", "to_set", help=f"Turn a fault on: {', '.join(FAULTS)}.")
@click.option("--unset", "to_unset", help="Turn one fault off.")
@click.option("--clear", is_flag=True, help="Turn every fault off.")
@click.option("--json", "as_json", is_flag=True)
def sim_fault(to_set: str | None, to_unset: str | None, clear: bool, as_json: bool) -> None:
    """Fault switches for negative tests of the status services; no option lists them."""
    if len([v for v in (to_set, to_unset, clear or None) if v is not None]) > 1:
        raise InvalidInput("use one of --set, --unset, --clear")
    sim = _sim()
    if to_set is not None:
        active = sim.set_fault(to_set)
    elif to_unset is not None:
        active = sim.clear_faults(to_unset)
    elif clear:
        active = sim.clear_faults()
    else:
        active = sim.faults()
    _emit({"faults": sorted(active)}, as_json,
          lambda d: "\n".join(d["faults"]) if d["faults"] else "no faults set")


@sim_group.command("config")
@click.option("--base-url", help="Prefix of the URIs written into new certificates.")
@click.option("--generation", help="CA generation new certificates come from: 1 or 2.")
@click.option("--policy", "policies", multiple=True,
              help=f"SLOT=OID, SLOT one of {', '.join(POLICY_SLOTS)} (repeatable).")
@click.option("--critical-policies/--non-critical-policies", "critical", default=None,
              help="Mark certificatePolicies critical in new certificates.")
@click.option("--json", "as_json", is_flag=True)
def sim_config(base_url: str | None, generation: str | None, policies: tuple[str, ...],
               critical: bool | None, as_json: bool) -> None:
    """Show or change the issuing settings."""
    slots = {}
    for item in policies:
        slot, sep, oid = item.partition("=")
        if not sep:
            raise InvalidInput("--policy must be SLOT=OID")
        slots[slot] = oid
    settings = _sim().configure(base_url=base_url, generation=_generation(generation),
                                policies=slots, policies_critical=critical)
    _emit(settings.to_dict(), as_json, lambda d: "\n".join(
        [f"base_url\t{d['base_url']}", f"generation\t{d['generation']}",
         f"policies_critical\t{d['policies_critical']}"]
        + [f"policy {slot}\t{oid}" for slot, oid in d["policies"].items()]))


@sim_group.command("anchors")
@click.option("--kind", default="both", show_default=True, help="sign, auth or both.")
def sim_anchors(kind: str) -> None:
    """Print the CA certificates (PEM, every generation): the verifier's trust anchors."""
    if kind not in ("sign", "auth", "both"):
        raise InvalidInput("--kind must be sign, auth or both")
    kinds = ("sign", "auth") if kind == "both" else (kind,)
    sim = _sim()
    for name in kinds:
        for pem in sim.anchor_pems(cast(Kind, name)):
            click.echo(pem.decode(), nl=False)


@sim_group.command("crl")
@click.option("--kind", help="sign or auth.")
@click.option("--generation", default="1", show_default=True)
@click.option("--out", help="File for the DER CRL.")
def sim_crl(kind: str | None, generation: str, out: str | None) -> None:
    """Write the full CRL of one CA generation (DER)."""
    kind = _need(kind, "--kind")
    if kind not in ("sign", "auth"):
        raise InvalidInput("--kind must be sign or auth")
    target = Path(_need(out, "--out"))
    gen = _generation(generation) or 1
    data = _sim().crl(cast(Kind, kind), gen)
    try:
        target.write_bytes(data)
    except OSError as error:
        raise InvalidInput(f"cannot write {target}: {error.strerror}") from None
    click.echo(f"{kind} CA G{gen} CRL written to {target} ({len(data)} bytes)")


@sim_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback only.")
@click.option("--port", default="8800", show_default=True)
@click.option("--fault-sleep", default="30", show_default=True,
              help="Seconds the timeout fault stalls a request.")
def sim_serve(host: str, port: str, fault_sleep: str) -> None:
    """Serve OCSP, CRLs, ARLs and the link service alone (b7: bound to loopback)."""
    from werkzeug.serving import run_simple

    from authz.sim.http import create_app

    if not is_loopback_host(host):
        raise InvalidInput("the simulator binds to a loopback address only (b7)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput("--port must be 1 to 65535")
    try:
        stall = float(fault_sleep)
    except ValueError:
        raise InvalidInput("--fault-sleep must be a number of seconds") from None
    display = f"[{host}]" if ":" in host else host
    folder = state_dir()
    sim = _sim(base_url=f"http://{display}:{port}")
    click.echo(f"JPKI-SIM serving on http://{display}:{port}/jpki-sim/ (state {folder};"
               f" certificate URIs use {sim.settings().base_url})", err=True)
    run_simple(host, int(port), create_app(folder, fault_sleep=stall), threaded=True)
