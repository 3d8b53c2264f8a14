"""Verify one card response, in the order of reference b6, failing closed at the first doubt.

Pure: certificates, a signature, the bytes that were signed and a status source in; a
:class:`VerifiedCard` out, or :class:`CardRejected` with a precise reason code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.oid import SignatureAlgorithmOID

from authz.identity import attributes
from authz.identity.errors import CardRejected
from authz.identity.status import Status
from authz.identity.status import StatusSource
from authz.identity.status import check
from authz.identity.trust import AUTH
from authz.identity.trust import SIGN
from authz.identity.trust import Anchor
from authz.identity.trust import TrustConfig

RSA_BITS = 2048
RSA_EXPONENT = 65537
ALLOWED_CRITICAL = frozenset({ExtensionOID.KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS,
                              ExtensionOID.CERTIFICATE_POLICIES})
KEY_USAGE = {SIGN: frozenset({"digital_signature", "content_commitment"}),
             AUTH: frozenset({"digital_signature"})}
KEY_USAGE_FLAGS = ("digital_signature", "content_commitment", "key_encipherment",
                   "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")


@dataclass(frozen=True)
class VerifiedCard:
    """A verified certificate. Hold it only for the request: raw certificates are never stored."""

    kind: str
    certificate: x509.Certificate
    anchor: Anchor
    policy: str
    status: Status
    attributes: attributes.Attributes | None


def verify_response(*, kind: str, tbs: bytes, cert_der: bytes, signature: bytes,
                    trust: TrustConfig, source: StatusSource, now: datetime) -> VerifiedCard:
    """b6 steps 2-8 for a certificate of ``kind`` (sign for proofing, auth for login)."""
    cert = _parse(cert_der, trust)
    anchor = _path(cert, kind, trust, now)
    _validity(cert, trust, now)
    policy = _profile(cert, kind, trust)
    details = attributes.parse(cert) if kind == SIGN else None
    _possession(cert, tbs, signature)
    status = check(cert.serial_number, anchor, source, trust.status_method, now, trust.clock_skew)
    if not status.good:
        raise CardRejected(f"revoked:{status.reason}")
    return VerifiedCard(kind, cert, anchor, policy, status, details)


def _parse(cert_der: bytes, trust: TrustConfig) -> x509.Certificate:
    if not cert_der or len(cert_der) > trust.max_cert_bytes:
        raise CardRejected("cert_size")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        version = cert.version
        # Fix (tests/identity): extensions are parsed lazily, and the AKI lookup in _path runs
        # before any signature check, so unsigned bytes with duplicate, undecodable or
        # unsupported extensions escaped as DuplicateExtension / UnsupportedGeneralNameType
        # (a 500) or were logged as "cert_no_authority_key_id". Parse them all here.
        cert.extensions  # noqa: B018 - forces parsing
        cert.issuer, cert.subject  # noqa: B018 - same: _path compared them unguarded
    except x509.InvalidVersion:  # Fix: a version other than v1/v3 is not a ValueError
        raise CardRejected("cert_not_v3") from None
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CardRejected("cert_malformed") from None
    if version is not x509.Version.v3:
        raise CardRejected("cert_not_v3")
    # Fix (tests/identity): the signature BIT STRING must have no unused bits. cryptography
    # accepts "unused bits = 1" (last bit zero) and still verifies all 256 octets, so a
    # one-byte edit of an issued certificate was accepted as the same certificate.
    if cert_der[-len(cert.signature) - 1] != 0:
        raise CardRejected("cert_malformed")
    return cert


def _path(cert: x509.Certificate, kind: str, trust: TrustConfig, now: datetime) -> Anchor:
    """Step 3-4: the anchor is chosen by key identifier among this purpose's anchors only."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except (x509.ExtensionNotFound, ValueError):
        raise CardRejected("cert_no_authority_key_id") from None
    matches = [a for a in trust.anchors_for(kind)
               if a.key_id == aki.key_identifier and a.certificate.subject == cert.issuer]
    if not matches:
        other = SIGN if kind == AUTH else AUTH
        if any(a.key_id == aki.key_identifier for a in trust.anchors_for(other)):
            raise CardRejected("wrong_certificate_kind")
        raise CardRejected("unknown_issuer")
    anchor = matches[0]
    try:
        cert.verify_directly_issued_by(anchor.certificate)
    except (InvalidSignature, ValueError, TypeError):
        # Fix (tests/identity): cryptography refuses to verify SHA-1 and other algorithms it
        # does not support (ValueError), so step 6's algorithm check was unreachable for them
        # and the audit log said "bad_issuer_signature"; name the real cause.
        if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSA_WITH_SHA256:
            raise CardRejected("weak_signature_algorithm") from None
        raise CardRejected("bad_issuer_signature") from None
    root = anchor.certificate
    if not root.not_valid_before_utc <= now <= root.not_valid_after_utc:
        raise CardRejected("anchor_not_valid_now")
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CardRejected("anchor_not_ca") from None
    if not constraints.ca or not usage.key_cert_sign:
        raise CardRejected("anchor_not_ca")
    return anchor


def _validity(cert: x509.Certificate, trust: TrustConfig, now: datetime) -> None:
    if now + trust.clock_skew < cert.not_valid_before_utc:
        raise CardRejected("cert_not_yet_valid")
    if now - trust.clock_skew > cert.not_valid_after_utc:
        raise CardRejected("cert_expired")


def _profile(cert: x509.Certificate, kind: str, trust: TrustConfig) -> str:
    """Step 6: algorithm, key, usage, policy and extensions as the JPKI profiles have them."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSA_WITH_SHA256:
        raise CardRejected("weak_signature_algorithm")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < RSA_BITS \
            or key.public_numbers().e != RSA_EXPONENT:
        raise CardRejected("bad_key")
    try:
        usage_ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        raise CardRejected("bad_key_usage") from None
    usage = usage_ext.value
    present = {flag for flag in KEY_USAGE_FLAGS if getattr(usage, flag)}
    if not usage_ext.critical or present != KEY_USAGE[kind]:
        raise CardRejected("bad_key_usage")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise CardRejected("cert_is_ca")
    except x509.ExtensionNotFound:
        pass
    for extension in cert.extensions:
        if extension.critical and extension.oid not in ALLOWED_CRITICAL:
            raise CardRejected("unknown_critical_extension")
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        raise CardRejected("policy_not_allowed") from None
    allowed = [p.policy_identifier.dotted_string for p in policies
               if p.policy_identifier.dotted_string in trust.policies[kind]]
    if not allowed:
        raise CardRejected("policy_not_allowed")
    if kind == AUTH and attributes.has_attributes(cert):
        raise CardRejected("auth_cert_has_attributes")
    return str(allowed[0])


def _possession(cert: x509.Certificate, tbs: bytes, signature: bytes) -> None:
    """Step 7: the card signed exactly these bytes (SHA-256, PKCS#1 v1.5) with this key."""
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or len(signature) != key.key_size // 8:
        raise CardRejected("bad_signature")
    try:
        key.verify(signature, tbs, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise CardRejected("bad_signature") from None
