"""The virtual card: PIN rules and counters (a2, b4), signing, and what the file never holds."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing

import pytest
import sim_support
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from sim_support import PASSWORD
from sim_support import PIN
from sim_support import cert_of

from authz.errors import InvalidInput
from authz.sim import lifecycle
from authz.sim.card import AUTH_CA
from authz.sim.card import AUTH_CERT
from authz.sim.card import AUTH_KEY
from authz.sim.card import AUTH_PIN
from authz.sim.card import SIGN_CA
from authz.sim.card import SIGN_CERT
from authz.sim.card import SIGN_KEY
from authz.sim.card import SIGN_PIN
from authz.sim.card import CardError
from authz.sim.card import CardFileError
from authz.sim.card import PinBlocked
from authz.sim.card import PinFormatError
from authz.sim.card import PinIncorrect
from authz.sim.card import SecurityNotSatisfied
from authz.sim.card import VirtualCard
from authz.sim.card import digest_info

WRONG = {AUTH_PIN: "9999", SIGN_PIN: "WRONG999"}
RIGHT = {AUTH_PIN: PIN, SIGN_PIN: PASSWORD}
TRIES = {AUTH_PIN: 3, SIGN_PIN: 5}


def tries(card: VirtualCard, pin_ef: str) -> int:
    return VirtualCard.load(card.path).describe()["pins"][pin_ef]["tries_left"]


# -- counters (a2) --------------------------------------------------------------------------------

@pytest.mark.parametrize("pin_ef", [AUTH_PIN, SIGN_PIN])
def test_wrong_pin_until_locked(issue, pin_ef):
    card = issue()
    for left in range(TRIES[pin_ef] - 1, 0, -1):
        with pytest.raises(PinIncorrect) as caught:
            card.verify(pin_ef, WRONG[pin_ef])
        assert caught.value.tries_left == left
        assert caught.value.sw == 0x63C0 | left
    with pytest.raises(PinBlocked) as blocked:
        card.verify(pin_ef, WRONG[pin_ef])
    assert blocked.value.sw == 0x6983
    with pytest.raises(PinBlocked):
        card.verify(pin_ef, RIGHT[pin_ef])  # locked: even the right PIN is refused
    with pytest.raises(PinBlocked):
        card.pin_status(pin_ef)


@pytest.mark.parametrize("pin_ef", [AUTH_PIN, SIGN_PIN])
def test_streak_carries_across_reloads(issue, pin_ef):
    card = issue()
    for _ in range(TRIES[pin_ef] - 1):
        with pytest.raises(PinIncorrect):
            VirtualCard.load(card.path).verify(pin_ef, WRONG[pin_ef])  # a new session each time
    assert tries(card, pin_ef) == 1
    with pytest.raises(PinBlocked):
        VirtualCard.load(card.path).verify(pin_ef, WRONG[pin_ef])


@pytest.mark.parametrize("pin_ef", [AUTH_PIN, SIGN_PIN])
def test_success_resets_the_streak(issue, pin_ef):
    card = issue()
    for _ in range(TRIES[pin_ef] - 1):
        with pytest.raises(PinIncorrect):
            card.verify(pin_ef, WRONG[pin_ef])
    VirtualCard.load(card.path).verify(pin_ef, RIGHT[pin_ef])
    assert tries(card, pin_ef) == TRIES[pin_ef]
    assert card.pin_status(pin_ef) == TRIES[pin_ef]  # the old object sees the file's state


@pytest.mark.parametrize(("which", "pin_ef", "new"), [("auth", AUTH_PIN, "4321"),
                                                      ("sign", SIGN_PIN, "newpass99")])
def test_reset_pin_restores(issue, which, pin_ef, new):
    card = issue()
    for _ in range(TRIES[pin_ef]):
        with pytest.raises(CardError):
            card.verify(pin_ef, WRONG[pin_ef])
    lifecycle.reset_pin(VirtualCard.load(card.path), which, new)
    fresh = VirtualCard.load(card.path)
    assert fresh.pin_status(pin_ef) == TRIES[pin_ef]
    with pytest.raises(PinIncorrect):
        fresh.verify(pin_ef, RIGHT[pin_ef])  # the old value is gone
    fresh.verify(pin_ef, new)


def test_reset_pin_refuses_bad_input(issue):
    child = issue(birthdate="2015-01-01")
    with pytest.raises(InvalidInput, match="no signature password"):
        lifecycle.reset_pin(child, "sign", "ABCDEF12")
    with pytest.raises(InvalidInput, match="4 digits"):
        lifecycle.reset_pin(child, "auth", "12345")
    with pytest.raises(InvalidInput, match="auth or sign"):
        lifecycle.reset_pin(child, "both", "1234")


@pytest.mark.parametrize(("pin_ef", "value"), [
    (AUTH_PIN, "123"), (AUTH_PIN, "12345"), (AUTH_PIN, "abcd"), (AUTH_PIN, "１２３４"),
    (AUTH_PIN, "12 4"), (AUTH_PIN, "1234\n"), (AUTH_PIN, ""), (AUTH_PIN, "١٢٣٤"),
    (SIGN_PIN, "ABC12"), (SIGN_PIN, "A" * 17), (SIGN_PIN, "ABCD-123"), (SIGN_PIN, "ＡＢＣＤ１２３"),
    (SIGN_PIN, "ßßßßßß"), (SIGN_PIN, "ABCD123\n"), (SIGN_PIN, ""),
])
def test_malformed_pin_is_refused_without_using_a_try(issue, pin_ef, value):
    # The real card's middleware refuses malformed input before VERIFY reaches the chip.
    card = issue()
    with pytest.raises(PinFormatError) as caught:
        card.verify(pin_ef, value)
    assert caught.value.sw == 0x6A80
    assert tries(card, pin_ef) == TRIES[pin_ef]


def test_password_is_upper_cased(issue):
    card = issue()
    card.verify(SIGN_PIN, PASSWORD.lower())
    assert card.pin_status(SIGN_PIN) == 5


def test_concurrent_failures_from_processes_all_count(issue):
    card = issue()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(3) as pool:
            pending = [pool.apply_async(sim_support.fail_pin,
                                        (str(card.path), SIGN_PIN, "WRONG999", start))
                       for _ in range(3)]
            start.set()
            outcomes = sorted(p.get(timeout=120) for p in pending)
    assert outcomes == ["PinIncorrect"] * 3
    assert tries(card, SIGN_PIN) == 2  # no lost update


# -- reading and signing (b4) ---------------------------------------------------------------------

def test_read_rules_card(issue):
    card = issue()
    assert card.read(AUTH_CERT) and card.read(AUTH_CA) and card.read(SIGN_CA)
    with pytest.raises(SecurityNotSatisfied) as caught:
        card.read(SIGN_CERT)
    assert caught.value.sw == 0x6982
    card.verify(SIGN_PIN, PASSWORD)
    assert card.read(SIGN_CERT) == card.certificate_der(SIGN_CERT)
    card.select_ap()
    with pytest.raises(SecurityNotSatisfied):
        card.read(SIGN_CERT)


def test_read_rules_phone(issue, issue_phone):
    phone = issue_phone(issue())
    with pytest.raises(SecurityNotSatisfied):
        phone.read(AUTH_CERT)  # a1: on a phone even the auth cert needs the PIN
    phone.verify(AUTH_PIN, "5678")
    assert phone.read(AUTH_CERT)


def test_biometric_only_on_phone_auth_key(issue, issue_phone):
    card = issue()
    with pytest.raises(CardError):
        card.verify_biometric(AUTH_PIN)
    phone = issue_phone(card)
    with pytest.raises(CardError):
        phone.verify_biometric(SIGN_PIN)
    phone.verify_biometric(AUTH_PIN)
    assert phone.sign(AUTH_KEY, digest_info(b"x"))
    for _ in range(3):
        with pytest.raises(CardError):
            phone.verify(AUTH_PIN, "0000")
    with pytest.raises(PinBlocked):
        phone.verify_biometric(AUTH_PIN)  # a locked PIN locks the biometric path too


@pytest.mark.parametrize(("key_ef", "pin_ef", "cert_ef"), [(AUTH_KEY, AUTH_PIN, AUTH_CERT),
                                                           (SIGN_KEY, SIGN_PIN, SIGN_CERT)])
def test_signature_verifies_with_the_certificate(issue, key_ef, pin_ef, cert_ef):
    card = issue()
    tbs = b'{"aud":"http://127.0.0.1:8000","purpose":"login","v":1}'
    card.verify(pin_ef, RIGHT[pin_ef])
    signature = card.sign(key_ef, digest_info(tbs))
    key = cert_of(card, cert_ef).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, tbs, padding.PKCS1v15(), hashes.SHA256())


def test_signing_needs_the_matching_pin_in_this_session(issue):
    card = issue()
    with pytest.raises(SecurityNotSatisfied):
        card.sign(AUTH_KEY, digest_info(b"x"))
    card.verify(AUTH_PIN, PIN)
    with pytest.raises(SecurityNotSatisfied):
        card.sign(SIGN_KEY, digest_info(b"x"))  # the auth PIN does not unlock the sign key
    card.sign(AUTH_KEY, digest_info(b"x"))
    card.select_ap()
    with pytest.raises(SecurityNotSatisfied):
        card.sign(AUTH_KEY, digest_info(b"x"))
    card.verify(AUTH_PIN, PIN)
    VirtualCard.load(card.path).reset_pin(AUTH_PIN, "0000")  # reset elsewhere: session ends
    for _ in range(3):
        with pytest.raises(CardError):
            VirtualCard.load(card.path).verify(AUTH_PIN, "1111")
    with pytest.raises(PinBlocked):
        card.sign(AUTH_KEY, digest_info(b"x"))  # locked by another process since VERIFY


@pytest.mark.parametrize("data", [
    hashlib.sha256(b"x").digest(),                              # bare hash, no DigestInfo
    bytes.fromhex("3021300906052b0e03021a05000414") + bytes(20),  # SHA-1 DigestInfo
    digest_info(b"x")[:-1],
    digest_info(b"x") + b"\x00",
    b"\x00" * 51,
])
def test_sign_refuses_anything_but_a_sha256_digest_info(issue, data):
    card = issue()
    card.verify(AUTH_PIN, PIN)
    with pytest.raises(CardError) as caught:
        card.sign(AUTH_KEY, data)
    assert caught.value.sw == 0x6A80


def test_no_sign_key_under_15(issue):
    child = issue(birthdate="2015-01-01")
    assert not child.has(SIGN_CERT) and not child.has(SIGN_PIN)
    with pytest.raises(CardError) as caught:
        child.verify(SIGN_PIN, PASSWORD)
    assert caught.value.sw == 0x6A82


# -- the file (b4, b8) ----------------------------------------------------------------------------

def strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)] + [str(k) for k in value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_file_holds_no_private_key_and_no_pin(issue):
    card = issue()
    raw = card.path.read_bytes()
    assert b"PRIVATE KEY" not in raw and b"BEGIN" not in raw
    data = json.loads(raw)
    values = strings(data)
    assert PIN not in values and PASSWORD not in values and PASSWORD.lower() not in values
    moduli = []
    for ef in (AUTH_CERT, SIGN_CERT):
        key = cert_of(card, ef).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        moduli.append(key.public_numbers().n.to_bytes(256, "big"))
    certificates = {base64.b64decode(v) for v in data["files"].values()}
    for value in values:
        try:
            blob = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        try:
            serialization.load_der_private_key(blob, password=None)
        except ValueError:
            pass
        else:
            pytest.fail("the card file holds a plain private key")
        if blob not in certificates:
            # A private key (PKCS#8 or PKCS#1) would carry the public modulus in clear.
            assert not any(modulus in blob for modulus in moduli)
    assert card.path.stat().st_mode & 0o077 == 0


def test_no_public_accessor_returns_a_private_key(issue):
    card = issue()
    for name in dir(card):
        if name.startswith("_"):
            continue
        attribute = getattr(card, name)
        assert not isinstance(attribute, rsa.RSAPrivateKey), name


@pytest.mark.parametrize("content", [b"", b"{}", b"not json", b'{"format": "jpki-sim-card/1"}',
                                     b"[1, 2]"])
def test_load_refuses_other_files(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(CardFileError):
        VirtualCard.load(path)


def test_a_tampered_key_blob_does_not_sign(issue):
    card = issue()
    data = json.loads(card.path.read_bytes())
    blob = bytearray(base64.b64decode(data["seal"]["keys"][AUTH_KEY]))
    blob[-1] ^= 1
    data["seal"]["keys"][AUTH_KEY] = base64.b64encode(bytes(blob)).decode()
    card.path.write_text(json.dumps(data))
    tampered = VirtualCard.load(card.path)
    tampered.verify(AUTH_PIN, PIN)
    with pytest.raises(CardError, match="damaged"):
        tampered.sign(AUTH_KEY, digest_info(b"x"))
