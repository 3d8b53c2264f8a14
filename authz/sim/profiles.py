"""JPKI-SIM certificate profiles: names, OIDs, attribute encodings and certificate builders."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID
from cryptography.x509.oid import NameOID
from cryptography.x509.oid import ObjectIdentifier

from authz.errors import InvalidInput

Kind = Literal["sign", "auth"]
Variant = Literal["card", "phone"]
KINDS: tuple[Kind, ...] = ("sign", "auth")
GENERATIONS = (1, 2)
JST = timezone(timedelta(hours=9), "JST")

# b2: own names, never J-LIS's; "SIM" everywhere so no one mistakes these for real anchors.
ORG = "JPKI-SIM"
AGENCY = "Simulated Agency for Local Authority Information Systems"
KIND_OU: dict[Kind, str] = {"sign": "JPKI-SIM for digital signature",
                            "auth": "JPKI-SIM for user authentication"}
SERVICE_ORG = "公的個人認証サービス(模擬)"

# a1: token EF 0006 on a physical card and on a smartphone secure element.
TOKEN_CARD = "JPKIAPICCTOKEN"  # noqa: S105 - a token name, not a secret
TOKEN_PHONE = "JPKIAPGPSETOKEN"  # noqa: S105

# a4 / b3: the six SAN otherNames of the signature certificate, in the order real certs use.
OID_NAME = ObjectIdentifier("1.2.392.200149.8.5.5.1")
OID_NAME_FLAGS = ObjectIdentifier("1.2.392.200149.8.5.5.2")
OID_GENDER = ObjectIdentifier("1.2.392.200149.8.5.5.3")
OID_BIRTHDATE = ObjectIdentifier("1.2.392.200149.8.5.5.4")
OID_ADDRESS = ObjectIdentifier("1.2.392.200149.8.5.5.5")
OID_ADDRESS_FLAGS = ObjectIdentifier("1.2.392.200149.8.5.5.6")
SAN_ORDER = (OID_NAME, OID_BIRTHDATE, OID_GENDER, OID_ADDRESS, OID_NAME_FLAGS, OID_ADDRESS_FLAGS)

# a4: production policy OIDs (the auth one is from a single library, see a4's caveat).
DEFAULT_POLICIES: dict[Kind, str] = {"sign": "1.2.392.200149.8.5.1.1.20",
                                     "auth": "1.2.392.200149.8.5.1.3.30"}

GENDER_CODES = {"male": "1", "female": "2", "unknown": "3"}
MAX_NAME = 100
MAX_ADDRESS = 200  # a4: address <= 200 characters
SIGN_MIN_AGE = 15  # a1: no signature certificate under 15

# b3: era start dates (Gregorian); a date before Meiji has no era code we can give.
ERAS = ((date(2019, 5, 1), 5), (date(1989, 1, 8), 4), (date(1926, 12, 25), 3),
        (date(1912, 7, 30), 2), (date(1868, 10, 23), 1))
EARLIEST_BIRTHDATE = ERAS[-1][0]

# a4: characters outside JIS X 0208/0212 are replaced by a substitute (代替文字) and flagged.
SUBSTITUTES = {"𠮷": "吉", "髙": "高", "﨑": "崎", "𣘺": "橋", "德": "徳"}
GETA = "〓"  # the conventional JIS placeholder when no close character exists
JIS_VARIANTS = frozenset("－～￠￡￢∥")  # common Unicode spellings of JIS X 0208 characters

# Romanised 都道府県 (JIS code) and a few 市区町村 for the per-municipality CRL DPs (a4). The
# generic values match the shape P8N's mock uses for places it does not know.
PREFECTURES = {"北海道": ("Hokkaido", 1), "埼玉県": ("Saitama-ken", 11),
               "千葉県": ("Chiba-ken", 12), "東京都": ("Tokyo-to", 13),
               "神奈川県": ("Kanagawa-ken", 14),
               "愛知県": ("Aichi-ken", 23), "京都府": ("Kyoto-fu", 26), "大阪府": ("Osaka-fu", 27),
               "福岡県": ("Fukuoka-ken", 40), "沖縄県": ("Okinawa-ken", 47)}
CITIES = {"千代田区": "Chiyoda-ku", "中央区": "Chuo-ku", "港区": "Minato-ku",
          "新宿区": "Shinjuku-ku", "渋谷区": "Shibuya-ku", "世田谷区": "Setagaya-ku",
          "札幌市": "Sapporo-shi", "さいたま市": "Saitama-shi", "千葉市": "Chiba-shi",
          "横浜市": "Yokohama-shi", "川崎市": "Kawasaki-shi", "名古屋市": "Nagoya-shi",
          "京都市": "Kyoto-shi", "大阪市": "Osaka-shi", "福岡市": "Fukuoka-shi",
          "那覇市": "Naha-shi"}
GENERIC_PREFECTURE = ("Prefecture-0", 0)
GENERIC_CITY = "City-0"
CITY_PATTERN = re.compile(r".+?[市区町村]")


@dataclass(frozen=True)
class Person:
    """The four basic attributes as the signature certificate carries them (a4)."""

    name: str
    name_flags: str
    birthdate: date
    gender: str
    address: str
    address_flags: str

    def to_dict(self) -> dict[str, str]:
        """Plain values for the sim store (models the resident registry, not the RP)."""
        return {"name": self.name, "name_flags": self.name_flags,
                "birthdate": self.birthdate.isoformat(), "gender": self.gender,
                "address": self.address, "address_flags": self.address_flags}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Person:
        """The inverse of :meth:`to_dict`."""
        return cls(data["name"], data["name_flags"], date.fromisoformat(data["birthdate"]),
                   data["gender"], data["address"], data["address_flags"])


@dataclass(frozen=True)
class Place:
    """A CRL distribution point: romanised prefecture and city (a4: CRLs per municipality)."""

    prefecture: str
    prefecture_code: int
    city: str


# -- attribute encodings ------------------------------------------------------------------------

def era_code(day: date) -> int:
    """b3: 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和; 0 when unknown (before Meiji)."""
    for start, code in ERAS:
        if day >= start:
            return code
    return 0


def encode_birthdate(day: date) -> str:
    """a4: ``EYYYYMMDD``, the era code followed by the Gregorian date."""
    return f"{era_code(day)}{day:%Y%m%d}"


def substitute(text: str) -> tuple[str, str]:
    """Replace characters outside JIS X 0208/0212 and return (value, one 0/1 flag per char)."""
    chars, flags = [], []
    for char in text:
        if _is_jis(char):
            chars.append(char)
            flags.append("0")
        else:
            chars.append(SUBSTITUTES.get(char, GETA))
            flags.append("1")
    return "".join(chars), "".join(flags)


def _is_jis(char: str) -> bool:
    if char in JIS_VARIANTS:
        return True
    try:
        char.encode("euc_jp")  # the codec covers JIS X 0201, 0208 and 0212 (補助漢字)
    except UnicodeEncodeError:
        return False
    return True


def age_on(birthdate: date, day: date) -> int:
    """Completed years on ``day``."""
    return day.year - birthdate.year - ((day.month, day.day) < (birthdate.month, birthdate.day))


def birthday_in(birthdate: date, year: int) -> date:
    """The birthday in ``year``; 29 February falls on the 28th in common years."""
    try:
        return birthdate.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def fifth_birthday_after(birthdate: date, issued: date) -> date:
    """a3: certificates run until the holder's 5th birthday after issuance."""
    first = birthday_in(birthdate, issued.year)
    year = issued.year if first > issued else issued.year + 1
    return birthday_in(birthdate, year + 4)


def ee_not_after(birthdate: date, issued_at: datetime, ca_not_after: datetime) -> datetime:
    """b3: 23:59:59 JST (14:59:59Z) on the 5th birthday after issuance, capped by the CA."""
    last_day = fifth_birthday_after(birthdate, issued_at.astimezone(JST).date())
    return min(datetime.combine(last_day, time(14, 59, 59), UTC), ca_not_after)


def place_of(address: str) -> Place:
    """Romanised prefecture and city of an address; generic values for places not in the table."""
    for prefix, (prefecture, code) in PREFECTURES.items():
        if address.startswith(prefix):
            match = CITY_PATTERN.match(address[len(prefix):])
            if match is None:
                return Place(prefecture, code, GENERIC_CITY)
            city = match.group(0)
            # Unknown cities get a stable made-up name so distinct places keep distinct DPs.
            digest = int.from_bytes(hashlib.sha256(city.encode()).digest()[:4], "big")
            return Place(prefecture, code, CITIES.get(city, f"City-{digest % 10000:04d}"))
    return Place(*GENERIC_PREFECTURE, GENERIC_CITY)


# -- input normalisation (bad input -> InvalidInput, nothing written) -----------------------------

def _clean(text: str, what: str, limit: int) -> str:
    value = unicodedata.normalize("NFC", text).strip()
    if not value:
        raise InvalidInput(f"{what} must not be empty")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise InvalidInput(f"{what} contains control or unassigned characters")
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    return value


def normalise_name(name: str) -> str:
    """a4: 氏 + U+3000 + 名; any run of spaces becomes one full-width space."""
    return "\u3000".join(_clean(name, "name", MAX_NAME).split())


def normalise_address(address: str) -> str:
    """a4: prefecture first, no postal code, at most 200 characters."""
    value = _clean(address, "address", MAX_ADDRESS)
    if re.match(r"〒|\d{3}-?\d{4}\s", value):
        raise InvalidInput("address must not start with a postal code")
    return value


def parse_birthdate(text: str, today: date) -> date:
    """A real calendar date ``YYYY-MM-DD``, not in the future, within the era table."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text, re.ASCII):
        raise InvalidInput("birthdate must be YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"birthdate {text} is not a calendar date") from None
    if day > today:
        raise InvalidInput("birthdate is in the future")
    if day < EARLIEST_BIRTHDATE:
        raise InvalidInput(f"birthdate before {EARLIEST_BIRTHDATE} has no era code")
    return day


def make_person(name: str, birthdate: str, gender: str, address: str, today: date) -> Person:
    """Validate the CLI's values and encode them as the certificate will carry them."""
    if gender not in GENDER_CODES:
        raise InvalidInput("gender must be male, female or unknown")
    shown_name, name_flags = substitute(normalise_name(name))
    shown_address, address_flags = substitute(normalise_address(address))
    return Person(shown_name, name_flags, parse_birthdate(birthdate, today), GENDER_CODES[gender],
                  shown_address, address_flags)


# -- names and URIs -----------------------------------------------------------------------------

def ca_name(kind: Kind) -> x509.Name:
    """b2: one DN per CA kind, shared by every generation (as real JPKI does)."""
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, KIND_OU[kind]),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, AGENCY),
    ])


def service_name() -> x509.Name:
    """b2/b3: the DirName in the CA SAN and in the end-entity IssuerAltName."""
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, SERVICE_ORG)])


def dp_name(kind: Kind, place: Place) -> x509.Name:
    """a4: ``C=JP, O=..., OU=<kind>, OU=CRL Distribution Points, OU=<pref>, CN=<city> CRLDP``."""
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, KIND_OU[kind]),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "CRL Distribution Points"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, place.prefecture),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{place.city} CRLDP"),
    ])


def dp_uri(base_url: str, kind: Kind, generation: int, place: Place) -> str:
    """The HTTP form of a municipality DP; generation 2 gets its own path (its own key)."""
    gen = "" if generation == 1 else f"g{generation}/"
    return f"{base_url}/jpki-sim/crl/{kind}/{gen}{place.prefecture}/{place.city}.crl"


def arl_uri(base_url: str, kind: Kind, generation: int) -> str:
    """b2: the CA's own DP, where its (empty) authority revocation list is published."""
    return f"{base_url}/jpki-sim/arl/{kind}-g{generation}.crl"


def ocsp_uri(base_url: str) -> str:
    """b3: AIA OCSP location (a sim convenience; presence in real certs is unknown)."""
    return f"{base_url}/jpki-sim/ocsp"


def distribution_point(name: x509.Name, uri: str) -> x509.CRLDistributionPoints:
    """One DP carrying both the DirName (fidelity) and the URI (what clients fetch)."""
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.DirectoryName(name), x509.UniformResourceIdentifier(uri)],
        relative_name=None, reasons=None, crl_issuer=None)])


# -- DER helpers for otherName values -----------------------------------------------------------

def der_utf8(text: str) -> bytes:
    """A complete DER UTF8String TLV (``x509.OtherName`` wants the full encoding)."""
    data = text.encode("utf-8")
    return b"\x0c" + _der_length(len(data)) + data


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def parse_der_string(value: bytes) -> str:
    """Decode a DER UTF8String (or OCTET STRING, which some parsers meet) back to text."""
    if len(value) < 2 or value[0] not in (0x0C, 0x04):
        raise ValueError("not a UTF8String or OCTET STRING")
    size, offset = value[1], 2
    if size & 0x80:
        count = size & 0x7F
        size, offset = int.from_bytes(value[2:2 + count], "big"), 2 + count
    if offset + size != len(value):
        raise ValueError("bad DER length")
    return value[offset:].decode("utf-8")


def read_person(cert: x509.Certificate) -> dict[str, str]:
    """The six SAN values of a signature certificate by OID dotted string, each exactly once."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    values: dict[str, str] = {}
    for other in san.get_values_for_type(x509.OtherName):
        key = other.type_id.dotted_string
        if key in values:
            raise ValueError(f"duplicate otherName {key}")
        values[key] = unicodedata.normalize("NFC", parse_der_string(other.value))
    return values


# -- certificate builders -----------------------------------------------------------------------

def build_ca(kind: Kind, generation: int, key: rsa.RSAPrivateKey, serial: int, now: datetime,
             base_url: str) -> x509.Certificate:
    """b2: a self-signed root; ~10 years ending 14:59:59Z like the real 2015/2023 CAs."""
    name = ca_name(kind)
    not_after = datetime.combine((now + timedelta(days=3652)).date(), time(14, 59, 59), UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public).serial_number(serial)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(not_after)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DirectoryName(service_name())]),
                       critical=False)
        .add_extension(distribution_point(name, arl_uri(base_url, kind, generation)),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class EndEntity:
    """What an end-entity certificate needs besides the CA: b3's variable fields."""

    kind: Kind
    serial: int
    subject: x509.Name
    public_key: rsa.RSAPublicKey
    not_before: datetime
    not_after: datetime
    place: Place
    generation: int
    base_url: str
    policy: str
    policy_critical: bool
    person: Person | None = None


def build_ee(ee: EndEntity, ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey
             ) -> x509.Certificate:
    """b3: the signature or authentication certificate profile."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=ee.kind == "sign", key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)
    builder = (
        x509.CertificateBuilder()
        .subject_name(ee.subject).issuer_name(ca_cert.subject).public_key(ee.public_key)
        .serial_number(ee.serial).not_valid_before(ee.not_before).not_valid_after(ee.not_after)
        .add_extension(usage, critical=True)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
            ObjectIdentifier(ee.policy), None)]), critical=ee.policy_critical)
        .add_extension(x509.IssuerAlternativeName([x509.DirectoryName(service_name())]),
                       critical=False)
        .add_extension(distribution_point(
            dp_name(ee.kind, ee.place), dp_uri(ee.base_url, ee.kind, ee.generation, ee.place)),
            critical=False)
        .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier(ocsp_uri(ee.base_url)))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee.public_key), critical=False)
    )
    if ee.kind == "sign":
        if ee.person is None:
            raise ValueError("a signature certificate needs the four attributes")
        builder = builder.add_extension(x509.SubjectAlternativeName(san_values(ee.person)),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def san_values(person: Person) -> list[x509.GeneralName]:
    """b3: the six otherNames in SAN_ORDER, each value a DER UTF8String."""
    by_oid = {OID_NAME: person.name, OID_BIRTHDATE: encode_birthdate(person.birthdate),
              OID_GENDER: person.gender, OID_ADDRESS: person.address,
              OID_NAME_FLAGS: person.name_flags, OID_ADDRESS_FLAGS: person.address_flags}
    return [x509.OtherName(oid, der_utf8(by_oid[oid])) for oid in SAN_ORDER]


def sign_subject(place: Place, issued_at: datetime, sequence: int) -> x509.Name:
    """b3: ``C=JP, L=<pref>, L=<city>, CN=<YYYYMMDDhhmmss><seq:5><window code:9>``."""
    window = f"SIM{place.prefecture_code:02d}{_city_number(place.city):04d}"
    common = f"{issued_at.astimezone(JST):%Y%m%d%H%M%S}{sequence % 100000:05d}{window}"
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, place.prefecture),
        x509.NameAttribute(NameOID.LOCALITY_NAME, place.city),
        x509.NameAttribute(NameOID.COMMON_NAME, common),
    ])


def auth_subject(opaque: str) -> x509.Name:
    """b3: ``C=JP, CN=<opaque>``, no personal data."""
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.COMMON_NAME, opaque)])


def _city_number(city: str) -> int:
    return int.from_bytes(hashlib.sha256(city.encode()).digest()[:4], "big") % 10000
