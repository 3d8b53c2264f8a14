"""An independent test PKI for the card verifier, built with ``cryptography`` only.

Deliberately does not use ``authz.sim``: the verifier is tested against certificates, OCSP
responses and CRLs that the simulator did not make. Profiles follow reference b2/b3 (JPKI-like
DNs, RSA-2048, sha256WithRSAEncryption, AKI/SKI, KeyUsage critical, policy OIDs, six SAN
otherNames as DER UTF8String in b3 order); every property has a knob to break it.

RSA key generation is slow, so keys are cached for the whole session by label (``rsa_key``);
certificates are cheap and made per test.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric import utils
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID
from cryptography.x509.oid import ObjectIdentifier

from authz.identity.status import StatusSource
from authz.identity.trust import AUTH
from authz.identity.trust import SIGN
from authz.identity.trust import TrustConfig
from authz.identity.trust import load_anchors
from authz.identity.verify import VerifiedCard
from authz.identity.verify import verify_response

# A fixed clock: every certificate, response and check below is relative to it.
NOW = datetime(2026, 4, 1, 3, 0, 0, tzinfo=UTC)

SIGN_POLICY = "1.2.392.200149.8.5.1.1.20"
SIGN_TEST_ENV_POLICY = "1.2.392.200149.8.5.1.0.20"
AUTH_POLICY = "1.2.392.200149.8.5.1.3.30"

NAME = "1.2.392.200149.8.5.5.1"
NAME_FLAGS = "1.2.392.200149.8.5.5.2"
GENDER = "1.2.392.200149.8.5.5.3"
BIRTHDATE = "1.2.392.200149.8.5.5.4"
ADDRESS = "1.2.392.200149.8.5.5.5"
ADDRESS_FLAGS = "1.2.392.200149.8.5.5.6"
B3_ORDER = (NAME, BIRTHDATE, GENDER, ADDRESS, NAME_FLAGS, ADDRESS_FLAGS)

DEFAULT_NAME = "山田\u3000太郎"
DEFAULT_ADDRESS = "東京都千代田区千代田１－１"
DEFAULT_ATTRIBUTES = {
    NAME: DEFAULT_NAME,
    BIRTHDATE: "319800415",  # 昭和, 1980-04-15
    GENDER: "1",
    ADDRESS: DEFAULT_ADDRESS,
    NAME_FLAGS: "0" * len(DEFAULT_NAME),
    ADDRESS_FLAGS: "0" * len(DEFAULT_ADDRESS),
}

# The challenge the card signs (b5 canonical form); its exact content does not matter here.
TBS = (b'{"aud":"https://idp.example.test","iat":1775012400,"nonce":"bm9uY2Utbm9uY2Utbm9uY2U",'
       b'"purpose":"proofing","txn":"6f1c2a4e-0000-4000-8000-000000000001","v":1}')

SHA256_RSA_ALG = bytes.fromhex("300d06092a864886f70d01010b0500")
SHA1_RSA_ALG = bytes.fromhex("300d06092a864886f70d0101050500")

ALL_USAGE_FALSE = {
    "digital_signature": False, "content_commitment": False, "key_encipherment": False,
    "data_encipherment": False, "key_agreement": False, "key_cert_sign": False,
    "crl_sign": False, "encipher_only": False, "decipher_only": False,
}


def key_usage(**flags: bool) -> x509.KeyUsage:
    return x509.KeyUsage(**{**ALL_USAGE_FALSE, **flags})


SIGN_USAGE = key_usage(digital_signature=True, content_commitment=True)
AUTH_USAGE = key_usage(digital_signature=True)
CA_USAGE = key_usage(key_cert_sign=True, crl_sign=True)


# -- keys ---------------------------------------------------------------------------------------

@functools.cache
def rsa_key(label: str, bits: int = 2048, exponent: int = 65537) -> rsa.RSAPrivateKey:
    """One RSA key per label for the whole test session (keygen dominates the run time)."""
    del label  # only the cache key
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def card_sign(key: rsa.RSAPrivateKey, tbs: bytes = TBS) -> bytes:
    """What the card does (b4): sign a SHA-256 DigestInfo, raw PKCS#1 v1.5."""
    digest = hashlib.sha256(tbs).digest()
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


# -- minimal DER --------------------------------------------------------------------------------

def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``offset`` (single-byte tags only)."""
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2:offset + 2 + count], "big")
    start = offset + 2 + count
    return tag, start, start + length


def der_children(data: bytes) -> list[bytes]:
    """The complete TLVs inside the constructed TLV ``data``."""
    _, start, end = der_header(data)
    children, offset = [], start
    while offset < end:
        _, _, child_end = der_header(data, offset)
        children.append(data[offset:child_end])
        offset = child_end
    return children


def utf8string(value: str) -> bytes:
    return der_tlv(0x0C, value.encode())


def octetstring(value: str) -> bytes:
    return der_tlv(0x04, value.encode())


def split_certificate(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(tbsCertificate, signatureAlgorithm, signature value) of a certificate."""
    tbs, algorithm, bits = der_children(der)
    _, start, end = der_header(bits)
    return tbs, algorithm, bits[start + 1:end]  # skip the unused-bits octet


def assemble_certificate(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    return der_tlv(0x30, tbs + algorithm + der_tlv(0x03, b"\x00" + signature))


def resign(der: bytes, key: rsa.RSAPrivateKey, *,
           tbs_hook: Callable[[bytes], bytes] | None = None,
           algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """Edit a certificate's TBS and sign it again (what ``cryptography`` will not build)."""
    tbs, alg_id, _ = split_certificate(der)
    if tbs_hook is not None:
        tbs = tbs_hook(tbs)
    algorithm = algorithm or hashes.SHA256()
    if isinstance(algorithm, hashes.SHA1):
        tbs = tbs.replace(SHA256_RSA_ALG, SHA1_RSA_ALG, 1)
        alg_id = SHA1_RSA_ALG
    signature = key.sign(tbs, padding.PKCS1v15(), algorithm)
    return assemble_certificate(tbs, alg_id, signature)


def to_v1(tbs: bytes) -> bytes:
    """Drop the [0] version and [3] extensions of a TBS: an X.509 v1 certificate."""
    children = [c for c in der_children(tbs) if c[0] not in (0xA0, 0xA3)]
    return der_tlv(0x30, b"".join(children))


def with_version(value: int) -> Callable[[bytes], bytes]:
    """A TBS hook that sets the version INTEGER to ``value`` (0 v1, 1 v2, 2 v3, others bad)."""
    def hook(tbs: bytes) -> bytes:
        children = der_children(tbs)
        assert children[0][0] == 0xA0
        children[0] = der_tlv(0xA0, der_tlv(0x02, bytes([value])))
        return der_tlv(0x30, b"".join(children))
    return hook


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    """Same-length byte substitution (keeps every enclosing DER length valid)."""
    assert len(old) == len(new) and data.count(old) == 1, (old, data.count(old))
    return data.replace(old, new)


# -- names --------------------------------------------------------------------------------------

def ca_name(kind: str, org: str = "JPKI-TEST") -> x509.Name:
    purpose = "digital signature" if kind == SIGN else "user authentication"
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{org} for {purpose}"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                           "Test Agency for Local Authority Information Systems"),
    ])


ALT_DIRNAME = x509.DirectoryName(x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "公的個人認証サービス(試験)"),
]))


def ee_subject(kind: str) -> x509.Name:
    if kind == SIGN:
        return x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Tokyo-to"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Chiyoda-ku"),
            x509.NameAttribute(NameOID.COMMON_NAME, "2026040109300000042TST131016"),
        ])
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(12))])


def jst_end_of_day(moment: datetime) -> datetime:
    """23:59:59 JST = 14:59:59Z, as real JPKI notAfter values are."""
    return moment.replace(hour=14, minute=59, second=59, microsecond=0)


# -- certificate authorities --------------------------------------------------------------------

@dataclass(frozen=True)
class CA:
    kind: str
    generation: int
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_id(self) -> bytes:
        return x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()).digest


def make_ca(kind: str, key: rsa.RSAPrivateKey, *, generation: int = 1,
            subject: x509.Name | None = None, serial: int | None = None,
            not_before: datetime | None = None, not_after: datetime | None = None,
            is_ca: bool = True, usage: x509.KeyUsage = CA_USAGE, with_ski: bool = True,
            extra: Sequence[tuple[x509.ExtensionType, bool]] = ()) -> CA:
    """A self-signed JPKI-like root (b2): v3, RSA, KeyUsage and BasicConstraints critical."""
    subject = subject or ca_name(kind)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(serial if serial is not None
                              else (1 if generation == 1 else secrets.randbelow(2**31) + 1))
               .not_valid_before(not_before or NOW - timedelta(days=1))
               .not_valid_after(not_after or jst_end_of_day(NOW + timedelta(days=3652)))
               .add_extension(usage, critical=True)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName([ALT_DIRNAME]), critical=False)
               .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                   full_name=[x509.DirectoryName(subject)], relative_name=None, reasons=None,
                   crl_issuer=None)]), critical=False))
    if with_ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return CA(kind, generation, key, builder.sign(key, hashes.SHA256()))


# -- end-entity certificates --------------------------------------------------------------------

def other_names(values: dict[str, str], order: Sequence[str] = B3_ORDER,
                encode: Callable[[str], bytes] = utf8string) -> list[tuple[str, bytes]]:
    return [(oid, encode(values[oid])) for oid in order if oid in values]


@dataclass
class Issued:
    der: bytes
    key: Any  # the card's private key (RSA normally; other types for profile tests)
    ca: CA

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def sign(self, tbs: bytes = TBS) -> bytes:
        return card_sign(self.key, tbs)


_DEFAULT = object()


@dataclass
class Pki:
    """Two roots per kind (G1, G2: same DN, new key), plus outsiders, and what they issued."""

    sign_g1: CA = field(init=False)
    sign_g2: CA = field(init=False)
    auth_g1: CA = field(init=False)
    auth_g2: CA = field(init=False)
    foreign: CA = field(init=False)  # another root, another DN
    rogue_sign: CA = field(init=False)  # the sign-CA DN on a key nobody trusts
    issued: dict[bytes, set[int]] = field(default_factory=dict)
    revoked: dict[tuple[bytes, int], tuple[datetime, x509.ReasonFlags | None]] = field(
        default_factory=dict)

    def __post_init__(self) -> None:
        self.sign_g1 = make_ca(SIGN, rsa_key("sign-g1"))
        self.sign_g2 = make_ca(SIGN, rsa_key("sign-g2"), generation=2)
        self.auth_g1 = make_ca(AUTH, rsa_key("auth-g1"))
        self.auth_g2 = make_ca(AUTH, rsa_key("auth-g2"), generation=2)
        self.foreign = make_ca(SIGN, rsa_key("foreign"), subject=ca_name(SIGN, "FOREIGN-PKI"))
        self.rogue_sign = make_ca(SIGN, rsa_key("rogue"))

    @property
    def cas(self) -> list[CA]:
        return [self.sign_g1, self.sign_g2, self.auth_g1, self.auth_g2, self.foreign,
                self.rogue_sign]

    def ca_for(self, kind: str, generation: int = 1) -> CA:
        return {(SIGN, 1): self.sign_g1, (SIGN, 2): self.sign_g2,
                (AUTH, 1): self.auth_g1, (AUTH, 2): self.auth_g2}[(kind, generation)]

    def trust(self, *cas: CA, **options: Any) -> TrustConfig:
        """Anchors loaded the way the service loads them (PEM through ``load_anchors``)."""
        cas = cas or (self.sign_g1, self.auth_g1)
        anchors = []
        for kind in (SIGN, AUTH):
            anchors += load_anchors(kind, [ca.pem for ca in cas if ca.kind == kind])
        return TrustConfig(anchors=tuple(anchors), **options)

    def revoke(self, issued: Issued, reason: x509.ReasonFlags | None,
               when: datetime = NOW - timedelta(hours=1)) -> None:
        self.revoked[(issued.ca.key_id, issued.serial)] = (when, reason)

    def issue(self, kind: str = SIGN, *, ca: CA | None = None, key: Any = None,
              serial: int | None = None, subject: x509.Name | None = None,
              issuer: x509.Name | None = None,
              not_before: datetime | None = None, not_after: datetime | None = None,
              aki: Any = _DEFAULT, with_ski: bool = True,
              usage: x509.KeyUsage | None | object = _DEFAULT, usage_critical: bool = True,
              basic_constraints: x509.BasicConstraints | None = None,
              policies: Sequence[str] | None | object = _DEFAULT,
              policies_critical: bool = False,
              attributes: dict[str, str] | None = None,
              san: list[tuple[str, bytes]] | None | object = _DEFAULT,
              san_critical: bool = False,
              extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
              signer: rsa.RSAPrivateKey | None = None,
              algorithm: hashes.HashAlgorithm | None = None,
              tbs_hook: Callable[[bytes], bytes] | None = None) -> Issued:
        """A card certificate per b3; every keyword breaks one property.

        ``aki``: default from the issuer key, None to omit, bytes to forge. ``san``: default the
        six attribute otherNames (sign) / none (auth), or a list of (oid, DER value).
        ``signer`` signs instead of the issuer key; ``algorithm``/``tbs_hook`` re-sign by hand.
        """
        ca = ca or self.ca_for(kind)
        key = key if key is not None else rsa_key(f"card-{kind}")
        serial = serial if serial is not None else secrets.randbits(63) | 1
        not_before = not_before or NOW - timedelta(days=30)
        not_after = not_after or jst_end_of_day(NOW + timedelta(days=5 * 365))
        builder = (x509.CertificateBuilder()
                   .subject_name(subject or ee_subject(kind))
                   .issuer_name(issuer or ca.cert.subject)
                   .public_key(key.public_key()).serial_number(serial)
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.IssuerAlternativeName([ALT_DIRNAME]), critical=False))
        if aki is _DEFAULT:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                critical=False)
        elif aki is not None:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None),
                                            critical=False)
        if with_ski:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if usage is _DEFAULT:
            usage = SIGN_USAGE if kind == SIGN else AUTH_USAGE
        if isinstance(usage, x509.KeyUsage):
            builder = builder.add_extension(usage, critical=usage_critical)
        if basic_constraints is not None:
            builder = builder.add_extension(basic_constraints, critical=True)
        if policies is _DEFAULT:
            policies = [SIGN_POLICY if kind == SIGN else AUTH_POLICY]
        if isinstance(policies, Sequence):
            builder = builder.add_extension(x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier(p), None) for p in policies]),
                critical=policies_critical)
        if san is _DEFAULT:
            san = (other_names({**DEFAULT_ATTRIBUTES, **(attributes or {})})
                   if kind == SIGN else None)
        if isinstance(san, list) and san:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.OtherName(ObjectIdentifier(oid), value) for oid, value in san]),
                critical=san_critical)
        purpose = "digital signature" if kind == SIGN else "user authentication"
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.DirectoryName(x509.Name([
                x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                   f"JPKI-TEST for {purpose}"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "CRL Distribution Points"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Tokyo-to"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Chiyoda-ku CRLDP")])),
                x509.UniformResourceIdentifier(
                    f"http://127.0.0.1:9/jpki-test/crl/{kind}/tokyo-to/chiyoda-ku.crl")],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier("http://127.0.0.1:9/jpki-test/ocsp"))]),
            critical=False)
        for extension, critical in extra:
            builder = builder.add_extension(extension, critical=critical)
        signing_key = signer or ca.key
        direct = algorithm if algorithm is not None and not isinstance(
            algorithm, hashes.SHA1) else hashes.SHA256()
        der = builder.sign(signing_key, direct).public_bytes(serialization.Encoding.DER)
        if tbs_hook is not None or isinstance(algorithm, hashes.SHA1):
            # cryptography no longer signs certificates with SHA-1: splice and sign by hand.
            der = resign(der, signing_key, tbs_hook=tbs_hook, algorithm=algorithm)
        self.issued.setdefault(ca.key_id, set()).add(serial)
        return Issued(der, key, ca)


# -- status: OCSP responder and CRL issuer ------------------------------------------------------

def ocsp_key_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """RFC 6960 CertID issuerKeyHash: hash of the subjectPublicKey BIT STRING value."""
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    digest = hashes.Hash(algorithm)
    digest.update(public.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.PKCS1))
    return digest.finalize()


def ocsp_name_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


def responder_cert(ca: CA, key: rsa.RSAPrivateKey, *, eku: bool = True,
                   signer: rsa.RSAPrivateKey | None = None,
                   not_after: datetime | None = None) -> x509.Certificate:
    """A delegated OCSP responder certificate issued by ``ca`` (RFC 6960 §4.2.2.2)."""
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                                        x509.NameAttribute(NameOID.COMMON_NAME,
                                                           "JPKI-TEST OCSP Responder")]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(secrets.randbits(63) | 1)
               .not_valid_before(NOW - timedelta(days=1))
               .not_valid_after(not_after or NOW + timedelta(days=30))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False)
               .add_extension(key_usage(digital_signature=True), critical=True))
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    return builder.sign(signer or ca.key, hashes.SHA256())


DELEGATES = ("authorised", "no_eku", "foreign", "other_generation", "forged", "expired")


@dataclass
class Responder:
    """A ``StatusSource`` that really parses OCSP requests and signs OCSP responses and CRLs.

    Fault knobs (all off by default): ``timeout``, ``try_later``, ``stale``, ``future``,
    ``no_next_update``, ``include_ca_cert``,
    ``wrong_signer``, ``delegate`` (one of DELEGATES), ``nonce`` ("echo", "omit", "wrong"),
    ``other_serial``, ``serves``, ``crl_stale``, ``crl_bad_signature``,
    ``crl_other_issuer``, ``crl_other_generation``, ``crl_extension``.
    """

    pki: Pki
    now: datetime = NOW
    timeout: bool = False
    try_later: bool = False
    stale: bool = False
    future: bool = False
    no_next_update: bool = False
    wrong_signer: bool = False
    delegate: str | None = None
    include_ca_cert: bool = False
    nonce: str = "echo"
    other_serial: bool = False
    crl_stale: bool = False
    crl_bad_signature: bool = False
    crl_other_issuer: bool = False
    crl_other_generation: bool = False
    crl_extension: tuple[x509.ExtensionType, bool] | None = None
    serves: frozenset[bytes] | None = None  # key ids of the CAs it answers for (None: all)
    requests: list[ocsp.OCSPRequest] = field(default_factory=list)
    crl_requests: list[Any] = field(default_factory=list)

    # -- OCSP --

    def ocsp(self, request_der: bytes) -> bytes:
        if self.timeout:
            raise TimeoutError("test responder switched to time out")
        request = ocsp.load_der_ocsp_request(request_der)
        self.requests.append(request)
        if self.try_later:
            return self._unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
        algorithm = request.hash_algorithm
        ca = next((c for c in self.pki.cas
                   if (self.serves is None or c.key_id in self.serves)
                   and ocsp_name_hash(c.cert, algorithm) == request.issuer_name_hash
                   and ocsp_key_hash(c.cert, algorithm) == request.issuer_key_hash), None)
        if ca is None:
            return self._unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        serial = request.serial_number + (1 if self.other_serial else 0)
        revoked = self.pki.revoked.get((ca.key_id, serial))
        if revoked is not None:
            status, revoked_at, reason = ocsp.OCSPCertStatus.REVOKED, revoked[0], revoked[1]
        elif serial in self.pki.issued.get(ca.key_id, set()):
            status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        else:
            status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
        this_update, next_update = self.now, self.now + timedelta(hours=1)
        if self.stale:
            this_update, next_update = self.now - timedelta(hours=2), self.now - timedelta(hours=1)
        if self.future:
            this_update = self.now + timedelta(minutes=10)
            next_update = self.now + timedelta(hours=2)
        next_update = None if self.no_next_update else next_update
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash, issuer_key_hash=request.issuer_key_hash,
            serial_number=serial, algorithm=algorithm, cert_status=status,
            this_update=this_update, next_update=next_update, revocation_time=revoked_at,
            revocation_reason=reason)
        nonce = self._nonce(request)
        if self.nonce == "wrong":
            nonce = secrets.token_bytes(16)
        if nonce is not None and self.nonce != "omit":
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        signer_cert, signer_key = ca.cert, ca.key
        if self.wrong_signer:
            signer_cert, signer_key = self.pki.rogue_sign.cert, self.pki.rogue_sign.key
        if self.delegate is not None:
            signer_cert, signer_key = self._delegate(ca), rsa_key("ocsp-responder")
            builder = builder.certificates([signer_cert])
        elif self.include_ca_cert:
            builder = builder.certificates([ca.cert])
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
        response = builder.sign(signer_key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)

    def _delegate(self, ca: CA) -> x509.Certificate:
        key = rsa_key("ocsp-responder")
        if self.delegate == "authorised":
            return responder_cert(ca, key)
        if self.delegate == "no_eku":
            return responder_cert(ca, key, eku=False)
        if self.delegate == "foreign":  # a valid responder, but of another CA
            return responder_cert(self.pki.foreign, key)
        if self.delegate == "other_generation":  # same DN, the other generation's key
            return responder_cert(self.pki.ca_for(ca.kind, 3 - ca.generation), key)
        if self.delegate == "forged":  # names the right CA, signed by the rogue key
            return responder_cert(ca, key, signer=self.pki.rogue_sign.key)
        if self.delegate == "expired":
            return responder_cert(ca, key, not_after=self.now - timedelta(minutes=5))
        raise AssertionError(self.delegate)

    @staticmethod
    def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
        try:
            return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            return None

    @staticmethod
    def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
            serialization.Encoding.DER)

    # -- CRL --

    def crl(self, anchor: Any) -> bytes:
        if self.timeout:
            raise TimeoutError("test CRL source switched to time out")
        self.crl_requests.append(anchor)
        ca = next(c for c in self.pki.cas if c.key_id == anchor.key_id)
        if self.crl_other_generation:
            ca = self.pki.ca_for(ca.kind, 2 if ca.generation == 1 else 1)
        entries_of = ca
        if self.crl_other_issuer:
            ca = self.pki.foreign
        last, next_ = self.now - timedelta(minutes=5), self.now + timedelta(hours=24)
        if self.crl_stale:
            last, next_ = self.now - timedelta(hours=25), self.now - timedelta(hours=1)
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(ca.cert.subject).last_update(last).next_update(next_)
                   .add_extension(x509.CRLNumber(7), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca.key.public_key()), critical=False))
        if self.crl_extension is not None:
            builder = builder.add_extension(*self.crl_extension)
        for (key_id, serial), (when, reason) in self.pki.revoked.items():
            if key_id != entries_of.key_id:
                continue
            entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                     .revocation_date(when))
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        key = self.pki.rogue_sign.key if self.crl_bad_signature else ca.key
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _protocol_check(responder: Responder) -> StatusSource:
    return responder  # mypy/readers: Responder satisfies authz.identity.status.StatusSource


# -- running the verifier -----------------------------------------------------------------------

def verify(pki: Pki, issued: Issued | None = None, *, kind: str = SIGN,
           cert_der: bytes | None = None, signature: bytes | None = None, tbs: bytes = TBS,
           trust: TrustConfig | None = None, source: StatusSource | None = None,
           now: datetime = NOW) -> VerifiedCard:
    """``verify_response`` with sensible defaults: the card signs ``tbs`` with its own key."""
    if cert_der is None:
        assert issued is not None
        cert_der = issued.der
    if signature is None:
        assert issued is not None
        signature = issued.sign(tbs)
    return verify_response(kind=kind, tbs=tbs, cert_der=cert_der, signature=signature,
                           trust=trust or pki.trust(), source=source or Responder(pki, now=now),
                           now=now)
