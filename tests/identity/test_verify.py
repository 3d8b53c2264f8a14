"""b6 steps 2-8 (``verify_response``) against an independent test PKI (``testpki``), b11 matrix.

Every negative asserts the exact ``CardRejected.reason`` the verifier writes to the audit log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import utils
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.oid import ObjectIdentifier
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from testpki import AUTH_POLICY
from testpki import AUTH_USAGE
from testpki import DEFAULT_ATTRIBUTES
from testpki import NOW
from testpki import SIGN_POLICY
from testpki import SIGN_TEST_ENV_POLICY
from testpki import SIGN_USAGE
from testpki import TBS
from testpki import Issued
from testpki import Pki
from testpki import Responder
from testpki import card_sign
from testpki import der_children
from testpki import der_tlv
from testpki import key_usage
from testpki import make_ca
from testpki import rsa_key
from testpki import split_certificate
from testpki import to_v1
from testpki import verify
from testpki import with_version

from authz.identity.errors import CardRejected
from authz.identity.trust import AUTH
from authz.identity.trust import DEFAULT_POLICIES
from authz.identity.trust import SIGN
from authz.identity.trust import TrustConfig
from authz.identity.verify import VerifiedCard
from authz.identity.verify import verify_response

# Warnings ``cryptography`` emits while parsing some malformed inputs (pytest makes warnings
# errors). In production they are only warnings and the input is still refused; the fuzz tests
# below check exactly that.
PARSE_WARNINGS = (
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning",
    "ignore:Attribute's length must be:UserWarning",
)


@pytest.fixture
def pki() -> Pki:
    return Pki()


def rejected(reason: str, pki: Pki, issued: Issued | None = None, **kwargs: Any) -> None:
    with pytest.raises(CardRejected) as info:
        verify(pki, issued, **kwargs)
    assert info.value.reason == reason
    assert info.value.code == "card_rejected" and info.value.status == 400


# -- happy paths --------------------------------------------------------------------------------

def test_sign_certificate_is_accepted_for_proofing(pki: Pki) -> None:
    issued = pki.issue(SIGN)
    card = verify(pki, issued, kind=SIGN)
    assert isinstance(card, VerifiedCard)
    assert card.kind == SIGN and card.policy == SIGN_POLICY
    assert card.anchor.kind == SIGN and card.anchor.generation == 1
    assert card.anchor.key_id == pki.sign_g1.key_id
    assert card.status.good and card.status.method == "ocsp" and card.status.reason is None
    assert card.certificate.serial_number == issued.serial
    assert card.attributes is not None
    assert card.attributes.to_record() == {
        "name": DEFAULT_ATTRIBUTES["1.2.392.200149.8.5.5.1"],
        "name_flags": "00000", "birthdate": "319800415", "gender": "1",
        "address": DEFAULT_ATTRIBUTES["1.2.392.200149.8.5.5.5"],
        "address_flags": "0" * 13}
    assert card.attributes.claims() == {
        "name": "山田 太郎", "family_name": "山田", "given_name": "太郎",
        "birthdate": "1980-04-15", "gender": "male",
        "address": {"formatted": "東京都千代田区千代田１－１", "country": "JP"}}


def test_auth_certificate_is_accepted_for_login(pki: Pki) -> None:
    issued = pki.issue(AUTH)
    card = verify(pki, issued, kind=AUTH)
    assert card.kind == AUTH and card.policy == AUTH_POLICY and card.attributes is None
    assert card.anchor.kind == AUTH and card.anchor.key_id == pki.auth_g1.key_id
    assert card.status.good


@pytest.mark.parametrize("kind", [SIGN, AUTH])
def test_accepted_with_crl_status(pki: Pki, kind: str) -> None:
    responder = Responder(pki)
    card = verify(pki, pki.issue(kind), kind=kind, source=responder,
                  trust=pki.trust(status_method="crl"))
    assert card.status.good and card.status.method == "crl"
    assert not responder.requests and len(responder.crl_requests) == 1


def test_card_style_and_library_style_signatures_are_the_same(pki: Pki) -> None:
    """The card signs a DigestInfo (Prehashed); the verifier checks PKCS#1 v1.5 / SHA-256."""
    issued = pki.issue(SIGN)
    plain = issued.key.sign(TBS, padding.PKCS1v15(), hashes.SHA256())
    assert plain == card_sign(issued.key, TBS)
    verify(pki, issued, signature=plain)


# -- purpose separation (b6 step 3) -------------------------------------------------------------

@pytest.mark.parametrize(("cert_kind", "used_as"), [(SIGN, AUTH), (AUTH, SIGN)],
                         ids=["sign-cert-at-login", "auth-cert-at-proofing"])
def test_certificate_of_the_other_purpose_is_refused(pki: Pki, cert_kind: str,
                                                     used_as: str) -> None:
    rejected("wrong_certificate_kind", pki, pki.issue(cert_kind), kind=used_as)


@pytest.mark.parametrize(("cert_kind", "used_as"), [(SIGN, AUTH), (AUTH, SIGN)])
def test_other_purpose_without_its_anchors_is_an_unknown_issuer(pki: Pki, cert_kind: str,
                                                                used_as: str) -> None:
    only = pki.ca_for(used_as)
    rejected("unknown_issuer", pki, pki.issue(cert_kind), kind=used_as, trust=pki.trust(only))


# -- path (b6 step 4) ---------------------------------------------------------------------------

PATH_CASES: list[tuple[str, Callable[[Pki], Issued], str]] = [
    ("foreign-root", lambda p: p.issue(SIGN, ca=p.foreign), "unknown_issuer"),
    ("same-dn-other-key", lambda p: p.issue(SIGN, ca=p.rogue_sign), "unknown_issuer"),
    ("same-dn-other-key-forged-aki",
     lambda p: p.issue(SIGN, ca=p.rogue_sign, aki=p.sign_g1.key_id), "bad_issuer_signature"),
    ("signed-by-another-key", lambda p: p.issue(SIGN, signer=p.foreign.key),
     "bad_issuer_signature"),
    ("issuer-dn-differs", lambda p: p.issue(SIGN, issuer=p.foreign.cert.subject),
     "unknown_issuer"),
    ("aki-missing", lambda p: p.issue(SIGN, aki=None), "cert_no_authority_key_id"),
    ("aki-without-key-id", lambda p: p.issue(SIGN, extra=[(x509.AuthorityKeyIdentifier(
        None, [x509.DirectoryName(p.sign_g1.cert.subject)], 1), False)], aki=None),
     "unknown_issuer"),
    ("g2-cert-g1-anchor-only", lambda p: p.issue(SIGN, ca=p.sign_g2), "unknown_issuer"),
    ("g2-auth-cert-g1-anchor-only", lambda p: p.issue(AUTH, ca=p.auth_g2), "unknown_issuer"),
]


@pytest.mark.parametrize(("case", "reason"), [(c[1], c[2]) for c in PATH_CASES],
                         ids=[c[0] for c in PATH_CASES])
def test_path_is_refused(pki: Pki, case: Callable[[Pki], Issued], reason: str) -> None:
    issued = case(pki)
    rejected(reason, pki, issued, kind=issued.ca.kind)


@pytest.mark.parametrize("kind", [SIGN, AUTH])
def test_second_generation_is_accepted_once_its_anchor_is_configured(pki: Pki,
                                                                     kind: str) -> None:
    g1, g2 = pki.ca_for(kind, 1), pki.ca_for(kind, 2)
    assert g1.cert.subject == g2.cert.subject and g1.key_id != g2.key_id
    issued = pki.issue(kind, ca=g2)
    rejected("unknown_issuer", pki, issued, kind=kind, trust=pki.trust(g1))
    card = verify(pki, issued, kind=kind, trust=pki.trust(g1, g2))
    assert card.anchor.generation == 2 and card.anchor.key_id == g2.key_id
    # ... and the first generation keeps working next to it (matched by AKI, not DN).
    old = verify(pki, pki.issue(kind, ca=g1), kind=kind, trust=pki.trust(g1, g2))
    assert old.anchor.generation == 1
    rejected("unknown_issuer", pki, pki.issue(kind, ca=g1), kind=kind, trust=pki.trust(g2))


ANCHOR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("expired", {"not_before": NOW - timedelta(days=3653), "not_after": NOW - timedelta(days=1)},
     "anchor_not_valid_now"),
    ("not-yet-valid", {"not_before": NOW + timedelta(days=1)}, "anchor_not_valid_now"),
    ("not-a-ca", {"is_ca": False}, "anchor_not_ca"),
    ("no-key-cert-sign", {"usage": key_usage(crl_sign=True)}, "anchor_not_ca"),
]


@pytest.mark.parametrize(("options", "reason"), [(c[1], c[2]) for c in ANCHOR_CASES],
                         ids=[c[0] for c in ANCHOR_CASES])
def test_anchor_must_be_a_currently_valid_ca(pki: Pki, options: dict[str, Any],
                                             reason: str) -> None:
    # The same key and DN as SIGN-CA-G1, so its certificates chain to this anchor.
    anchor = make_ca(SIGN, pki.sign_g1.key, **options)
    issued = pki.issue(SIGN)
    rejected(reason, pki, issued, trust=pki.trust(anchor, pki.auth_g1))


# -- validity (b6 step 5), 60 s skew ------------------------------------------------------------

VALIDITY_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("expired", {"not_after": NOW - timedelta(seconds=61)}, "cert_expired"),
    ("expired-long-ago", {"not_before": NOW - timedelta(days=3000),
                          "not_after": NOW - timedelta(days=1)}, "cert_expired"),
    ("expired-within-skew", {"not_after": NOW - timedelta(seconds=59)}, None),
    ("expired-at-skew", {"not_after": NOW - timedelta(seconds=60)}, None),
    ("not-yet-valid", {"not_before": NOW + timedelta(seconds=61)}, "cert_not_yet_valid"),
    ("not-yet-valid-next-year", {"not_before": NOW + timedelta(days=365)},
     "cert_not_yet_valid"),
    ("not-yet-valid-within-skew", {"not_before": NOW + timedelta(seconds=59)}, None),
    ("not-yet-valid-at-skew", {"not_before": NOW + timedelta(seconds=60)}, None),
]


@pytest.mark.parametrize("kind", [SIGN, AUTH])
@pytest.mark.parametrize(("options", "reason"), [(c[1], c[2]) for c in VALIDITY_CASES],
                         ids=[c[0] for c in VALIDITY_CASES])
def test_validity_window(pki: Pki, kind: str, options: dict[str, Any],
                         reason: str | None) -> None:
    issued = pki.issue(kind, **options)
    if reason is None:
        assert verify(pki, issued, kind=kind).status.good
    else:
        rejected(reason, pki, issued, kind=kind)


def test_fifth_birthday_expiry_is_enforced(pki: Pki) -> None:
    issued = pki.issue(SIGN)
    later = issued.cert.not_valid_after_utc + timedelta(days=1)
    rejected("cert_expired", pki, issued, now=later)


# -- profile (b6 step 6) ------------------------------------------------------------------------

def _ec_issue(pki: Pki, kind: str) -> Issued:
    return pki.issue(kind, key=ec.generate_private_key(ec.SECP256R1()))


PROFILE_CASES: list[tuple[str, str, Callable[[Pki, str], Issued], str | None]] = [
    ("sha1", "both", lambda p, k: p.issue(k, algorithm=hashes.SHA1()),
     "weak_signature_algorithm"),
    ("sha384", "both", lambda p, k: p.issue(k, algorithm=hashes.SHA384()),
     "weak_signature_algorithm"),
    ("rsa-1024", "both", lambda p, k: p.issue(k, key=rsa_key("card-1024", 1024)), "bad_key"),
    ("rsa-e3", "both", lambda p, k: p.issue(k, key=rsa_key("card-e3", 2048, 3)), "bad_key"),
    ("ec-p256", "both", _ec_issue, "bad_key"),
    ("key-usage-missing", "both", lambda p, k: p.issue(k, usage=None), "bad_key_usage"),
    ("key-usage-not-critical", "both", lambda p, k: p.issue(k, usage_critical=False),
     "bad_key_usage"),
    ("key-usage-extra-key-encipherment", "sign", lambda p, k: p.issue(k, usage=key_usage(
        digital_signature=True, content_commitment=True, key_encipherment=True)),
     "bad_key_usage"),
    ("key-usage-extra-cert-sign", "auth", lambda p, k: p.issue(k, usage=key_usage(
        digital_signature=True, key_cert_sign=True)), "bad_key_usage"),
    ("sign-without-non-repudiation", "sign", lambda p, k: p.issue(k, usage=AUTH_USAGE),
     "bad_key_usage"),
    ("auth-with-non-repudiation", "auth", lambda p, k: p.issue(k, usage=SIGN_USAGE),
     "bad_key_usage"),
    ("key-usage-other-only", "both", lambda p, k: p.issue(k, usage=key_usage(
        key_agreement=True)), "bad_key_usage"),
    ("ca-true", "both", lambda p, k: p.issue(k, basic_constraints=x509.BasicConstraints(
        ca=True, path_length=None)), "cert_is_ca"),
    ("ca-false-critical", "both", lambda p, k: p.issue(k, basic_constraints=x509.BasicConstraints(
        ca=False, path_length=None)), None),
    ("unknown-critical-extension", "both", lambda p, k: p.issue(k, extra=[(
        x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
        True)]), "unknown_critical_extension"),
    ("unknown-noncritical-extension", "both", lambda p, k: p.issue(k, extra=[(
        x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
        False)]), None),
    ("known-but-unexpected-critical-extension", "both", lambda p, k: p.issue(k, extra=[(
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), True)]),
     "unknown_critical_extension"),
    ("policy-test-environment", "sign", lambda p, k: p.issue(k, policies=[SIGN_TEST_ENV_POLICY]),
     "policy_not_allowed"),
    ("policy-of-the-other-kind", "both", lambda p, k: p.issue(
        k, policies=[AUTH_POLICY if k == SIGN else SIGN_POLICY]), "policy_not_allowed"),
    ("policy-missing", "both", lambda p, k: p.issue(k, policies=None), "policy_not_allowed"),
    ("policy-any-policy", "both", lambda p, k: p.issue(k, policies=["2.5.29.32.0"]),
     "policy_not_allowed"),
    ("policy-critical", "both", lambda p, k: p.issue(k, policies_critical=True), None),
    ("policy-among-others", "both", lambda p, k: p.issue(k, policies=[
        "1.2.3.4", SIGN_POLICY if k == SIGN else AUTH_POLICY]), None),
    ("no-subject-key-id", "both", lambda p, k: p.issue(k, with_ski=False), None),
]


def _profile_params() -> list[Any]:
    params = []
    for name, kinds, build, reason in PROFILE_CASES:
        for kind in ([SIGN, AUTH] if kinds == "both" else [kinds]):
            params.append(pytest.param(kind, build, reason, id=f"{name}-{kind}"))
    return params


@pytest.mark.parametrize(("kind", "build", "reason"), _profile_params())
def test_profile(pki: Pki, kind: str, build: Callable[[Pki, str], Issued],
                 reason: str | None) -> None:
    issued = build(pki, kind)
    signature = b"\x01" * 256 if isinstance(issued.key, ec.EllipticCurvePrivateKey) else None
    if reason is None:
        assert verify(pki, issued, kind=kind, signature=signature).status.good
    else:
        rejected(reason, pki, issued, kind=kind, signature=signature)


def test_configured_policy_set_is_used(pki: Pki) -> None:
    issued = pki.issue(SIGN, policies=[SIGN_TEST_ENV_POLICY])
    policies = {**DEFAULT_POLICIES, SIGN: frozenset({SIGN_TEST_ENV_POLICY})}
    card = verify(pki, issued, trust=pki.trust(policies=policies))
    assert card.policy == SIGN_TEST_ENV_POLICY
    rejected("policy_not_allowed", pki, pki.issue(SIGN), trust=pki.trust(policies=policies))


# -- parsing (b6 step 2) ------------------------------------------------------------------------

def _dup_last_extension(tbs: bytes) -> bytes:
    children = der_children(tbs)
    items = der_children(der_children(children[-1])[0])
    children[-1] = der_tlv(0xA3, der_tlv(0x30, b"".join([*items, items[-1]])))
    return der_tlv(0x30, b"".join(children))


def _unsigned_edit(old: bytes, new: bytes) -> Callable[[Pki], bytes]:
    def edit(pki: Pki) -> bytes:
        der = pki.issue(SIGN).der
        assert len(old) == len(new) and old in der
        return der.replace(old, new, 1)  # the first occurrence: the issuer name
    return edit


def _big(pki: Pki) -> bytes:
    return pki.issue(SIGN, extra=[(x509.UnrecognizedExtension(
        ObjectIdentifier("1.3.6.1.4.1.55555.2"), der_tlv(0x04, b"x" * 3000)), False)]).der


def _indefinite_length(pki: Pki) -> bytes:
    tbs, algorithm, signature = split_certificate(pki.issue(SIGN).der)
    body = tbs + algorithm + der_tlv(0x03, b"\x00" + signature)
    return b"\x30\x80" + body + b"\x00\x00"


def _unused_bits(pki: Pki) -> bytes:
    # A signature whose last bit is 0, sent with "1 unused bit": DER-valid, same octets.
    for _ in range(64):
        der = pki.issue(SIGN).der
        if der[-1] & 1 == 0:
            position = len(der) - 257
            assert der[position] == 0
            return der[:position] + b"\x01" + der[position + 1:]
    raise AssertionError("no signature ending in a zero bit")


C_JP_PRINTABLE = bytes.fromhex("0603550406" "1302" "4a50")
C_JP_BITSTRING = bytes.fromhex("0603550406" "0302" "4a50")

PARSE_CASES: list[tuple[str, Callable[[Pki], bytes], str]] = [
    ("empty", lambda p: b"", "cert_size"),
    ("oversized-4097", lambda p: b"\x30" * 4097, "cert_size"),
    ("oversized-real-certificate", _big, "cert_size"),
    ("pem-instead-of-der", lambda p: p.issue(SIGN).cert.public_bytes(Encoding.PEM),
     "cert_malformed"),
    ("garbage", lambda p: bytes(range(256)) * 4, "cert_malformed"),
    ("truncated", lambda p: p.issue(SIGN).der[:-10], "cert_malformed"),
    ("trailing-byte", lambda p: p.issue(SIGN).der + b"\x00", "cert_malformed"),
    ("ber-indefinite-length", _indefinite_length, "cert_malformed"),
    ("signature-unused-bits", _unused_bits, "cert_malformed"),
    ("v1", lambda p: p.issue(SIGN, tbs_hook=to_v1).der, "cert_not_v3"),
    ("version-v2", lambda p: p.issue(SIGN, tbs_hook=with_version(1)).der, "cert_not_v3"),
    ("version-invalid-3", lambda p: p.issue(SIGN, tbs_hook=with_version(3)).der,
     "cert_not_v3"),
    ("version-v1-explicit", lambda p: p.issue(SIGN, tbs_hook=with_version(0)).der,
     "cert_malformed"),
    ("duplicate-extension", lambda p: p.issue(SIGN, tbs_hook=_dup_last_extension).der,
     "cert_malformed"),
    ("undecodable-key-usage", lambda p: p.issue(SIGN, usage=None, extra=[(
        x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x01\x02"), True)]).der,
     "cert_malformed"),
    ("san-x400-address", lambda p: p.issue(SIGN, san=None, extra=[(
        x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                   b"\x30\x04\xa3\x02\x30\x00"), False)]).der,
     "cert_malformed"),
    ("issuer-name-bad-string-type", _unsigned_edit(C_JP_PRINTABLE, C_JP_BITSTRING),
     "cert_malformed"),
]


@pytest.mark.parametrize(("make", "reason"), [(c[1], c[2]) for c in PARSE_CASES],
                         ids=[c[0] for c in PARSE_CASES])
def test_certificate_bytes_are_refused(pki: Pki, make: Callable[[Pki], bytes],
                                       reason: str) -> None:
    rejected(reason, pki, cert_der=make(pki), signature=b"\x00" * 256)


def test_size_limit_is_the_configured_one(pki: Pki) -> None:
    der = _big(pki)
    assert 4096 < len(der) < 8192
    issued = Issued(der, rsa_key("card-sign"), pki.sign_g1)
    assert verify(pki, issued, trust=pki.trust(max_cert_bytes=8192)).status.good


# -- proof of possession (b6 step 7) ------------------------------------------------------------

def _pss(issued: Issued) -> bytes:
    return issued.key.sign(TBS, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def _sha1_digest_info(issued: Issued) -> bytes:
    return issued.key.sign(hashlib.sha1(TBS).digest(), padding.PKCS1v15(),  # noqa: S324
                           utils.Prehashed(hashes.SHA1()))


POSSESSION_CASES: list[tuple[str, Callable[[Issued], bytes], bytes]] = [
    ("tbs-tampered", lambda i: i.sign(TBS), TBS.replace(b"proofing", b"login\x00\x00\x00")),
    ("tbs-other-audience", lambda i: i.sign(TBS), TBS.replace(b"idp.example", b"rp.example")),
    ("signature-by-another-key", lambda i: card_sign(rsa_key("card-auth"), TBS), TBS),
    ("signature-by-ca-key", lambda i: card_sign(i.ca.key, TBS), TBS),
    ("signature-255-bytes", lambda i: i.sign(TBS)[1:], TBS),
    ("signature-257-bytes", lambda i: b"\x00" + i.sign(TBS), TBS),
    ("signature-empty", lambda i: b"", TBS),
    ("signature-zeros", lambda i: b"\x00" * 256, TBS),
    ("signature-flipped-bit", lambda i: bytes([i.sign(TBS)[0] ^ 1]) + i.sign(TBS)[1:], TBS),
    ("signature-pss", _pss, TBS),
    ("signature-sha1-digest-info", _sha1_digest_info, TBS),
]


@pytest.mark.parametrize("kind", [SIGN, AUTH])
@pytest.mark.parametrize(("make", "tbs"), [(c[1], c[2]) for c in POSSESSION_CASES],
                         ids=[c[0] for c in POSSESSION_CASES])
def test_possession(pki: Pki, kind: str, make: Callable[[Issued], bytes], tbs: bytes) -> None:
    issued = pki.issue(kind, key=rsa_key("card-sign"))
    rejected("bad_signature", pki, issued, kind=kind, signature=make(issued), tbs=tbs)


# -- property: one flipped byte is never accepted -----------------------------------------------

@pytest.fixture(scope="module")
def fuzz() -> dict[str, Any]:
    pki = Pki()
    issued = {kind: pki.issue(kind) for kind in (SIGN, AUTH)}
    return {"pki": pki, "issued": issued, "trust": pki.trust(), "source": Responder(pki),
            "signature": {kind: i.sign() for kind, i in issued.items()}}


def _flip(data: bytes, position: int, mask: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


def _attempt(fuzz: dict[str, Any], kind: str, cert_der: bytes, signature: bytes) -> None:
    trust: TrustConfig = fuzz["trust"]
    with pytest.raises(CardRejected):  # and nothing else propagates
        verify_response(kind=kind, tbs=TBS, cert_der=cert_der, signature=signature,
                        trust=trust, source=fuzz["source"], now=NOW)


def test_fuzz_baseline_is_accepted(fuzz: dict[str, Any]) -> None:
    for kind in (SIGN, AUTH):
        verify_response(kind=kind, tbs=TBS, cert_der=fuzz["issued"][kind].der,
                        signature=fuzz["signature"][kind], trust=fuzz["trust"],
                        source=fuzz["source"], now=NOW)


@pytest.mark.filterwarnings(*PARSE_WARNINGS)
@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from([SIGN, AUTH]), position=st.integers(0, 10_000),
       mask=st.integers(1, 255))
def test_one_flipped_certificate_byte_is_never_accepted(fuzz: dict[str, Any], kind: str,
                                                        position: int, mask: int) -> None:
    cert_der = _flip(fuzz["issued"][kind].der, position, mask)
    _attempt(fuzz, kind, cert_der, fuzz["signature"][kind])


@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from([SIGN, AUTH]), position=st.integers(0, 255),
       mask=st.integers(1, 255))
def test_one_flipped_signature_byte_is_never_accepted(fuzz: dict[str, Any], kind: str,
                                                      position: int, mask: int) -> None:
    signature = _flip(fuzz["signature"][kind], position, mask)
    _attempt(fuzz, kind, fuzz["issued"][kind].der, signature)


@pytest.mark.filterwarnings(*PARSE_WARNINGS)
@pytest.mark.parametrize("kind", [SIGN, AUTH])
def test_every_certificate_byte_flip_is_refused(fuzz: dict[str, Any], kind: str) -> None:
    """Exhaustive companion of the property test: every position, two masks (~0.2 s)."""
    der, signature = fuzz["issued"][kind].der, fuzz["signature"][kind]
    for position in range(len(der)):
        for mask in (0x01, 0x80):
            _attempt(fuzz, kind, _flip(der, position, mask), signature)
