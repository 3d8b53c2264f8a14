"""The link service: one pseudonym per person and RP, stable across renewals, moves, phones."""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from sim_support import cert_of
from sim_support import sign_cert

from authz.errors import InvalidInput
from authz.sim import lifecycle
from authz.sim.card import AUTH_CERT
from authz.sim.card import SIGN_CERT
from authz.sim.card import VirtualCard


def der(card: VirtualCard, ef: str) -> bytes:
    return card.certificate_der(ef)


def link_id(sim, card: VirtualCard, ef: str = AUTH_CERT, rp: str = "rp-a") -> str:
    result = sim.link_resolve(der(card, ef), rp)
    return str(result["person_link_id"])


def test_shape_and_same_person_for_sign_and_auth(sim, issue):
    card = issue()
    auth = sim.link_resolve(der(card, AUTH_CERT), "rp-a")
    sign = sim.link_resolve(der(card, SIGN_CERT), "rp-a")
    assert re.fullmatch(r"[A-Z2-7]{26}", auth["person_link_id"])
    assert auth == {"person_link_id": sign["person_link_id"], "kind": "auth", "status": "good",
                    "superseded_by": None, "revocation_reason": None,
                    "latest_sign_cert_available": True}
    assert sign["kind"] == "sign"


def test_different_per_rp_and_per_person(sim, issue):
    one, two = issue(), issue()  # identical attributes, still two persons (no My Number)
    assert link_id(sim, one, rp="rp-a") != link_id(sim, one, rp="rp-b")
    assert link_id(sim, one) != link_id(sim, two)


def test_stable_across_renewal_with_old_to_new_link(sim, issue):
    card = issue()
    before = link_id(sim, card)
    old_auth, old_sign = der(card, AUTH_CERT), der(card, SIGN_CERT)
    lifecycle.renew(sim, card)
    assert link_id(sim, card) == before
    assert link_id(sim, card, SIGN_CERT) == before
    old = sim.link_resolve(old_auth, "rp-a")
    assert old["person_link_id"] == before
    assert old["status"] == "revoked" and old["revocation_reason"] == "superseded"
    assert old["superseded_by"] == cert_of(card, AUTH_CERT).serial_number
    assert sim.link_resolve(old_sign, "rp-a")["superseded_by"] == sign_cert(card).serial_number


def test_superseded_by_follows_the_chain_to_the_newest(sim, issue):
    card = issue()
    first = der(card, AUTH_CERT)
    lifecycle.renew(sim, card)
    lifecycle.renew(sim, card)
    assert sim.link_resolve(first, "rp")["superseded_by"] == cert_of(card, AUTH_CERT).serial_number


def test_stable_across_move_and_phone(sim, issue, issue_phone):
    card = issue()
    before = link_id(sim, card)
    phone = issue_phone(card)
    assert link_id(sim, phone) == before
    old_sign = der(card, SIGN_CERT)
    lifecycle.move(sim, card, address="大阪府大阪市北区1")
    assert link_id(sim, card, SIGN_CERT) == before
    assert link_id(sim, card) == before
    moved = sim.link_resolve(old_sign, "rp-a")
    assert moved["status"] == "revoked" and moved["revocation_reason"] == "affiliationChanged"
    assert moved["superseded_by"] == sign_cert(card).serial_number
    # The phone's sign cert carried the old address too: revoked, no successor on the phone.
    assert sim.link_resolve(der(phone, SIGN_CERT), "rp-a")["status"] == "revoked"


def test_latest_sign_cert_available(sim, issue):
    card = issue()
    lifecycle.revoke(sim, card, "sign", "keyCompromise")
    assert sim.link_resolve(der(card, AUTH_CERT), "rp")["latest_sign_cert_available"] is False
    child = issue(birthdate="2015-01-01")
    assert sim.link_resolve(der(child, AUTH_CERT), "rp")["latest_sign_cert_available"] is False


def test_unknown_and_forged_certificates(sim, issue):
    card = issue()
    real = cert_of(card, AUTH_CERT)
    # Same issuer DN and serial, signed by the right CA but not the bytes the sim issued.
    forged = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.issuer)
              .public_key(real.public_key()).serial_number(real.serial_number)
              .not_valid_before(real.not_valid_before_utc)
              .not_valid_after(real.not_valid_after_utc)
              .sign(sim.ca_key("auth", 1), hashes.SHA256()))
    result = sim.link_resolve(forged.public_bytes(serialization.Encoding.DER), "rp")
    assert result["status"] == "unknown" and result["person_link_id"] is None
    assert result["kind"] == "auth"


@pytest.mark.parametrize(("cert", "rp", "message"), [
    (b"not a certificate", "rp", "not a DER"),
    (b"\x30" * 5000, "rp", "at most"),
    (None, "", "rp_id"),
    (None, "x" * 256, "rp_id"),
])
def test_bad_input(sim, issue, cert, rp, message):
    data = cert if cert is not None else der(issue(), AUTH_CERT)
    with pytest.raises(InvalidInput, match=message):
        sim.link_resolve(data, rp)
