"""Certificate profiles parse back as reference b2/b3 describe them."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.oid import NameOID
from sim_support import NOW
from sim_support import cert_of
from sim_support import sign_cert

from authz.errors import InvalidInput
from authz.sim import profiles
from authz.sim.card import AUTH_CA
from authz.sim.card import AUTH_CERT
from authz.sim.card import SIGN_CA
from authz.sim.card import SIGN_CERT
from authz.sim.profiles import SAN_ORDER

SERVICE = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "公的個人認証サービス(模擬)")])


def ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(oid)


def usage(cert: x509.Certificate) -> set[str]:
    value = ext(cert, ExtensionOID.KEY_USAGE).value
    assert isinstance(value, x509.KeyUsage)
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign")
    return {name for name in names if getattr(value, name)}


# -- CAs (b2) -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sign", "auth"])
@pytest.mark.parametrize("generation", [1, 2])
def test_ca_profile(sim, kind, generation):
    ca = sim.authority(kind, generation).cert
    unit = {"sign": "JPKI-SIM for digital signature", "auth": "JPKI-SIM for user authentication"}
    assert ca.subject.rfc4514_string() == (
        f"OU=Simulated Agency for Local Authority Information Systems,OU={unit[kind]},"
        "O=JPKI-SIM,C=JP")
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)  # self-signed
    key = ca.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert (key.key_size, key.public_numbers().e) == (2048, 65537)
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    assert ca.version is x509.Version.v3
    assert ca.not_valid_after_utc.time().isoformat() == "14:59:59"  # 23:59:59 JST
    assert (ca.serial_number == 1) is (generation == 1)
    assert ca.serial_number < 2**31
    assert ext(ca, ExtensionOID.KEY_USAGE).critical
    assert usage(ca) == {"key_cert_sign", "crl_sign"}
    basic = ext(ca, ExtensionOID.BASIC_CONSTRAINTS)
    assert basic.critical and basic.value == x509.BasicConstraints(ca=True, path_length=None)
    san = ext(ca, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DirectoryName) == [SERVICE]
    dps = ext(ca, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert isinstance(dps, x509.CRLDistributionPoints)
    names = dps[0].full_name or []
    assert x509.DirectoryName(ca.subject) in names
    assert x509.UniformResourceIdentifier(
        f"http://127.0.0.1:8000/jpki-sim/arl/{kind}-g{generation}.crl") in names
    ski = ext(ca, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key)


def test_second_generation_shares_the_dn_but_not_the_key(sim):
    for kind in ("sign", "auth"):
        g1, g2 = sim.authority(kind, 1).cert, sim.authority(kind, 2).cert
        assert g1.subject == g2.subject
        assert g1.public_key() != g2.public_key()
    assert len(sim.anchor_pems("sign")) == 2


# -- end entities (b3) --------------------------------------------------------------------------

def test_sign_cert_profile(sim, issue):
    card = issue()
    cert = sign_cert(card)
    ca = sim.authority("sign", 1).cert
    cert.verify_directly_issued_by(ca)
    assert cert.version is x509.Version.v3
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert (key.key_size, key.public_numbers().e) == (2048, 65537)
    assert cert.serial_number & 1 and cert.serial_number < 2**63
    attrs = [(a.oid, a.value) for a in cert.subject]
    assert [oid for oid, _ in attrs] == [NameOID.COUNTRY_NAME, NameOID.LOCALITY_NAME,
                                         NameOID.LOCALITY_NAME, NameOID.COMMON_NAME]
    assert attrs[1][1] == "Tokyo-to" and attrs[2][1] == "Chiyoda-ku"
    assert re.fullmatch(r"[0-9]{14}[0-9]{5}SIM13[0-9]{4}", str(attrs[3][1]))
    assert ext(cert, ExtensionOID.KEY_USAGE).critical
    assert usage(cert) == {"digital_signature", "content_commitment"}
    policies = ext(cert, ExtensionOID.CERTIFICATE_POLICIES)
    assert not policies.critical
    assert isinstance(policies.value, x509.CertificatePolicies)
    assert [p.policy_identifier.dotted_string for p in policies.value] == [
        "1.2.392.200149.8.5.1.1.20"]
    ian = ext(cert, ExtensionOID.ISSUER_ALTERNATIVE_NAME).value
    assert isinstance(ian, x509.IssuerAlternativeName)
    assert ian.get_values_for_type(x509.DirectoryName) == [SERVICE]
    dp = ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert isinstance(dp, x509.CRLDistributionPoints)
    assert dp[0].full_name == [
        x509.DirectoryName(x509.Name.from_rfc4514_string(
            "CN=Chiyoda-ku CRLDP,OU=Tokyo-to,OU=CRL Distribution Points,"
            "OU=JPKI-SIM for digital signature,O=JPKI-SIM,C=JP")),
        x509.UniformResourceIdentifier(
            "http://127.0.0.1:8000/jpki-sim/crl/sign/Tokyo-to/Chiyoda-ku.crl")]
    aia = ext(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    assert isinstance(aia, x509.AuthorityInformationAccess)
    assert [(d.access_method, d.access_location) for d in aia] == [
        (AuthorityInformationAccessOID.OCSP,
         x509.UniformResourceIdentifier("http://127.0.0.1:8000/jpki-sim/ocsp"))]
    aki = ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    ca_ski = ext(ca, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest
    assert ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value == (
        x509.SubjectKeyIdentifier.from_public_key(key))
    assert not any(e.critical for e in cert.extensions if e.oid != ExtensionOID.KEY_USAGE)
    assert cert_of(card, SIGN_CA) == ca


def test_sign_cert_san_order_and_values(issue):
    san = ext(sign_cert(issue()), ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert not san.critical
    assert isinstance(san.value, x509.SubjectAlternativeName)
    others = san.value.get_values_for_type(x509.OtherName)
    assert [o.type_id for o in others] == list(SAN_ORDER)
    assert all(o.value[0] == 0x0C for o in others)  # DER UTF8String
    values = [profiles.parse_der_string(o.value) for o in others]
    assert values == ["山田\u3000花子", "319850315", "2", "東京都千代田区霞が関一丁目1番1号",
                      "00000", "0" * len("東京都千代田区霞が関一丁目1番1号")]
    assert len(san.value) == 6  # nothing but the six otherNames


def test_auth_cert_profile(sim, issue):
    card = issue()
    cert = cert_of(card, AUTH_CERT)
    ca = sim.authority("auth", 1).cert
    cert.verify_directly_issued_by(ca)
    assert [a.oid for a in cert.subject] == [NameOID.COUNTRY_NAME, NameOID.COMMON_NAME]
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert 16 <= len(common) <= 32 and "山田" not in str(common)
    assert usage(cert) == {"digital_signature"}
    assert ext(cert, ExtensionOID.KEY_USAGE).critical
    policies = ext(cert, ExtensionOID.CERTIFICATE_POLICIES).value
    assert isinstance(policies, x509.CertificatePolicies)
    assert [p.policy_identifier.dotted_string for p in policies] == ["1.2.392.200149.8.5.1.3.30"]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dp = ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert isinstance(dp, x509.CRLDistributionPoints)
    assert x509.UniformResourceIdentifier(
        "http://127.0.0.1:8000/jpki-sim/crl/auth/Tokyo-to/Chiyoda-ku.crl") in (dp[0].full_name
                                                                              or [])
    assert cert_of(card, AUTH_CA) == ca


@pytest.mark.parametrize(("birthdate", "has_sign"), [
    ("2010-04-01", True),   # turns 15 on the issuance day (JST)
    ("2010-04-02", False),  # 14 until tomorrow
    ("2015-01-01", False),
    ("1950-06-30", True),
])
def test_sign_cert_only_from_age_15(issue, birthdate, has_sign):
    card = issue(birthdate=birthdate, now=NOW)
    assert card.has(SIGN_CERT) is has_sign
    assert card.has(AUTH_CERT)


@pytest.mark.parametrize(("birthdate", "encoded"), [
    (date(1868, 10, 22), "018681022"),  # before Meiji: era unknown
    (date(1868, 10, 23), "118681023"),
    (date(1912, 7, 29), "119120729"),
    (date(1912, 7, 30), "219120730"),
    (date(1926, 12, 24), "219261224"),
    (date(1926, 12, 25), "319261225"),
    (date(1989, 1, 7), "319890107"),
    (date(1989, 1, 8), "419890108"),
    (date(2019, 4, 30), "420190430"),
    (date(2019, 5, 1), "520190501"),
])
def test_birthdate_era_encoding(birthdate, encoded):
    assert profiles.encode_birthdate(birthdate) == encoded


@pytest.mark.parametrize(("birthdate", "era"), [("1989-01-07", "3"), ("1989-01-08", "4"),
                                                ("2005-05-01", "4"), ("1936-02-26", "3")])
def test_birthdate_in_the_certificate(issue, birthdate, era):
    card = issue(birthdate=birthdate, now=NOW)
    values = profiles.read_person(sign_cert(card))
    assert values["1.2.392.200149.8.5.5.4"] == era + birthdate.replace("-", "")


@pytest.mark.parametrize(("gender", "code"), [("male", "1"), ("female", "2"), ("unknown", "3")])
def test_gender_codes(issue, gender, code):
    assert profiles.read_person(sign_cert(issue(gender=gender)))["1.2.392.200149.8.5.5.3"] == code


def test_substitute_characters_are_flagged(issue):
    card = issue(name="𠮷田　太郎", address="大阪府大阪市北区梅田1－1")
    values = profiles.read_person(sign_cert(card))
    assert values["1.2.392.200149.8.5.5.1"] == "吉田\u3000太郎"
    assert values["1.2.392.200149.8.5.5.2"] == "10000"
    assert values["1.2.392.200149.8.5.5.6"] == "0" * len("大阪府大阪市北区梅田1－1")
    assert profiles.substitute("a\U000f0000b") == ("a〓b", "010")  # no close character: geta


@pytest.mark.parametrize(("address", "place"), [
    ("東京都千代田区霞が関一丁目1番1号", ("Tokyo-to", "Chiyoda-ku")),
    ("神奈川県横浜市中区日本大通1", ("Kanagawa-ken", "Yokohama-shi")),
    ("大阪府大阪市北区1-1", ("Osaka-fu", "Osaka-shi")),
    ("北海道札幌市中央区北1条西2", ("Hokkaido", "Sapporo-shi")),
    ("長野県長野市1", ("Prefecture-0", "City-0")),
    ("国外転出者 ATLANTIS", ("Prefecture-0", "City-0")),
])
def test_place_romanisation(address, place):
    found = profiles.place_of(address)
    assert (found.prefecture, found.city) == place


def test_unknown_city_of_a_known_prefecture_gets_a_stable_generic_name():
    first = profiles.place_of("東京都八王子市元本郷町3-24-1")
    assert first.prefecture == "Tokyo-to" and re.fullmatch(r"City-[0-9]{4}", first.city)
    assert profiles.place_of("東京都八王子市別の町1") == first


@pytest.mark.parametrize(("birthdate", "issued", "last_day"), [
    (date(1985, 3, 15), date(2025, 4, 1), date(2030, 3, 15)),
    (date(1985, 4, 1), date(2025, 4, 1), date(2030, 4, 1)),  # issued on the birthday
    (date(1985, 4, 2), date(2025, 4, 1), date(2029, 4, 2)),
    (date(2000, 2, 29), date(2025, 4, 1), date(2030, 2, 28)),
    (date(2000, 2, 29), date(2023, 3, 1), date(2028, 2, 29)),
])
def test_fifth_birthday_after_issuance(birthdate, issued, last_day):
    assert profiles.fifth_birthday_after(birthdate, issued) == last_day


def test_validity_ends_at_2359_jst_on_the_fifth_birthday(issue):
    cert = sign_cert(issue(now=NOW))
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == datetime(2030, 3, 15, 14, 59, 59, tzinfo=UTC)


def test_validity_is_capped_by_the_ca(sim, issue):
    ca_end = sim.authority("auth", 1).cert.not_valid_after_utc
    card = issue(now=ca_end - timedelta(days=30))
    assert cert_of(card, AUTH_CERT).not_valid_after_utc == ca_end


def test_policies_are_configurable(sim, issue):
    sim.configure(policies={"card/sign": "1.2.392.200149.8.5.1.0.20"}, policies_critical=True)
    policies = ext(sign_cert(issue()), ExtensionOID.CERTIFICATE_POLICIES)
    assert policies.critical
    assert isinstance(policies.value, x509.CertificatePolicies)
    assert policies.value[0].policy_identifier.dotted_string == "1.2.392.200149.8.5.1.0.20"


def test_second_generation_issuance(sim, issue):
    card = issue(generation=2)
    cert = sign_cert(card)
    cert.verify_directly_issued_by(sim.authority("sign", 2).cert)
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(sim.authority("sign", 1).cert)
    dp = ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert isinstance(dp, x509.CRLDistributionPoints)
    assert x509.UniformResourceIdentifier(
        "http://127.0.0.1:8000/jpki-sim/crl/sign/g2/Tokyo-to/Chiyoda-ku.crl") in (
        dp[0].full_name or [])
    assert cert_of(card, SIGN_CA) == sim.authority("sign", 2).cert


def test_default_generation_is_configurable(sim, issue):
    sim.configure(generation=2)
    cert_of(issue(), AUTH_CERT).verify_directly_issued_by(sim.authority("auth", 2).cert)


def test_phone_credentials(sim, issue, issue_phone):
    sim.configure(policies={"phone/sign": "1.2.392.200149.8.5.1.1.40"})
    card = issue()
    phone = issue_phone(card)
    assert phone.token == "JPKIAPGPSETOKEN" and card.token == "JPKIAPICCTOKEN"
    assert sign_cert(phone).serial_number != sign_cert(card).serial_number
    assert sign_cert(phone).public_key() != sign_cert(card).public_key()
    assert profiles.read_person(sign_cert(phone)) == profiles.read_person(sign_cert(card))
    policies = ext(sign_cert(phone), ExtensionOID.CERTIFICATE_POLICIES).value
    assert isinstance(policies, x509.CertificatePolicies)
    assert policies[0].policy_identifier.dotted_string == "1.2.392.200149.8.5.1.1.40"
    assert sim.find(sign_cert(phone)).person_id == sim.find(sign_cert(card)).person_id


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "   ", "name must not be empty"),
    ("name", "山田\x00花子", "control"),
    ("name", "あ" * 101, "longer than 100"),
    ("address", "", "address must not be empty"),
    ("address", "〒100-0013 東京都", "postal code"),
    ("address", "東" * 201, "longer than 200"),
    ("birthdate", "1985/03/15", "YYYY-MM-DD"),
    ("birthdate", "19850315", "YYYY-MM-DD"),
    ("birthdate", "2023-02-29", "not a calendar date"),
    ("birthdate", "2999-01-01", "future"),
    ("birthdate", "1800-01-01", "era code"),
    ("gender", "m", "male, female or unknown"),
])
def test_bad_person_input(field, value, message):
    spec = {"name": "山田 花子", "birthdate": "1985-03-15", "gender": "female",
            "address": "東京都千代田区1", field: value}
    with pytest.raises(InvalidInput, match=message):
        profiles.make_person(**spec, today=date(2025, 4, 1))


def test_der_string_round_trip():
    long_text = "東" * 200
    assert profiles.parse_der_string(profiles.der_utf8(long_text)) == long_text
    assert profiles.parse_der_string(b"\x04\x03abc") == "abc"  # OCTET STRING accepted
    with pytest.raises(ValueError, match="length"):
        profiles.parse_der_string(b"\x0c\x05abc")
