"""Revocation status through a pluggable source; every answer is signature-checked here.

The source only moves bytes (in-process for the mounted simulator, HTTP for a responder or a
platform operator). No soft-fail: anything but a fresh, correctly signed "good" refuses.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.identity.errors import CardRejected
from authz.identity.errors import StatusUnavailable
from authz.identity.trust import Anchor

NONCE_BYTES = 16


class StatusSource(Protocol):
    """Moves status bytes; never trusted: the caller verifies what comes back."""

    def ocsp(self, request_der: bytes) -> bytes: ...

    def crl(self, anchor: Anchor) -> bytes: ...


@dataclass(frozen=True)
class Status:
    good: bool
    method: str
    reason: str | None = None  # CRLReason name when revoked


class HttpOcspSource:
    """OCSP over HTTP (RFC 6960 §A.1 POST) to a configured responder, never a URL from a cert."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url
        self.timeout = timeout

    def ocsp(self, request_der: bytes) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - configured http(s) URL
            self.url, data=request_der, method="POST",
            headers={"Content-Type": "application/ocsp-request"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return bytes(response.read(65536))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise StatusUnavailable(f"ocsp_unreachable:{type(exc).__name__}") from None

    def crl(self, anchor: Anchor) -> bytes:
        raise StatusUnavailable("crl_not_configured")


def _issuer_hashes(anchor: Anchor) -> tuple[bytes, bytes]:
    name_hash = hashlib.sha256(anchor.certificate.subject.public_bytes()).digest()
    key = anchor.certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CardRejected("anchor_not_rsa")
    key_hash = hashlib.sha256(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)).digest()
    return name_hash, key_hash


def check(serial: int, anchor: Anchor, source: StatusSource, method: str, now: datetime,
          skew: timedelta) -> Status:
    """Status of ``serial`` issued by ``anchor``; CardRejected on anything odd."""
    try:
        if method == "crl":
            return _check_crl(serial, anchor, source.crl(anchor), now, skew)
        return _check_ocsp(serial, anchor, source, now, skew)
    except StatusUnavailable as unavailable:
        raise CardRejected(f"status_unavailable:{unavailable.reason}") from None
    except TimeoutError:
        raise CardRejected("status_unavailable:timeout") from None


def _check_ocsp(serial: int, anchor: Anchor, source: StatusSource, now: datetime,
                skew: timedelta) -> Status:
    name_hash, key_hash = _issuer_hashes(anchor)
    nonce = os.urandom(NONCE_BYTES)
    request = (ocsp.OCSPRequestBuilder()
               .add_certificate_by_hash(name_hash, key_hash, serial, hashes.SHA256())
               .add_extension(x509.OCSPNonce(nonce), critical=False).build())
    raw = source.ocsp(request.public_bytes(serialization.Encoding.DER))
    try:
        response = ocsp.load_der_ocsp_response(raw)
    except ValueError:
        raise CardRejected("ocsp_malformed") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CardRejected(f"ocsp_{response.response_status.name.lower()}")
    _verify_ocsp_signature(response, anchor, now)
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        echoed = b""
    if echoed != nonce:
        raise CardRejected("ocsp_nonce_mismatch")  # RFC 8954: a replayed or foreign response
    single = next((r for r in response.responses if r.serial_number == serial
                   and r.issuer_key_hash == key_hash and r.issuer_name_hash == name_hash), None)
    if single is None:
        raise CardRejected("ocsp_wrong_certificate")
    if single.this_update_utc > now + skew:
        raise CardRejected("ocsp_not_yet_valid")
    if single.next_update_utc is None or single.next_update_utc < now - skew:
        raise CardRejected("ocsp_stale")
    if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
        return Status(True, "ocsp")
    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason.name if single.revocation_reason else "unspecified"
        return Status(False, "ocsp", reason)
    raise CardRejected("ocsp_unknown")


def _verify_ocsp_signature(response: ocsp.OCSPResponse, anchor: Anchor, now: datetime) -> None:
    """Signed by the issuing CA itself, or by a responder the CA delegated (RFC 6960 §4.2.2.2)."""
    signer = anchor.certificate
    # RFC 6960 §4.2.1 lets a CA include its own certificate; that is not a delegation.
    included = [c for c in response.certificates if c != anchor.certificate]
    if included:
        delegate = included[0]
        try:
            delegate.verify_directly_issued_by(anchor.certificate)
            usage = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
            raise CardRejected("ocsp_bad_signer") from None
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usage or not (
                delegate.not_valid_before_utc <= now <= delegate.not_valid_after_utc):
            raise CardRejected("ocsp_bad_signer")
        signer = delegate
    key = signer.public_key()
    try:
        algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm:  # Fix (tests/identity): an unknown OID escaped as a 500
        raise CardRejected("ocsp_bad_signature") from None
    if not isinstance(key, rsa.RSAPublicKey) or not isinstance(algorithm, hashes.SHA256):
        raise CardRejected("ocsp_bad_signature")
    try:
        key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                   algorithm)
    except InvalidSignature:
        raise CardRejected("ocsp_bad_signature") from None


def _check_crl(serial: int, anchor: Anchor, raw: bytes, now: datetime,
               skew: timedelta) -> Status:
    try:
        crl = x509.load_der_x509_crl(raw)
        crl.issuer  # noqa: B018 - Fix (tests/identity): parsed lazily; a bad name escaped
        critical = [e.oid for e in crl.extensions if e.critical]
    except (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType):  # Fix: none of these but ValueError was caught
        raise CardRejected("crl_malformed") from None
    if critical:
        # Fix (tests/identity): RFC 5280 §5.2 - a CRL with a critical extension we do not
        # process must not be used. An IssuingDistributionPoint (a partitioned, per-city CRL)
        # or a delta CRL does not list every revoked certificate of the CA, so reading it as
        # the CA's full CRL said "good" for certificates revoked outside its scope.
        raise CardRejected("crl_unsupported_critical_extension")
    key = anchor.certificate.public_key()
    if crl.issuer != anchor.certificate.subject or not isinstance(key, rsa.RSAPublicKey) \
            or not crl.is_signature_valid(key):
        raise CardRejected("crl_bad_signature")
    if crl.last_update_utc > now + skew:
        raise CardRejected("crl_not_yet_valid")
    if crl.next_update_utc is None or crl.next_update_utc < now - skew:
        raise CardRejected("crl_stale")
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    if entry is None:
        return Status(True, "crl")
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        reason = "unspecified"
    return Status(False, "crl", reason)
