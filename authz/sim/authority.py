"""The JPKI-SIM authority: CAs, issuance, revocation and fault switches (reference b1, b2, b7).

State lives in ``INSTANCE/jpki-sim/`` (docs/jpki-contract.md): ``sim.db`` (SQLite, WAL),
``sim.secret`` (0600) and ``ca/{sign,auth}-g{1,2}.{pem,key}``, the keys PKCS#8-encrypted under
the secret. :meth:`SimAuthority.open` creates all of it under a file lock, so processes that
start together agree on one set of CAs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import cast
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.sim import profiles
from authz.sim.profiles import JST
from authz.sim.profiles import Kind
from authz.sim.profiles import Person
from authz.sim.profiles import Place
from authz.sim.profiles import Variant
from authz.sim.store import Store
from authz.sim.store import atomic_write
from authz.sim.store import file_lock

SECRET_FILE = "sim.secret"  # noqa: S105 - a file name
DB_FILE = "sim.db"
CA_DIR = "ca"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
FAULTS = ("timeout", "stale", "wrong_signer", "try_later", "crl_stale", "crl_bad_signature")
# a5: every RFC 5280 CRLReason name except removeFromCRL, which only delta CRLs use.
REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl}
POLICY_SLOTS = ("card/sign", "card/auth", "phone/sign", "phone/auth")


def now_utc() -> datetime:
    """Now, to the second (certificate and CRL times have no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def reason_flag(name: str) -> x509.ReasonFlags:
    """A CRLReason by its RFC 5280 name (``keyCompromise``), case-insensitively."""
    for value, flag in REASONS.items():
        if value.lower() == name.strip().lower():
            return flag
    raise InvalidInput(f"unknown revocation reason {name!r}; one of: {', '.join(REASONS)}")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class Settings:
    """Issuing choices kept in the sim store; changed with ``authz sim config``."""

    base_url: str
    generation: int
    policies: Mapping[str, str]
    policies_critical: bool

    def policy(self, variant: Variant, kind: Kind) -> str:
        """The certificatePolicies OID for a credential (b3: configurable)."""
        return self.policies[f"{variant}/{kind}"]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {"base_url": self.base_url, "generation": self.generation,
                "policies": dict(self.policies), "policies_critical": self.policies_critical}


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate as the sim database knows it."""

    kind: Kind
    serial: int
    generation: int
    person_id: str
    card_id: str
    variant: Variant
    place: Place
    issued_at: datetime
    not_after: datetime
    fingerprint: bytes
    revoked_reason: str | None
    revoked_at: datetime | None

    @property
    def status(self) -> str:
        """``good`` or ``revoked`` (expiry is the verifier's check, b4: no CRL entry)."""
        return "revoked" if self.revoked_reason else "good"


@dataclass(frozen=True)
class Authority:
    """One CA generation's certificate (its key stays with :class:`SimAuthority`)."""

    kind: Kind
    generation: int
    cert: x509.Certificate

    def name_hash(self, algorithm: hashes.HashAlgorithm) -> bytes:
        """RFC 6960 §4.1.1 issuerNameHash."""
        digest = hashes.Hash(algorithm)
        digest.update(self.cert.subject.public_bytes())
        return digest.finalize()

    def key_hash(self, algorithm: hashes.HashAlgorithm) -> bytes:
        """RFC 6960 §4.1.1 issuerKeyHash: over the subjectPublicKey BIT STRING value."""
        digest = hashes.Hash(algorithm)
        digest.update(self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1))
        return digest.finalize()


_CERT_COLUMNS = ("c.ca, c.serial, c.generation, c.person_id, c.card_id, c.variant, c.prefecture,"
                 " c.city, c.issued_at, c.not_after, c.fingerprint, r.reason, r.revoked_at")
_CERT_FROM = "certs c LEFT JOIN revocations r ON r.ca = c.ca AND r.serial = c.serial"


def _record(row: tuple[Any, ...]) -> CertRecord:
    prefecture_code = next((code for name, code in profiles.PREFECTURES.values()
                            if name == row[6]), 0)
    return CertRecord(
        kind=cast(Kind, row[0]), serial=row[1], generation=row[2], person_id=row[3],
        card_id=row[4], variant=cast(Variant, row[5]), place=Place(row[6], prefecture_code, row[7]),
        issued_at=_moment(row[8]), not_after=_moment(row[9]), fingerprint=row[10],
        revoked_reason=row[11], revoked_at=None if row[12] is None else _moment(row[12]))


def normalise_base_url(value: str) -> str:
    """An http(s) origin, optionally with a path, without a trailing slash, query or fragment."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInput(f"base URL must be http(s)://host[:port][/path], got {value!r}")
    return value.strip().rstrip("/")


class SimAuthority:
    """The sign and auth CAs (two generations each) and everything they have issued."""

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self.store = Store(root / DB_FILE)
        self._secret = secret
        self._authorities = {
            (kind, gen): Authority(kind, gen, x509.load_pem_x509_certificate(
                (root / CA_DIR / f"{kind}-g{gen}.pem").read_bytes()))
            for kind in profiles.KINDS for gen in profiles.GENERATIONS}
        self._keys: dict[tuple[Kind, int], rsa.RSAPrivateKey] = {}
        self._rogue: rsa.RSAPrivateKey | None = None

    # -- opening and creating -------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, base_url: str | None = None) -> SimAuthority:
        """Open the state folder, creating secret, store and CAs on first use (race-safe)."""
        # base_url only seeds the URI prefix of a new state folder; configure() changes it.
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        initial = normalise_base_url(base_url or DEFAULT_BASE_URL)
        with file_lock(root / ".lock"):
            secret = _ensure_secret(root / SECRET_FILE)
            store = Store(root / DB_FILE)
            store.create_schema()
            with store.write() as conn:
                conn.execute("INSERT OR IGNORE INTO settings (name, value) VALUES ('base_url', ?)",
                             (json.dumps(initial),))
            base = json.loads(_setting_row(store, "base_url"))
            (root / CA_DIR).mkdir(exist_ok=True, mode=0o700)
            for kind in profiles.KINDS:
                for generation in profiles.GENERATIONS:
                    _ensure_ca(root / CA_DIR, kind, generation, secret, base)
        return cls(root, secret)

    # -- settings -------------------------------------------------------------------------------

    def settings(self) -> Settings:
        """The current issuing settings (defaults filled in)."""
        with self.store.read() as conn:
            stored = {name: json.loads(value)
                      for name, value in conn.execute("SELECT name, value FROM settings")}
        defaults = {f"{variant}/{kind}": oid for kind, oid in profiles.DEFAULT_POLICIES.items()
                    for variant in ("card", "phone")}
        return Settings(base_url=stored.get("base_url", DEFAULT_BASE_URL),
                        generation=int(stored.get("generation", 1)),
                        policies={**defaults, **stored.get("policies", {})},
                        policies_critical=bool(stored.get("policies_critical", False)))

    def configure(self, *, base_url: str | None = None, generation: int | None = None,
                  policies: Mapping[str, str] | None = None,
                  policies_critical: bool | None = None) -> Settings:
        """Change issuing settings; certificates already issued keep what they carry."""
        changes: dict[str, Any] = {}
        if base_url is not None:
            changes["base_url"] = normalise_base_url(base_url)
        if generation is not None:
            changes["generation"] = self._generation(generation)
        if policies:
            merged = dict(self.settings().policies)
            for slot, oid in policies.items():
                if slot not in POLICY_SLOTS:
                    raise InvalidInput(f"policy slot must be one of {', '.join(POLICY_SLOTS)}")
                try:
                    x509.ObjectIdentifier(oid)
                except ValueError:
                    raise InvalidInput(f"not an OID: {oid!r}") from None
                merged[slot] = oid
            changes["policies"] = merged
        if policies_critical is not None:
            changes["policies_critical"] = policies_critical
        with self.store.write() as conn:
            conn.executemany("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)",
                             [(name, json.dumps(value)) for name, value in changes.items()])
        return self.settings()

    # -- CAs ------------------------------------------------------------------------------------

    def authority(self, kind: Kind, generation: int) -> Authority:
        """One CA generation (NotFound for anything else)."""
        found = self._authorities.get((kind, generation))
        if found is None:
            raise NotFound(f"no {kind} CA generation {generation}")
        return found

    def authorities(self) -> list[Authority]:
        """Every CA generation, sign first."""
        return [self._authorities[kind, gen] for kind in profiles.KINDS
                for gen in profiles.GENERATIONS]

    def anchor_pems(self, kind: Kind) -> list[bytes]:
        """PEM of every generation of one CA: the trust anchors a verifier is configured with."""
        if kind not in profiles.KINDS:
            raise InvalidInput("kind must be sign or auth")
        return [self._authorities[kind, gen].cert.public_bytes(serialization.Encoding.PEM)
                for gen in profiles.GENERATIONS]

    def ca_key(self, kind: Kind, generation: int) -> rsa.RSAPrivateKey:
        """The CA's private key, decrypted on first use (for the status and issuing code)."""
        cached = self._keys.get((kind, generation))
        if cached is None:
            pem = (self.root / CA_DIR / f"{kind}-g{generation}.key").read_bytes()
            key = serialization.load_pem_private_key(pem, password=self._secret)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise TypeError("a JPKI-SIM CA key must be RSA")
            cached = self._keys[kind, generation] = key
        return cached

    def rogue_key(self) -> rsa.RSAPrivateKey:
        """A key that belongs to no CA: the ``wrong_signer`` and ``crl_bad_signature`` faults."""
        if self._rogue is None:
            self._rogue = rsa.generate_private_key(65537, 2048)
        return self._rogue

    def rogue_certificate(self, kind: Kind) -> x509.Certificate:
        """A self-signed certificate that copies a CA's DN over the rogue key."""
        key = self.rogue_key()
        moment = now_utc()
        return (x509.CertificateBuilder()
                .subject_name(profiles.ca_name(kind)).issuer_name(profiles.ca_name(kind))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(moment - timedelta(days=1))
                .not_valid_after(moment + timedelta(days=1))
                .sign(key, hashes.SHA256()))

    def link_key(self) -> bytes:
        """The link service's HMAC key, derived from the sim secret (b7)."""
        return hmac.new(self._secret, b"jpki-sim/link/v1", hashlib.sha256).digest()

    def _generation(self, generation: int) -> int:
        if generation not in profiles.GENERATIONS:
            raise InvalidInput(f"generation must be one of {profiles.GENERATIONS}")
        return generation

    # -- persons and cards (models the resident registry behind J-LIS) -------------------------

    def register_person(self, person: Person, now: datetime | None = None) -> str:
        """A new person; the sim never models the My Number, so every issue is a new person."""
        person_id = secrets.token_hex(16)
        with self.store.write() as conn:
            conn.execute("INSERT INTO persons (id, attributes, created_at) VALUES (?, ?, ?)",
                         (person_id, json.dumps(person.to_dict(), ensure_ascii=False),
                          _epoch(now or now_utc())))
        return person_id

    def update_person(self, person_id: str, person: Person) -> None:
        """Record new attributes after a move or a change of name."""
        with self.store.write() as conn:
            updated = conn.execute("UPDATE persons SET attributes = ? WHERE id = ?",
                                   (json.dumps(person.to_dict(), ensure_ascii=False), person_id))
            if updated.rowcount != 1:
                raise NotFound("unknown person")

    def person(self, person_id: str) -> Person:
        """The current attributes of a person."""
        with self.store.read() as conn:
            row = conn.execute("SELECT attributes FROM persons WHERE id = ?",
                               (person_id,)).fetchone()
        if row is None:
            raise NotFound("unknown person")
        return Person.from_dict(json.loads(row[0]))

    def register_card(self, person_id: str, card_id: str, token: str,
                      now: datetime | None = None) -> None:
        """Record a new card (or phone credential) of a person under the card's own id."""
        with self.store.write() as conn:
            conn.execute("INSERT INTO cards (id, person_id, token, created_at) VALUES (?, ?, ?, ?)",
                         (card_id, person_id, token, _epoch(now or now_utc())))

    def card_person(self, card_id: str) -> str:
        """The person a card belongs to."""
        with self.store.read() as conn:
            row = conn.execute("SELECT person_id FROM cards WHERE id = ?", (card_id,)).fetchone()
        if row is None:
            raise NotFound("this card was not issued by this simulator")
        return str(row[0])

    # -- issuance and revocation ----------------------------------------------------------------

    def issue(self, *, kind: Kind, card_id: str, public_key: rsa.RSAPublicKey,
              variant: Variant = "card", generation: int | None = None,
              now: datetime | None = None) -> x509.Certificate:
        """b3: issue a certificate for the card's holder over a key the card generated."""
        # ``now`` backdates issuance for test fixtures (an expired certificate, an era edge).
        moment = now or now_utc()
        settings = self.settings()
        gen = self._generation(generation or settings.generation)
        ca = self._authorities[kind, gen]
        ca_key = self.ca_key(kind, gen)
        with self.store.write() as conn:
            row = conn.execute("SELECT p.id, p.attributes FROM cards c JOIN persons p"
                               " ON p.id = c.person_id WHERE c.id = ?", (card_id,)).fetchone()
            if row is None:
                raise NotFound("this card was not issued by this simulator")
            person = Person.from_dict(json.loads(row[1]))
            age = profiles.age_on(person.birthdate, moment.astimezone(JST).date())
            if kind == "sign" and age < profiles.SIGN_MIN_AGE:
                raise InvalidInput("no signature certificate for a person under 15")
            place = profiles.place_of(person.address)
            not_after = profiles.ee_not_after(person.birthdate, moment, ca.cert.not_valid_after_utc)
            if not_after <= moment:
                raise InvalidInput(f"the {kind} CA generation {gen} has expired at that time")
            serial = _fresh_serial(conn, kind)
            if kind == "sign":
                subject = profiles.sign_subject(place, moment, _next(conn, "sign-sequence"))
            else:
                subject = profiles.auth_subject(secrets.token_hex(12).upper())
            cert = profiles.build_ee(profiles.EndEntity(
                kind=kind, serial=serial, subject=subject, public_key=public_key,
                not_before=moment, not_after=not_after, place=place, generation=gen,
                base_url=settings.base_url, policy=settings.policy(variant, kind),
                policy_critical=settings.policies_critical,
                person=person if kind == "sign" else None), ca.cert, ca_key)
            conn.execute(
                "INSERT INTO certs (ca, serial, generation, person_id, card_id, variant,"
                " prefecture, city, issued_at, not_after, fingerprint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, serial, gen, row[0], card_id, variant, place.prefecture, place.city,
                 _epoch(moment), _epoch(not_after), _fingerprint(cert)))
        return cert

    def record(self, kind: Kind, serial: int) -> CertRecord | None:
        """What the sim knows about one serial of one CA kind."""
        with self.store.read() as conn:
            row = conn.execute(f"SELECT {_CERT_COLUMNS} FROM {_CERT_FROM}"  # noqa: S608 - constants
                               " WHERE c.ca = ? AND c.serial = ?", (kind, serial)).fetchone()
        return None if row is None else _record(row)

    def find(self, cert: x509.Certificate) -> CertRecord | None:
        """The record of exactly this certificate (same serial *and* same bytes), if ours."""
        for kind in profiles.KINDS:
            if cert.issuer == profiles.ca_name(kind):
                found = self.record(kind, cert.serial_number)
                if found is not None and hmac.compare_digest(found.fingerprint,
                                                             _fingerprint(cert)):
                    return found
        return None

    def person_certs(self, person_id: str) -> list[CertRecord]:
        """Every certificate of a person, oldest first."""
        with self.store.read() as conn:
            rows = conn.execute(f"SELECT {_CERT_COLUMNS} FROM {_CERT_FROM}"  # noqa: S608
                                " WHERE c.person_id = ? ORDER BY c.issued_at, c.serial",
                                (person_id,)).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, kind: Kind, serial: int, reason: str,
               now: datetime | None = None) -> bool:
        """a5: revoke a certificate; False if it already was (a revocation is never undone)."""
        flag = reason_flag(reason)
        with self.store.write() as conn:
            if conn.execute("SELECT 1 FROM certs WHERE ca = ? AND serial = ?",
                            (kind, serial)).fetchone() is None:
                raise NotFound("no such certificate")
            inserted = conn.execute(
                "INSERT OR IGNORE INTO revocations (ca, serial, reason, revoked_at)"
                " VALUES (?, ?, ?, ?)", (kind, serial, flag.value, _epoch(now or now_utc())))
            return inserted.rowcount == 1

    def link(self, kind: Kind, old_serial: int, new_serial: int,
             now: datetime | None = None) -> None:
        """a6 新旧紐付け: record that ``new_serial`` replaces ``old_serial``."""
        with self.store.write() as conn:
            conn.execute("INSERT OR REPLACE INTO links (ca, old_serial, new_serial, linked_at)"
                         " VALUES (?, ?, ?, ?)", (kind, old_serial, new_serial,
                                                  _epoch(now or now_utc())))

    def successor(self, kind: Kind, serial: int) -> int | None:
        """The newest certificate in the old->new chain after ``serial``, if any."""
        current, seen = serial, {serial}
        with self.store.read() as conn:
            while True:
                row = conn.execute("SELECT new_serial FROM links WHERE ca = ? AND old_serial = ?",
                                   (kind, current)).fetchone()
                if row is None or row[0] in seen:
                    return None if current == serial else current
                current = int(row[0])
                seen.add(current)

    def revoked_entries(self, kind: Kind, generation: int, now: datetime,
                        place: tuple[str, str] | None = None
                        ) -> list[tuple[int, str, datetime]]:
        """(serial, reason, time) of revoked, unexpired certs of one CA (b7: keep to notAfter)."""
        query = ("SELECT r.serial, r.reason, r.revoked_at FROM revocations r JOIN certs c"
                 " ON c.ca = r.ca AND c.serial = r.serial"
                 " WHERE c.ca = ? AND c.generation = ? AND c.not_after > ?")
        params: list[Any] = [kind, generation, _epoch(now)]
        if place is not None:
            query += " AND c.prefecture = ? AND c.city = ?"
            params += list(place)
        with self.store.read() as conn:
            rows = conn.execute(query + " ORDER BY r.revoked_at, r.serial", params).fetchall()
        return [(int(serial), str(reason), _moment(at)) for serial, reason, at in rows]

    def has_dp(self, kind: Kind, generation: int, prefecture: str, city: str) -> bool:
        """True once a certificate naming this distribution point was issued."""
        with self.store.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM certs WHERE ca = ? AND generation = ? AND prefecture = ?"
                " AND city = ? LIMIT 1", (kind, generation, prefecture, city)).fetchone()
        return row is not None

    def next_crl_number(self, kind: Kind, generation: int) -> int:
        """RFC 5280 §5.2.3: a monotonically increasing CRLNumber per CA key."""
        with self.store.write() as conn:
            return _next(conn, f"crl-number/{kind}/g{generation}")

    # -- fault switches (b7: negative tests) ----------------------------------------------------

    def faults(self) -> frozenset[str]:
        """The fault switches that are on."""
        with self.store.read() as conn:
            return frozenset(row[0] for row in conn.execute("SELECT name FROM faults"))

    def set_fault(self, name: str) -> frozenset[str]:
        """Turn one fault switch on."""
        if name not in FAULTS:
            raise InvalidInput(f"unknown fault {name!r}; one of: {', '.join(FAULTS)}")
        with self.store.write() as conn:
            conn.execute("INSERT OR IGNORE INTO faults (name, set_at) VALUES (?, ?)",
                         (name, _epoch(now_utc())))
        return self.faults()

    def clear_faults(self, name: str | None = None) -> frozenset[str]:
        """Turn one fault switch off, or all of them."""
        if name is not None and name not in FAULTS:
            raise InvalidInput(f"unknown fault {name!r}; one of: {', '.join(FAULTS)}")
        with self.store.write() as conn:
            if name is None:
                conn.execute("DELETE FROM faults")
            else:
                conn.execute("DELETE FROM faults WHERE name = ?", (name,))
        return self.faults()

    # -- status and link services (docs/jpki-contract.md) ---------------------------------------

    def ocsp_respond(self, request_der: bytes, now: datetime | None = None) -> bytes:
        """b7: a DER OCSPResponse for a DER OCSPRequest, honouring the fault switches."""
        from authz.sim import status

        return status.ocsp_respond(self, request_der, now or now_utc())

    def crl(self, kind: Kind, generation: int, now: datetime | None = None) -> bytes:
        """b7: the full CRL of one CA generation, DER."""
        from authz.sim import status

        return status.full_crl(self, kind, generation, now or now_utc())

    def dp_crl(self, kind: Kind, prefecture: str, city: str, generation: int = 1,
               now: datetime | None = None) -> bytes:
        """b7: the CRL of one municipality's distribution point, DER."""
        from authz.sim import status

        return status.dp_crl(self, kind, generation, prefecture, city, now or now_utc())

    def arl(self, kind: Kind, generation: int = 1, now: datetime | None = None) -> bytes:
        """b7: the (empty) authority revocation list at the CA's own DP, DER."""
        from authz.sim import status

        return status.arl(self, kind, generation, now or now_utc())

    def link_resolve(self, cert_der: bytes, rp_id: str) -> dict[str, Any]:
        """b7: person link id per RP, certificate kind, status and successor."""
        from authz.sim import link

        return link.resolve(self, cert_der, rp_id)


# -- helpers ------------------------------------------------------------------------------------

def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _fresh_serial(conn: sqlite3.Connection, kind: Kind) -> int:
    # b3: 63 random bits, odd (never 0), unique per CA kind; fits SQLite's signed INTEGER.
    while True:
        serial = secrets.randbits(63) | 1
        if conn.execute("SELECT 1 FROM certs WHERE ca = ? AND serial = ?",
                        (kind, serial)).fetchone() is None:
            return serial


def _next(conn: sqlite3.Connection, name: str) -> int:
    conn.execute("INSERT INTO counters (name, value) VALUES (?, 1)"
                 " ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,))
    return int(conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])


def _setting_row(store: Store, name: str) -> str:
    with store.read() as conn:
        return str(conn.execute("SELECT value FROM settings WHERE name = ?",
                                (name,)).fetchone()[0])


def _ensure_secret(path: Path) -> bytes:
    # Called under the state lock, so a plain existence check is race-free.
    if not path.exists():
        atomic_write(path, base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"="))
    value = path.read_bytes().strip()
    if not value:
        raise InvalidInput(f"{path} is empty; delete the jpki-sim folder to start over")
    return value


def _ensure_ca(folder: Path, kind: Kind, generation: int, secret: bytes, base_url: str) -> None:
    cert_path = folder / f"{kind}-g{generation}.pem"
    key_path = folder / f"{kind}-g{generation}.key"
    if cert_path.exists():
        if not key_path.exists():
            raise InvalidInput(f"{key_path} is missing; the simulator state is damaged")
        return
    key = rsa.generate_private_key(65537, 2048)
    # b2: G1 uses serial 1 like the real 2015 CAs; later generations a random serial < 2^31.
    serial = 1 if generation == 1 else secrets.randbelow(2**31 - 2) + 2
    cert = profiles.build_ca(kind, generation, key, serial, now_utc(), base_url)
    # The key first: a certificate on disk always has its key beside it.
    atomic_write(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret)))
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
