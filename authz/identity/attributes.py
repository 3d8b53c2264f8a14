"""The four basic attributes in a signature certificate (reference b3), parsed and mapped.

Each of the six otherNames must appear exactly once as a DER UTF8String (OCTET STRING is
accepted too, as real parsers do); values are NFC-normalised; the substitute-character flags
must have one 0/1 per character of their value.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from cryptography import x509

from authz.identity.errors import CardRejected

NAME = "1.2.392.200149.8.5.5.1"
NAME_FLAGS = "1.2.392.200149.8.5.5.2"
GENDER = "1.2.392.200149.8.5.5.3"
BIRTHDATE = "1.2.392.200149.8.5.5.4"
ADDRESS = "1.2.392.200149.8.5.5.5"
ADDRESS_FLAGS = "1.2.392.200149.8.5.5.6"
ATTRIBUTE_OIDS = (NAME, NAME_FLAGS, GENDER, BIRTHDATE, ADDRESS, ADDRESS_FLAGS)
UTF8STRING, OCTETSTRING = 0x0C, 0x04
GENDERS = {"1": "male", "2": "female", "3": None}
ERAS = frozenset("012345")  # 0 unknown, 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和
MAX_NAME, MAX_ADDRESS = 100, 200


@dataclass(frozen=True)
class Attributes:
    """What the signature certificate says about its holder; encrypted at rest, never logged."""

    name: str
    name_flags: str
    birthdate: str  # the certificate's EYYYYMMDD form
    gender: str  # 1, 2 or 3
    address: str
    address_flags: str

    def to_record(self) -> dict[str, str]:
        return {"name": self.name, "name_flags": self.name_flags, "birthdate": self.birthdate,
                "gender": self.gender, "address": self.address,
                "address_flags": self.address_flags}

    def claims(self) -> dict[str, Any]:
        """OIDC claims (b3 mapping): omitted where the certificate does not say."""
        result: dict[str, Any] = {"name": self.name.replace("\u3000", " ")}
        parts = self.name.split("\u3000")
        if len(parts) == 2 and all(parts):
            result["family_name"], result["given_name"] = parts
        iso = iso_birthdate(self.birthdate)
        if iso:
            result["birthdate"] = iso
        gender = GENDERS.get(self.gender)
        if gender:
            result["gender"] = gender
        result["address"] = {"formatted": self.address, "country": "JP"}
        return result


def iso_birthdate(value: str) -> str | None:
    """``EYYYYMMDD`` -> ``YYYY-MM-DD``; None for an unknown era or a partial date."""
    if value[0] == "0":
        return None
    try:
        return date(int(value[1:5]), int(value[5:7]), int(value[7:9])).isoformat()
    except ValueError:
        return None


def _der_string(raw: bytes) -> str:
    """Decode one DER UTF8String or OCTET STRING TLV that spans exactly ``raw``."""
    if len(raw) < 2 or raw[0] not in (UTF8STRING, OCTETSTRING):
        raise CardRejected("attribute_not_a_string")
    length, offset = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or len(raw) < 2 + count:
            raise CardRejected("attribute_bad_length")
        length = int.from_bytes(raw[2:2 + count], "big")
        if length < 0x80 or (count == 2 and length < 0x100):
            raise CardRejected("attribute_bad_length")  # DER: minimal length encoding
        offset = 2 + count
    if offset + length != len(raw):
        raise CardRejected("attribute_bad_length")
    try:
        return unicodedata.normalize("NFC", raw[offset:].decode("utf-8"))
    except UnicodeDecodeError:
        raise CardRejected("attribute_not_utf8") from None


def parse(cert: x509.Certificate) -> Attributes:
    """The six attribute otherNames of a signature certificate, validated (b6 step 6)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CardRejected("attributes_missing") from None
    values: dict[str, str] = {}
    for other in san.get_values_for_type(x509.OtherName):
        oid = other.type_id.dotted_string
        if oid not in ATTRIBUTE_OIDS:
            continue
        if oid in values:
            raise CardRejected("attribute_duplicate")
        values[oid] = _der_string(other.value)
    if set(values) != set(ATTRIBUTE_OIDS):
        raise CardRejected("attributes_missing")
    name, address = values[NAME], values[ADDRESS]
    if not 1 <= len(name) <= MAX_NAME or not 1 <= len(address) <= MAX_ADDRESS:
        raise CardRejected("attribute_length")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name + address):
        raise CardRejected("attribute_control_character")
    for flags, value in ((values[NAME_FLAGS], name), (values[ADDRESS_FLAGS], address)):
        if len(flags) != len(value) or set(flags) - {"0", "1"}:
            raise CardRejected("attribute_flags_mismatch")
    birthdate = values[BIRTHDATE]
    if len(birthdate) != 9 or not birthdate.isascii() or not birthdate.isdigit() \
            or birthdate[0] not in ERAS:
        raise CardRejected("attribute_birthdate_malformed")
    if values[GENDER] not in GENDERS:
        raise CardRejected("attribute_gender_malformed")
    return Attributes(name, values[NAME_FLAGS], birthdate, values[GENDER], address,
                      values[ADDRESS_FLAGS])


def has_attributes(cert: x509.Certificate) -> bool:
    """True if any attribute otherName is present (an authentication cert must have none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return any(o.type_id.dotted_string in ATTRIBUTE_OIDS
               for o in san.get_values_for_type(x509.OtherName))
