"""A virtual My Number Card (or smartphone secure element) kept in a JSON file (reference b4).

The file models a chip, not a secure store: the private keys are sealed with AES-GCM under a
key derived from a random secret that sits in the same file, only so that the file is not a
PEM dump anyone can paste into a tool. What the model enforces is behaviour: keys never leave
the object (there is no accessor for them), PINs are kept as scrypt hashes, and consecutive
failures persist across runs (a2) under a lock, with atomic rewrites.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric import utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authz.sim.profiles import TOKEN_CARD
from authz.sim.profiles import TOKEN_PHONE
from authz.sim.store import atomic_write
from authz.sim.store import file_lock

FORMAT = "jpki-sim-card/1"
NOTICE = ("JPKI-SIM virtual card for tests and demos. It models a chip, not a secure store;"
          " it holds no real personal data and no My Number.")

# a1: elementary files of the JPKI AP.
SIGN_CERT, SIGN_CA, AUTH_CERT, AUTH_CA = "0001", "0002", "000A", "000B"
AUTH_KEY, AUTH_PIN, SIGN_KEY, SIGN_PIN = "0017", "0018", "001A", "001B"
CERT_FILES = (SIGN_CERT, SIGN_CA, AUTH_CERT, AUTH_CA)
KEY_PIN = {AUTH_KEY: AUTH_PIN, SIGN_KEY: SIGN_PIN}
MAX_TRIES = {AUTH_PIN: 3, SIGN_PIN: 5}  # a2

# a3/b4: the card signs a caller-built DER DigestInfo; only SHA-256 is accepted here.
SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

# ISO 7816-4 status words the exceptions carry.
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_BLOCKED = 0x6983

AUTH_PIN_PATTERN = re.compile(r"[0-9]{4}")
SIGN_PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9]{6,16}")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class CardError(Exception):
    """A refusal by the card, with the ISO 7816 status word it would answer."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(f"{message} (SW {sw:04X})")
        self.sw = sw


class PinIncorrect(CardError):
    """63Cx: wrong PIN, x tries left."""

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"wrong PIN, {tries_left} tries left", 0x63C0 | tries_left)
        self.tries_left = tries_left


class PinBlocked(CardError):
    """6983: the PIN is locked until reset at the municipal office."""

    def __init__(self) -> None:
        super().__init__("PIN locked", SW_BLOCKED)


class SecurityNotSatisfied(CardError):
    """6982: the matching PIN was not verified in this session."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs the PIN verified first", SW_SECURITY_NOT_SATISFIED)


class PinFormatError(CardError):
    """A malformed PIN, refused before VERIFY: it costs no try (the client checks format)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, SW_WRONG_DATA)


class CardFileError(ValueError):
    """The file is not a readable JPKI-SIM card."""


def check_pin(pin_ef: str, pin: str) -> str:
    """a2 formats: auth PIN exactly 4 digits; sign password 6-16 of A-Z 0-9, upper-cased."""
    if pin_ef == AUTH_PIN:
        if not isinstance(pin, str) or not AUTH_PIN_PATTERN.fullmatch(pin):
            raise PinFormatError("the PIN must be exactly 4 digits")
        return pin
    if pin_ef == SIGN_PIN:
        if not isinstance(pin, str) or not SIGN_PASSWORD_PATTERN.fullmatch(pin):
            raise PinFormatError("the signature password must be 6 to 16 letters A-Z or digits")
        return pin.upper()  # a2: MYNA upper-cases before VERIFY
    raise CardError(f"no PIN {pin_ef}", SW_FILE_NOT_FOUND)


def digest_info(data: bytes) -> bytes:
    """b5: the SHA-256 DigestInfo a client sends to the card for ``data``."""
    return SHA256_PREFIX + hashlib.sha256(data).digest()


@dataclass
class _Pin:
    salt: bytes
    digest: bytes
    tries_left: int
    max_tries: int

    @classmethod
    def new(cls, pin_ef: str, value: str) -> _Pin:
        salt = secrets.token_bytes(16)
        return cls(salt, _scrypt(value, salt), MAX_TRIES[pin_ef], MAX_TRIES[pin_ef])

    def matches(self, value: str) -> bool:
        return hmac.compare_digest(self.digest, _scrypt(value, self.salt))


def _scrypt(value: str, salt: bytes) -> bytes:
    return hashlib.scrypt(value.encode(), salt=salt, dklen=32, **SCRYPT)


@dataclass
class _State:
    card_id: str
    token: str
    seal_secret: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    sealed: dict[str, bytes] = field(default_factory=dict)
    pins: dict[str, _Pin] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "notice": NOTICE, "card_id": self.card_id, "token": self.token,
            "files": {ef: _b64(der) for ef, der in sorted(self.files.items())},
            "seal": {"secret": _b64(self.seal_secret),
                     "keys": {ef: _b64(blob) for ef, blob in sorted(self.sealed.items())}},
            "pins": {ef: {"kdf": "scrypt", **SCRYPT, "salt": _b64(pin.salt),
                          "hash": _b64(pin.digest), "tries_left": pin.tries_left,
                          "max_tries": pin.max_tries} for ef, pin in sorted(self.pins.items())},
        }, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _State:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise CardFileError("not a JPKI-SIM card file")
            pins = {ef: _Pin(_unb64(p["salt"]), _unb64(p["hash"]), int(p["tries_left"]),
                             int(p["max_tries"])) for ef, p in data["pins"].items()}
            state = cls(
                card_id=str(data["card_id"]), token=str(data["token"]),
                seal_secret=_unb64(data["seal"]["secret"]),
                files={ef: _unb64(v) for ef, v in data["files"].items()},
                sealed={ef: _unb64(v) for ef, v in data["seal"]["keys"].items()}, pins=pins)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise CardFileError("not a JPKI-SIM card file") from None
        if state.token not in (TOKEN_CARD, TOKEN_PHONE) or not set(pins) <= set(MAX_TRIES):
            raise CardFileError("not a JPKI-SIM card file")
        return state


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class VirtualCard:
    """The JPKI AP of one card: read files, verify PINs, sign DigestInfos (b4)."""

    def __init__(self, path: Path, state: _State) -> None:
        self._path = path
        self._state = state
        self._verified: set[str] = set()
        self._saved = path.exists()

    # -- lifecycle of the object ----------------------------------------------------------------

    @classmethod
    def blank(cls, path: Path, token: str = TOKEN_CARD) -> VirtualCard:
        """A new, unsaved card; personalise it, then :meth:`save`."""
        if token not in (TOKEN_CARD, TOKEN_PHONE):
            raise ValueError("unknown token")
        card = cls(path, _State(secrets.token_hex(16), token, secrets.token_bytes(32)))
        card._saved = False
        return card

    @classmethod
    def load(cls, path: Path) -> VirtualCard:
        """Open a card file (raises CardFileError, or OSError when unreadable)."""
        return cls(path, _State.from_json(Path(path).read_bytes()))

    def save(self) -> None:
        """Write a newly personalised card (atomically, mode 0600)."""
        with file_lock(self._lock_path()):
            atomic_write(self._path, self._state.to_json())
        self._saved = True

    @contextmanager
    def update(self) -> Iterator[None]:
        """Re-read the file under its lock, apply changes, write it back atomically."""
        if not self._saved:
            yield
            return
        with file_lock(self._lock_path()):
            self._state = _State.from_json(self._path.read_bytes())
            yield
            atomic_write(self._path, self._state.to_json())

    def _reload(self) -> None:
        if self._saved:
            with file_lock(self._lock_path()):
                self._state = _State.from_json(self._path.read_bytes())

    def _lock_path(self) -> Path:
        return self._path.with_name(f".{self._path.name}.lock")

    # -- public, non-secret facts ---------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Where the card file is."""
        return self._path

    @property
    def card_id(self) -> str:
        """A random card id (the sim's, never shown to relying parties)."""
        return self._state.card_id

    @property
    def token(self) -> str:
        """a1: EF 0006, ``JPKIAPICCTOKEN`` on a card, ``JPKIAPGPSETOKEN`` on a phone."""
        return self._state.token

    @property
    def is_phone(self) -> bool:
        """True for a smartphone secure element credential."""
        return self._state.token == TOKEN_PHONE

    def has(self, ef: str) -> bool:
        """Whether a certificate file or PIN exists (without reading it)."""
        return ef in self._state.files or ef in self._state.pins

    def certificate_der(self, ef: str) -> bytes:
        """Issuer-side view of a certificate file, without PIN checks (the sim's own records)."""
        if ef not in self._state.files:
            raise CardError(f"no file {ef}", SW_FILE_NOT_FOUND)
        return self._state.files[ef]

    # -- the APDU-like API (b4) -----------------------------------------------------------------

    def select_ap(self) -> None:
        """SELECT the JPKI AP: clears this session's verified PINs."""
        self._verified.clear()

    def read(self, ef: str) -> bytes:
        """READ BINARY: the sign certificate needs the password; the phone auth cert the PIN."""
        if ef not in CERT_FILES:
            raise CardError(f"no readable file {ef}", SW_FILE_NOT_FOUND)
        if ef == SIGN_CERT and SIGN_PIN not in self._verified:
            raise SecurityNotSatisfied("reading the signature certificate")
        # a1: on a phone even the auth certificate needs the PIN.
        if ef == AUTH_CERT and self.is_phone and AUTH_PIN not in self._verified:
            raise SecurityNotSatisfied("reading the phone's authentication certificate")
        return self.certificate_der(ef)

    def pin_status(self, pin_ef: str) -> int:
        """Tries left (63Cx semantics); raises PinBlocked (6983) when locked."""
        self._reload()
        pin = self._pin(pin_ef)
        if pin.tries_left == 0:
            raise PinBlocked
        return pin.tries_left

    def verify(self, pin_ef: str, value: str) -> None:
        """VERIFY: a wrong PIN costs a try and the streak persists across runs (a2)."""
        candidate = check_pin(pin_ef, value)  # malformed: refused before VERIFY, no try used
        failure: CardError | None = None
        with self.update():
            pin = self._pin(pin_ef)
            if pin.tries_left == 0:
                failure = PinBlocked()
            elif pin.matches(candidate):
                pin.tries_left = pin.max_tries  # a2: a success resets the streak
            else:
                pin.tries_left -= 1
                failure = PinBlocked() if pin.tries_left == 0 else PinIncorrect(pin.tries_left)
        if failure is not None:
            self._verified.discard(pin_ef)
            raise failure
        self._verified.add(pin_ef)

    def verify_biometric(self, pin_ef: str) -> None:
        """a8: a phone may unlock the auth key with a (simulated, always matching) biometric."""
        if not self.is_phone or pin_ef != AUTH_PIN:
            raise CardError("biometric verification is only for the phone's auth key",
                            SW_SECURITY_NOT_SATISFIED)
        self.pin_status(pin_ef)  # a locked PIN locks the biometric path too
        self._verified.add(pin_ef)

    def sign(self, key_ef: str, digest_info_bytes: bytes) -> bytes:
        """COMPUTE DIGITAL SIGNATURE over a SHA-256 DigestInfo with the PIN-unlocked key."""
        if key_ef not in KEY_PIN or key_ef not in self._state.sealed:
            raise CardError(f"no key {key_ef}", SW_FILE_NOT_FOUND)
        if KEY_PIN[key_ef] not in self._verified:
            raise SecurityNotSatisfied("signing")
        self.pin_status(KEY_PIN[key_ef])  # locked by another process since VERIFY: refuse
        if (len(digest_info_bytes) != len(SHA256_PREFIX) + 32
                or not digest_info_bytes.startswith(SHA256_PREFIX)):
            raise CardError("expected a DER SHA-256 DigestInfo", SW_WRONG_DATA)
        key = self._unseal(key_ef)
        return key.sign(digest_info_bytes[len(SHA256_PREFIX):], padding.PKCS1v15(),
                        utils.Prehashed(hashes.SHA256()))

    # -- personalisation (the issuer's side; inside update() for a saved card) ------------------

    def generate_key(self, key_ef: str) -> rsa.RSAPublicKey:
        """Generate a new RSA-2048 key pair inside the card; only the public key comes out."""
        if key_ef not in KEY_PIN:
            raise CardError(f"no key slot {key_ef}", SW_FILE_NOT_FOUND)
        key = rsa.generate_private_key(65537, 2048)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        nonce = secrets.token_bytes(12)
        self._state.sealed[key_ef] = nonce + self._aead().encrypt(nonce, der, self._aad(key_ef))
        return key.public_key()

    def write_file(self, ef: str, der: bytes) -> None:
        """Write a certificate file."""
        if ef not in CERT_FILES:
            raise CardError(f"no file {ef}", SW_FILE_NOT_FOUND)
        self._state.files[ef] = der

    def set_pin(self, pin_ef: str, value: str) -> None:
        """Set a PIN with a full try counter (issuance, or the municipal-office reset)."""
        self._state.pins[pin_ef] = _Pin.new(pin_ef, check_pin(pin_ef, value))

    def reset_pin(self, pin_ef: str, value: str) -> None:
        """b4 admin reset: new PIN, counter back to the maximum, lock lifted."""
        candidate = check_pin(pin_ef, value)
        with self.update():
            self._pin(pin_ef)
            self._state.pins[pin_ef] = _Pin.new(pin_ef, candidate)
        self._verified.discard(pin_ef)

    # -- internals ------------------------------------------------------------------------------

    def _pin(self, pin_ef: str) -> _Pin:
        pin = self._state.pins.get(pin_ef)
        if pin is None:
            raise CardError(f"no PIN {pin_ef} on this card", SW_FILE_NOT_FOUND)
        return pin

    def _aead(self) -> AESGCM:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"jpki-sim card key seal v1").derive(self._state.seal_secret)
        return AESGCM(key)

    def _aad(self, key_ef: str) -> bytes:
        return f"{self._state.card_id}:{key_ef}".encode()

    def _unseal(self, key_ef: str) -> rsa.RSAPrivateKey:
        blob = self._state.sealed[key_ef]
        try:
            der = self._aead().decrypt(blob[:12], blob[12:], self._aad(key_ef))
        except InvalidTag:
            raise CardError("damaged key object", SW_WRONG_DATA) from None
        key = serialization.load_der_private_key(der, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CardError("damaged key object", SW_WRONG_DATA)
        return key

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for ``authz card show``: token, files present, tries left."""
        return {"card_id": self.card_id, "token": self.token,
                "files": sorted(self._state.files),
                "pins": {ef: {"tries_left": p.tries_left, "max_tries": p.max_tries}
                         for ef, p in sorted(self._state.pins.items())}}
