"""The four basic attributes (b3): SAN otherNames in real certificates, parsing, claim mapping.

Certificates come from the independent ``testpki``; each negative asserts the exact reason.
A few encodings ``cryptography`` refuses to build or load are checked on ``attributes.parse``
directly, with the SAN given as an ``x509.Extensions`` object.
"""

from __future__ import annotations

import unicodedata
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.oid import ObjectIdentifier
from testpki import ADDRESS
from testpki import ADDRESS_FLAGS
from testpki import B3_ORDER
from testpki import BIRTHDATE
from testpki import DEFAULT_ATTRIBUTES
from testpki import GENDER
from testpki import NAME
from testpki import NAME_FLAGS
from testpki import Pki
from testpki import der_tlv
from testpki import octetstring
from testpki import other_names
from testpki import utf8string
from testpki import verify

from authz.identity import attributes
from authz.identity.errors import CardRejected
from authz.identity.trust import AUTH
from authz.identity.trust import SIGN


@pytest.fixture
def pki() -> Pki:
    return Pki()


def values(**changes: str) -> dict[str, str]:
    """DEFAULT_ATTRIBUTES with changes by short name; flags follow the value unless given."""
    short = {"name": NAME, "birthdate": BIRTHDATE, "gender": GENDER, "address": ADDRESS,
             "name_flags": NAME_FLAGS, "address_flags": ADDRESS_FLAGS}
    result = dict(DEFAULT_ATTRIBUTES)
    for key, value in changes.items():
        result[short[key]] = value
    if "name" in changes and "name_flags" not in changes:
        result[NAME_FLAGS] = "0" * len(unicodedata.normalize("NFC", changes["name"]))
    if "address" in changes and "address_flags" not in changes:
        result[ADDRESS_FLAGS] = "0" * len(unicodedata.normalize("NFC", changes["address"]))
    return result


def rejected(reason: str, pki: Pki, **issue: Any) -> None:
    kind = issue.pop("kind", SIGN)
    with pytest.raises(CardRejected) as info:
        verify(pki, pki.issue(kind, **issue), kind=kind)
    assert info.value.reason == reason


# -- claims mapping (b3) ------------------------------------------------------------------------

ADDRESS_CLAIM = {"formatted": DEFAULT_ATTRIBUTES[ADDRESS], "country": "JP"}

CLAIM_CASES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("default", {}, {"name": "山田 太郎", "family_name": "山田", "given_name": "太郎",
                     "birthdate": "1980-04-15", "gender": "male", "address": ADDRESS_CLAIM}),
    ("female", {"gender": "2"}, {"gender": "female"}),
    ("gender-unknown-omitted", {"gender": "3"}, {"gender": None}),
    ("era-meiji", {"birthdate": "118991201"}, {"birthdate": "1899-12-01"}),
    ("era-heisei", {"birthdate": "419900102"}, {"birthdate": "1990-01-02"}),
    ("era-reiwa", {"birthdate": "520200229"}, {"birthdate": "2020-02-29"}),
    ("era-unknown-omitted", {"birthdate": "019800415"}, {"birthdate": None}),
    ("partial-day-omitted", {"birthdate": "319800400"}, {"birthdate": None}),
    ("partial-month-day-omitted", {"birthdate": "319800000"}, {"birthdate": None}),
    ("all-zero-omitted", {"birthdate": "000000000"}, {"birthdate": None}),
    ("impossible-date-omitted", {"birthdate": "419900230"}, {"birthdate": None}),
    ("no-separator-no-split", {"name": "ナカモトサトシ"},
     {"name": "ナカモトサトシ", "family_name": None, "given_name": None}),
    ("two-separators-no-split", {"name": "山田\u3000太郎\u3000次郎"},
     {"name": "山田 太郎 次郎", "family_name": None, "given_name": None}),
    ("leading-separator-no-split", {"name": "\u3000太郎"},
     {"name": " 太郎", "family_name": None, "given_name": None}),
    ("trailing-separator-no-split", {"name": "山田\u3000"},
     {"name": "山田 ", "family_name": None, "given_name": None}),
    ("ascii-space-is-not-the-separator", {"name": "Smith John"},
     {"name": "Smith John", "family_name": None, "given_name": None}),
    ("katakana-name-split", {"name": "ナカモト\u3000サトシ"},
     {"name": "ナカモト サトシ", "family_name": "ナカモト", "given_name": "サトシ"}),
    ("substitute-character-flagged", {"name": "〓野\u3000花子", "name_flags": "10000"},
     {"name": "〓野 花子", "family_name": "〓野", "given_name": "花子"}),
    ("address-overseas-style", {"address": "国外転出（アメリカ合衆国）"},
     {"address": {"formatted": "国外転出（アメリカ合衆国）", "country": "JP"}}),
]


@pytest.mark.parametrize(("changes", "expected"), [(c[1], c[2]) for c in CLAIM_CASES],
                         ids=[c[0] for c in CLAIM_CASES])
def test_claims(pki: Pki, changes: dict[str, str], expected: dict[str, Any]) -> None:
    card = verify(pki, pki.issue(SIGN, san=other_names(values(**changes))))
    assert card.attributes is not None
    claims = card.attributes.claims()
    for key, value in expected.items():
        if value is None:
            assert key not in claims
        else:
            assert claims[key] == value
    if "gender" in changes:
        assert card.attributes.gender == changes["gender"]  # the record keeps the raw value
    if "birthdate" in changes:
        assert card.attributes.birthdate == changes["birthdate"]


def test_record_keeps_the_original_name_and_flags(pki: Pki) -> None:
    card = verify(pki, pki.issue(SIGN, san=other_names(values(name="〓野\u3000花子",
                                                               name_flags="10000"))))
    assert card.attributes is not None
    record = card.attributes.to_record()
    assert record["name"] == "〓野\u3000花子" and record["name_flags"] == "10000"


ACCEPTED_ENCODINGS: list[tuple[str, list[tuple[str, bytes]]]] = [
    ("all-octet-string", other_names(DEFAULT_ATTRIBUTES, encode=octetstring)),
    ("one-octet-string", [(o, octetstring(v) if o == NAME else utf8string(v))
                          for o, v in DEFAULT_ATTRIBUTES.items()]),
    ("reverse-order", other_names(DEFAULT_ATTRIBUTES, order=tuple(reversed(B3_ORDER)))),
    ("unrelated-other-name-ignored",
     [*other_names(DEFAULT_ATTRIBUTES), ("1.2.392.200149.8.5.5.99", utf8string("x"))]),
    ("long-form-length", other_names(values(address="東" * 60))),  # 180 bytes: 0x81 0xB4
    ("two-byte-length", other_names(values(address="東" * 100))),  # 300 bytes: 0x82 ...
]


@pytest.mark.parametrize("san", [c[1] for c in ACCEPTED_ENCODINGS],
                         ids=[c[0] for c in ACCEPTED_ENCODINGS])
def test_accepted_encodings(pki: Pki, san: list[tuple[str, bytes]]) -> None:
    card = verify(pki, pki.issue(SIGN, san=san))
    assert card.attributes is not None
    assert card.attributes.name == DEFAULT_ATTRIBUTES[NAME]


def test_san_with_other_general_names_too(pki: Pki) -> None:
    san = x509.SubjectAlternativeName([
        x509.RFC822Name("card@example.test"),
        *[x509.OtherName(ObjectIdentifier(oid), value)
          for oid, value in other_names(DEFAULT_ATTRIBUTES)]])
    card = verify(pki, pki.issue(SIGN, san=None, extra=[(san, False)]))
    assert card.attributes is not None and card.attributes.gender == "1"


def test_values_are_nfc_normalised(pki: Pki) -> None:
    decomposed = unicodedata.normalize("NFD", "がくと\u3000ぱぱ")
    assert len(decomposed) > 6
    card = verify(pki, pki.issue(SIGN, san=other_names(values(name=decomposed))))
    assert card.attributes is not None
    assert card.attributes.name == "がくと\u3000ぱぱ"
    assert len(card.attributes.name_flags) == 6


@pytest.mark.parametrize(("field", "length", "reason"), [
    ("name", 100, None), ("name", 101, "attribute_length"),
    ("address", 200, None), ("address", 201, "attribute_length"),
    ("name", 0, "attribute_length"), ("address", 0, "attribute_length"),
])
def test_length_limits(pki: Pki, field: str, length: int, reason: str | None) -> None:
    san = other_names(values(**{field: "あ" * length}))
    if reason is None:
        assert verify(pki, pki.issue(SIGN, san=san)).attributes is not None
    else:
        rejected(reason, pki, san=san)


# -- refused (b6 step 6) ------------------------------------------------------------------------

def _without(oid: str) -> list[tuple[str, bytes]]:
    return [(o, v) for o, v in other_names(DEFAULT_ATTRIBUTES) if o != oid]


def _duplicated(oid: str, second: str | None = None) -> list[tuple[str, bytes]]:
    san = other_names(DEFAULT_ATTRIBUTES)
    return [*san, (oid, utf8string(second if second is not None else DEFAULT_ATTRIBUTES[oid]))]


def _raw(oid: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(o, value if o == oid else v) for o, v in other_names(DEFAULT_ATTRIBUTES)]


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    *[(f"missing-{oid[-1]}", {"san": _without(oid)}, "attributes_missing") for oid in B3_ORDER],
    ("no-san", {"san": None}, "attributes_missing"),
    ("san-without-attributes", {"san": [("1.2.392.200149.8.5.5.99", utf8string("x"))]},
     "attributes_missing"),
    *[(f"duplicate-{oid[-1]}", {"san": _duplicated(oid)}, "attribute_duplicate")
      for oid in B3_ORDER],
    ("duplicate-with-other-value", {"san": _duplicated(NAME, "佐藤\u3000花子")},
     "attribute_duplicate"),
    ("name-flags-short", {"san": other_names(values(name_flags="0000"))},
     "attribute_flags_mismatch"),
    ("name-flags-long", {"san": other_names(values(name_flags="000000"))},
     "attribute_flags_mismatch"),
    ("address-flags-short", {"san": other_names(values(address_flags="0" * 12))},
     "attribute_flags_mismatch"),
    ("address-flags-empty", {"san": other_names(values(address_flags=""))},
     "attribute_flags_mismatch"),
    ("flags-digit-2", {"san": other_names(values(name_flags="00200"))},
     "attribute_flags_mismatch"),
    ("flags-letter", {"san": other_names(values(name_flags="0a000"))},
     "attribute_flags_mismatch"),
    ("flags-full-width-zero", {"san": other_names(values(name_flags="０００００"))},
     "attribute_flags_mismatch"),
    ("flags-space", {"san": other_names(values(address_flags=" " * 13))},
     "attribute_flags_mismatch"),
    ("name-not-utf8", {"san": _raw(NAME, b"\x0c\x04\xff\xfe\xfd\xfc")}, "attribute_not_utf8"),
    ("octet-string-not-utf8", {"san": _raw(ADDRESS, b"\x04\x02\xc3\x28")},
     "attribute_not_utf8"),
    ("utf8-overlong", {"san": _raw(GENDER, b"\x0c\x02\xc0\xb1")}, "attribute_not_utf8"),
    ("utf8-surrogate", {"san": _raw(NAME, b"\x0c\x03\xed\xa0\x80")}, "attribute_not_utf8"),
    ("printable-string", {"san": _raw(GENDER, b"\x13\x011")}, "attribute_not_a_string"),
    ("ia5-string", {"san": _raw(GENDER, b"\x16\x011")}, "attribute_not_a_string"),
    ("bmp-string", {"san": _raw(NAME, b"\x1e\x04\x5c\x71\x75\x30")}, "attribute_not_a_string"),
    ("integer", {"san": _raw(GENDER, b"\x02\x01\x01")}, "attribute_not_a_string"),
    ("sequence-wrapped", {"san": _raw(GENDER, der_tlv(0x30, utf8string("1")))},
     "attribute_not_a_string"),
    *[(f"control-{hex(ord(ch))}-in-{field}", {"san": other_names(values(**{
        field: (DEFAULT_ATTRIBUTES[NAME] if field == "name" else DEFAULT_ATTRIBUTES[ADDRESS])
        + ch}))}, "attribute_control_character")
      for ch in ("\x00", "\n", "\x1b", "\x7f", "\x85", "\u200b", "\u202e", "\u2028", "\u2029",
                 "\ufeff")
      for field in ("name", "address")],
    *[(f"birthdate-{label}", {"san": other_names(values(birthdate=value))},
       "attribute_birthdate_malformed")
      for label, value in (("empty", ""), ("8-digits", "31980041"),
                           ("10-digits", "3198004150"), ("era-6", "619800415"),
                           ("era-9", "919800415"), ("letter", "31980041X"),
                           ("era-letter", "S19800415"), ("dashes", "31980-4-1"),
                           ("full-width", "３１９８００４１５"), ("arabic-indic", "٣١٩٨٠٠٤١٥"),
                           ("space", "3 1980041"))],
    *[(f"gender-{label}", {"san": other_names(values(gender=value))},
       "attribute_gender_malformed")
      for label, value in (("empty", ""), ("0", "0"), ("4", "4"), ("M", "M"), ("12", "12"),
                           ("full-width", "１"), ("word", "male"))],
]


@pytest.mark.parametrize(("issue", "reason"), [(c[1], c[2]) for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_refused(pki: Pki, issue: dict[str, Any], reason: str) -> None:
    rejected(reason, pki, **issue)


def test_non_minimal_length_is_refused_when_the_certificate_is_loaded(pki: Pki) -> None:
    # cryptography will not encode it, so substitute after building (same total length:
    # 0C 02 'X' '1' -> 0C 81 01 '1') and let the CA sign the result.
    san = other_names(values(gender="X1"))
    issued = pki.issue(SIGN, san=san, tbs_hook=lambda tbs: tbs.replace(
        b"\x0c\x02X1", b"\x0c\x81\x011", 1))
    assert b"\x0c\x81\x011" in issued.der
    with pytest.raises(CardRejected) as info:
        verify(pki, issued)
    assert info.value.reason == "cert_malformed"


@pytest.mark.parametrize(("old", "new"), [
    ("山田".encode(), "山本".encode()),
    (b"319800415", b"319900415"),
    ("千代田１".encode(), "千代田２".encode()),
], ids=["name", "birthdate", "address"])
def test_tampered_san_fails_the_issuer_signature(pki: Pki, old: bytes, new: bytes) -> None:
    issued = pki.issue(SIGN)
    assert issued.der.count(old) == 1
    with pytest.raises(CardRejected) as info:
        verify(pki, issued, cert_der=issued.der.replace(old, new))
    assert info.value.reason == "bad_issuer_signature"


@pytest.mark.parametrize("san", [
    other_names(DEFAULT_ATTRIBUTES),
    [(GENDER, utf8string("1"))],
    [(NAME_FLAGS, utf8string("0"))],
    [("1.2.392.200149.8.5.5.6", octetstring("0"))],
], ids=["all-six", "gender-only", "name-flags-only", "address-flags-octet-string"])
def test_auth_certificate_carrying_attributes_is_refused(pki: Pki,
                                                         san: list[tuple[str, bytes]]) -> None:
    rejected("auth_cert_has_attributes", pki, kind=AUTH, san=san)


def test_auth_certificate_with_unrelated_other_name_is_accepted(pki: Pki) -> None:
    issued = pki.issue(AUTH, san=[("1.2.392.200149.8.5.5.99", utf8string("x"))])
    assert verify(pki, issued, kind=AUTH).attributes is None


# -- attributes.parse directly: encodings cryptography will not build -----------------------------

def stub(*names: tuple[str, bytes]) -> Any:
    """Just enough of a certificate for ``attributes.parse``: its SAN extension."""
    san = x509.SubjectAlternativeName(
        [x509.OtherName(ObjectIdentifier(oid), value) for oid, value in names])
    return SimpleNamespace(extensions=x509.Extensions(
        [x509.Extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, False, san)]))


def _with_gender(raw: bytes) -> Any:
    return stub(*_raw(GENDER, raw))


def test_stub_baseline_parses() -> None:
    parsed = attributes.parse(_with_gender(b"\x0c\x011"))
    assert parsed.gender == "1" and parsed.name == DEFAULT_ATTRIBUTES[NAME]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\x0c\x81\x011", "attribute_bad_length"),  # non-minimal long form
    (b"\x0c\x82\x00\x011", "attribute_bad_length"),  # non-minimal two-byte form
    (b"\x0c\x82\x00\x80" + b"1" * 128, "attribute_bad_length"),  # fits in one length byte
    (b"\x0c\x80" + b"1\x00\x00", "attribute_bad_length"),  # BER indefinite length
    (b"\x0c\x83\x00\x00\x011", "attribute_bad_length"),  # three length bytes
    (b"\x0c\x81", "attribute_bad_length"),  # length bytes missing
    (b"\x0c\x021", "attribute_bad_length"),  # shorter than declared
    (b"\x0c\x0112", "attribute_bad_length"),  # trailing byte
    (b"\x0c", "attribute_not_a_string"),  # no length at all
    (b"", "attribute_not_a_string"),
    (b"\x2c\x03\x0c\x011", "attribute_not_a_string"),  # constructed UTF8String (BER)
], ids=["long-form-1", "long-form-2", "two-bytes-for-128", "indefinite", "three-bytes",
        "missing-length-bytes", "short", "trailing", "tag-only", "empty", "constructed"])
def test_der_string_encoding(raw: bytes, reason: str) -> None:
    with pytest.raises(CardRejected) as info:
        attributes.parse(_with_gender(raw))
    assert info.value.reason == reason


@pytest.mark.parametrize(("raw", "text"), [
    (b"\x0c\x81\x80" + b"a" * 128, "a" * 128),
    (b"\x04\x82\x01\x2c" + "あ".encode() * 100, "あ" * 100),
], ids=["long-form-128", "two-byte-300"])
def test_der_string_minimal_long_forms_decode(raw: bytes, text: str) -> None:
    flags = utf8string("0" * len(text))
    parsed = attributes.parse(stub(*[(o, raw if o == ADDRESS else flags if o == ADDRESS_FLAGS
                                      else v) for o, v in other_names(DEFAULT_ATTRIBUTES)]))
    assert parsed.address == text


def test_iso_birthdate() -> None:
    assert attributes.iso_birthdate("319800415") == "1980-04-15"
    assert attributes.iso_birthdate("019800415") is None
    assert attributes.iso_birthdate("319800015") is None
    assert attributes.iso_birthdate("419900231") is None
