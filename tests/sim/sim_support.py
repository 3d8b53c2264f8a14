"""Shared values and helpers of the simulator tests (imported as ``sim_support``)."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from authz.sim.card import SIGN_CERT
from authz.sim.card import VirtualCard

PIN = "1234"
PASSWORD = "ABCD1234"
# A fixed issuance time for profile tests: 2025-04-01 09:00 JST.
NOW = datetime(2025, 4, 1, 0, 0, tzinfo=UTC)
ADULT = {"name": "山田 花子", "birthdate": "1985-03-15", "gender": "female",
         "address": "東京都千代田区霞が関一丁目1番1号"}


def cert_of(card: VirtualCard, ef: str) -> x509.Certificate:
    """A certificate file of a card, read the issuer's way (no PIN)."""
    return x509.load_der_x509_certificate(card.certificate_der(ef))


def sign_cert(card: VirtualCard) -> x509.Certificate:
    return cert_of(card, SIGN_CERT)


def fail_pin(path: str, pin_ef: str, wrong: str, start: Any) -> str:
    """One wrong VERIFY from another process, after all workers are ready (spawned)."""
    from authz.sim.card import CardError

    card = VirtualCard.load(Path(path))
    start.wait()
    try:
        card.verify(pin_ef, wrong)
    except CardError as error:
        return type(error).__name__
    return "verified"


def open_sim(path: str, start: Any) -> list[bytes]:
    """Open (and maybe create) the simulator from another process; return its anchors."""
    from authz.sim.authority import SimAuthority

    start.wait()
    sim = SimAuthority.open(Path(path))
    return sim.anchor_pems("sign") + sim.anchor_pems("auth")
