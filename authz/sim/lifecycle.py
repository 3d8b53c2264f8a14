"""Card lifecycle on the simulator: issue, phone issuance, move, renewal, revocation (b4).

Each operation drives the CA (:class:`SimAuthority`) and a card file together; the card makes
its own keys and hands out only public keys, as a chip does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.errors import Conflict
from authz.errors import InvalidInput
from authz.sim import profiles
from authz.sim.authority import SimAuthority
from authz.sim.authority import now_utc
from authz.sim.authority import reason_flag
from authz.sim.card import AUTH_CA
from authz.sim.card import AUTH_CERT
from authz.sim.card import AUTH_KEY
from authz.sim.card import AUTH_PIN
from authz.sim.card import SIGN_CA
from authz.sim.card import SIGN_CERT
from authz.sim.card import SIGN_KEY
from authz.sim.card import SIGN_PIN
from authz.sim.card import PinFormatError
from authz.sim.card import VirtualCard
from authz.sim.card import check_pin
from authz.sim.card import digest_info
from authz.sim.profiles import JST
from authz.sim.profiles import Kind
from authz.sim.profiles import Person
from authz.sim.profiles import Variant

KIND_ORDER: tuple[Kind, ...] = ("auth", "sign")
SLOTS: dict[Kind, tuple[str, str, str, str]] = {  # kind -> (cert EF, CA EF, key EF, PIN EF)
    "auth": (AUTH_CERT, AUTH_CA, AUTH_KEY, AUTH_PIN),
    "sign": (SIGN_CERT, SIGN_CA, SIGN_KEY, SIGN_PIN),
}


@dataclass(frozen=True)
class IssuedCert:
    """One certificate written into a card file."""

    kind: Kind
    serial: int
    generation: int
    not_after: datetime

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {"kind": self.kind, "serial": self.serial, "generation": self.generation,
                "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass(frozen=True)
class CardReport:
    """What an operation did to one card file."""

    path: Path
    token: str
    issued: tuple[IssuedCert, ...] = ()
    revoked: tuple[tuple[Kind, int, str], ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        by_kind = {c.kind: c.to_dict() for c in self.issued}
        return {"card": str(self.path), "token": self.token, "auth": by_kind.get("auth"),
                "sign": by_kind.get("sign"),
                "revoked": [{"kind": k, "serial": s, "reason": r} for k, s, r in self.revoked],
                "notes": list(self.notes)}

    def describe(self) -> str:
        """One line per fact, for humans."""
        lines = [f"{c.kind} certificate {c.serial:x} (CA G{c.generation}) valid until "
                 f"{c.not_after:%Y-%m-%d %H:%M:%SZ}" for c in self.issued]
        lines += [f"revoked {k} certificate {s:x} ({r})" for k, s, r in self.revoked]
        return "\n".join([f"card file {self.path} ({self.token})", *lines, *self.notes])


def pin_value(pin_ef: str, value: str) -> str:
    """A PIN in the right format, else InvalidInput (exit 2, nothing written)."""
    try:
        return check_pin(pin_ef, value)
    except PinFormatError as error:
        raise InvalidInput(str(error).split(" (SW")[0]) from None


def issue_card(sim: SimAuthority, *, name: str, birthdate: str, gender: str, address: str,
               pin: str, password: str | None, out: Path, generation: int | None = None,
               now: datetime | None = None) -> CardReport:
    """b4: a new person and card; auth cert always, sign cert only from age 15 with a password."""
    moment = now or now_utc()
    person = profiles.make_person(name, birthdate, gender, address, moment.astimezone(JST).date())
    pin_value(AUTH_PIN, pin)
    if password is not None:
        pin_value(SIGN_PIN, password)
    if generation is not None and generation not in profiles.GENERATIONS:
        raise InvalidInput("generation must be 1 or 2")
    notes: list[str] = []
    age = profiles.age_on(person.birthdate, moment.astimezone(JST).date())
    adult = age >= profiles.SIGN_MIN_AGE
    if not adult:
        notes.append("no signature certificate: the holder is under 15"
                     + (" (the password was not stored)" if password else ""))
    elif password is None:
        notes.append("no signature certificate: no --password given")
    if person.name_flags.count("1") or person.address_flags.count("1"):
        notes.append("characters outside JIS X 0208/0212 were replaced by substitutes")
    card = VirtualCard.blank(out, profiles.TOKEN_CARD)
    person_id = sim.register_person(person, moment)
    sim.register_card(person_id, card.card_id, card.token, moment)
    kinds: list[Kind] = ["auth", "sign"] if adult and password is not None else ["auth"]
    card.set_pin(AUTH_PIN, pin)
    if "sign" in kinds and password is not None:
        card.set_pin(SIGN_PIN, password)
    issued = tuple(_install(sim, card, kind, "card", generation, moment) for kind in kinds)
    card.save()
    return CardReport(out, card.token, issued, notes=tuple(notes))


def issue_phone(sim: SimAuthority, source: VirtualCard, *, card_password: str, pin: str,
                password: str, out: Path, generation: int | None = None,
                now: datetime | None = None) -> CardReport:
    """a8: smartphone credentials, issued only by using a valid card signature certificate."""
    moment = now or now_utc()
    pin_value(AUTH_PIN, pin)
    pin_value(SIGN_PIN, password)
    pin_value(SIGN_PIN, card_password)
    if source.is_phone:
        raise InvalidInput("phone credentials are issued from a card, not from a phone")
    if not source.has(SIGN_CERT):
        raise InvalidInput("the card has no signature certificate to issue phone credentials from")
    sign_cert = x509.load_der_x509_certificate(source.certificate_der(SIGN_CERT))
    record = sim.find(sign_cert)
    if record is None:
        raise InvalidInput("the card was not issued by this simulator")
    if record.status != "good" or record.not_after <= moment:
        raise InvalidInput("the card's signature certificate is revoked or expired")
    # Proof of possession: the card signs a fresh challenge with its sign key (password).
    challenge = b"JPKI-SIM phone issuance:" + secrets.token_bytes(32)
    source.select_ap()
    source.verify(SIGN_PIN, card_password)
    signature = source.sign(SIGN_KEY, digest_info(challenge))
    public = sign_cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise InvalidInput("the card's signature certificate has no RSA key")
    public.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    phone = VirtualCard.blank(out, profiles.TOKEN_PHONE)
    sim.register_card(record.person_id, phone.card_id, phone.token, moment)
    phone.set_pin(AUTH_PIN, pin)
    phone.set_pin(SIGN_PIN, password)
    issued = tuple(_install(sim, phone, kind, "phone", generation, moment)
                   for kind in KIND_ORDER)
    phone.save()
    return CardReport(out, phone.token, issued)


def move(sim: SimAuthority, card: VirtualCard, *, address: str | None = None,
         name: str | None = None, password: str | None = None,
         now: datetime | None = None) -> CardReport:
    """b4 move / name change: sign certs revoked (affiliationChanged), a new one issued."""
    moment = now or now_utc()
    if address is None and name is None:
        raise InvalidInput("give the new --address or --name")
    if password is not None:
        pin_value(SIGN_PIN, password)
    person_id = sim.card_person(card.card_id)
    before = sim.person(person_id)
    after = before
    if address is not None:
        shown, flags = profiles.substitute(profiles.normalise_address(address))
        after = replace(after, address=shown, address_flags=flags)
    if name is not None:
        shown, flags = profiles.substitute(profiles.normalise_name(name))
        after = replace(after, name=shown, name_flags=flags)
    sim.update_person(person_id, after)
    # a1/a5: any of the 4 attributes changing revokes every sign cert that carries them,
    # the phone's included; the auth certificates stay valid.
    revoked: list[tuple[Kind, int, str]] = []
    for cert in sim.person_certs(person_id):
        if cert.kind == "sign" and cert.status == "good":
            sim.revoke("sign", cert.serial, "affiliationChanged", moment)
            revoked.append(("sign", cert.serial, "affiliationChanged"))
    report = _reissue(sim, card, ("sign",), password, None, moment, after)
    return replace(report, revoked=tuple(revoked))


def renew(sim: SimAuthority, card: VirtualCard, *, password: str | None = None,
          generation: int | None = None, now: datetime | None = None) -> CardReport:
    """b4 renewal / reissue: both certificates revoked (superseded), a new pair, old->new."""
    moment = now or now_utc()
    if password is not None:
        pin_value(SIGN_PIN, password)
    if generation is not None and generation not in profiles.GENERATIONS:
        raise InvalidInput("generation must be 1 or 2")
    person_id = sim.card_person(card.card_id)
    revoked: list[tuple[Kind, int, str]] = []
    for kind in KIND_ORDER:
        serial = _serial(card, kind)
        if serial is not None and sim.revoke(kind, serial, "superseded", moment):
            revoked.append((kind, serial, "superseded"))
    report = _reissue(sim, card, KIND_ORDER, password, generation, moment,
                      sim.person(person_id))
    return replace(report, revoked=tuple(revoked))


def revoke(sim: SimAuthority, card: VirtualCard, which: str, reason: str,
           now: datetime | None = None) -> CardReport:
    """b4 loss report, suspension, death...: revoke the card's current certificate(s)."""
    flag = reason_flag(reason)
    if which not in ("auth", "sign", "both"):
        raise InvalidInput("--cert must be auth, sign or both")
    kinds = KIND_ORDER if which == "both" else tuple(k for k in KIND_ORDER if k == which)
    sim.card_person(card.card_id)
    notes: list[str] = []
    revoked: list[tuple[Kind, int, str]] = []
    for kind in kinds:
        serial = _serial(card, kind)
        if serial is None:
            if which == "sign":
                raise InvalidInput("this card has no signature certificate")
            notes.append("this card has no signature certificate")
        elif sim.revoke(kind, serial, flag.value, now):
            revoked.append((kind, serial, flag.value))
        else:
            notes.append(f"the {kind} certificate was already revoked")
    if not revoked:
        raise Conflict("nothing to revoke: " + "; ".join(notes))
    return CardReport(card.path, card.token, revoked=tuple(revoked), notes=tuple(notes))


def reset_pin(card: VirtualCard, which: str, new: str) -> CardReport:
    """b4 municipal-office reset: a new PIN, the counter full, the lock lifted."""
    pin_ef = {"auth": AUTH_PIN, "sign": SIGN_PIN}.get(which)
    if pin_ef is None:
        raise InvalidInput("--cert must be auth or sign")
    value = pin_value(pin_ef, new)
    if not card.has(pin_ef):
        raise InvalidInput("this card has no signature password (no signature certificate)")
    card.reset_pin(pin_ef, value)
    label = "PIN" if which == "auth" else "signature password"
    return CardReport(card.path, card.token, notes=(f"{which} {label} reset",))


# -- internals ------------------------------------------------------------------------------------

def _reissue(sim: SimAuthority, card: VirtualCard, kinds: tuple[Kind, ...],
             password: str | None, generation: int | None, moment: datetime,
             person: Person) -> CardReport:
    variant: Variant = "phone" if card.is_phone else "card"
    notes: list[str] = []
    issued: list[IssuedCert] = []
    with card.update():
        for kind in kinds:
            old = _serial(card, kind)
            if kind == "sign":
                age = profiles.age_on(person.birthdate, moment.astimezone(JST).date())
                if age < profiles.SIGN_MIN_AGE:
                    notes.append("no signature certificate: the holder is under 15")
                    continue
                if password is None and not card.has(SIGN_PIN):
                    notes.append("no signature certificate: give --password to set one")
                    continue
            if password is not None and kind == "sign":
                card.set_pin(SIGN_PIN, password)
            cert = _install(sim, card, kind, variant, generation, moment)
            issued.append(cert)
            if old is not None:
                sim.link(kind, old, cert.serial, moment)
    return CardReport(card.path, card.token, tuple(issued), notes=tuple(notes))


def _install(sim: SimAuthority, card: VirtualCard, kind: Kind, variant: Variant,
             generation: int | None, moment: datetime) -> IssuedCert:
    cert_ef, ca_ef, key_ef, _ = SLOTS[kind]
    public = card.generate_key(key_ef)
    cert = sim.issue(kind=kind, card_id=card.card_id, public_key=public, variant=variant,
                     generation=generation, now=moment)
    record = sim.find(cert)
    assert record is not None  # we just issued it
    card.write_file(cert_ef, cert.public_bytes(serialization.Encoding.DER))
    card.write_file(ca_ef, sim.authority(kind, record.generation).cert.public_bytes(
        serialization.Encoding.DER))
    return IssuedCert(kind, cert.serial_number, record.generation, cert.not_valid_after_utc)


def _serial(card: VirtualCard, kind: Kind) -> int | None:
    cert_ef = SLOTS[kind][0]
    if not card.has(cert_ef):
        return None
    return x509.load_der_x509_certificate(card.certificate_der(cert_ef)).serial_number
