"""Status services of JPKI-SIM: CRLs per CA and per municipality, and the OCSP responder (b7)."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from authz.errors import NotFound
from authz.sim import profiles
from authz.sim.profiles import Kind

if TYPE_CHECKING:
    from authz.sim.authority import Authority
    from authz.sim.authority import SimAuthority

CRL_LIFETIME = timedelta(hours=24)  # a5: JPKI publishes CRLs daily
OCSP_LIFETIME = timedelta(hours=1)  # b7
OCSP_HASHES: tuple[type[hashes.HashAlgorithm], ...] = (
    hashes.SHA1, hashes.SHA256, hashes.SHA384, hashes.SHA512)


class SimTimeout(TimeoutError):
    """The ``timeout`` fault: the responder does not answer in time."""


# -- OCSP ---------------------------------------------------------------------------------------

def ocsp_respond(sim: SimAuthority, request_der: bytes, now: datetime) -> bytes:
    """b7: good / revoked(time, reason) / unknown, signed by the issuing CA, nonce echoed."""
    faults = sim.faults()
    if "timeout" in faults:
        raise SimTimeout("the JPKI-SIM OCSP responder is switched to time out")
    if "try_later" in faults:
        return _unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        nonce = _nonce(request)
    except (ValueError, TypeError, NotImplementedError, x509.UnsupportedGeneralNameType):
        # One CertID per request only (cryptography parses no more); anything else is malformed.
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not isinstance(algorithm, OCSP_HASHES):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    ca = _issuer_of(sim, request, algorithm)
    if ca is None:
        # RFC 6960 §2.3: not a CA this responder answers for.
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    record = sim.record(ca.kind, request.serial_number)
    if record is None or record.generation != ca.generation:
        cert_status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    elif record.revoked_reason is not None:
        cert_status, revoked_at = ocsp.OCSPCertStatus.REVOKED, record.revoked_at
        reason = _reason_or_none(record.revoked_reason)
    else:
        cert_status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
    this_update, next_update = now, now + OCSP_LIFETIME
    if "stale" in faults:
        this_update, next_update = now - 2 * OCSP_LIFETIME, now - OCSP_LIFETIME
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(
                   issuer_name_hash=request.issuer_name_hash,
                   issuer_key_hash=request.issuer_key_hash,
                   serial_number=request.serial_number, algorithm=algorithm,
                   cert_status=cert_status, this_update=this_update, next_update=next_update,
                   revocation_time=revoked_at, revocation_reason=reason)
               )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    if "wrong_signer" in faults:
        # A look-alike responder: the CA's DN on a certificate of another key, sent along
        # as if it were a delegated responder. The CA did not issue it; a verifier must refuse.
        rogue = sim.rogue_certificate(ca.kind)
        builder = (builder.responder_id(ocsp.OCSPResponderEncoding.NAME, rogue)
                   .certificates([rogue]))
        key = sim.rogue_key()
    else:
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca.cert)
        key = sim.ca_key(ca.kind, ca.generation)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _issuer_of(sim: SimAuthority, request: ocsp.OCSPRequest,
               algorithm: hashes.HashAlgorithm) -> Authority | None:
    # Generations share a DN (b2), so the key hash is what tells them apart.
    for ca in sim.authorities():
        if (ca.name_hash(algorithm) == request.issuer_name_hash
                and ca.key_hash(algorithm) == request.issuer_key_hash):
            return ca
    return None


def _reason_or_none(name: str) -> x509.ReasonFlags | None:
    # RFC 5280 §5.3.1: the reason code SHOULD be absent rather than unspecified.
    flag = x509.ReasonFlags(name)
    return None if flag is x509.ReasonFlags.unspecified else flag


# -- CRLs ---------------------------------------------------------------------------------------

def full_crl(sim: SimAuthority, kind: Kind, generation: int, now: datetime) -> bytes:
    """Every revoked, unexpired certificate of one CA generation."""
    ca = sim.authority(kind, generation)
    return _crl(sim, ca, sim.revoked_entries(kind, generation, now), now, None)


def dp_crl(sim: SimAuthority, kind: Kind, generation: int, prefecture: str, city: str,
           now: datetime) -> bytes:
    """a4: the partitioned CRL of one municipality; NotFound for a DP nobody was issued under."""
    ca = sim.authority(kind, generation)
    if not sim.has_dp(kind, generation, prefecture, city):
        raise NotFound("no such CRL distribution point")
    place = profiles.Place(prefecture, 0, city)
    # RFC 5280 §5.2.5: a CRL that covers only part of the certificates says which, critically.
    idp = x509.IssuingDistributionPoint(
        full_name=[x509.DirectoryName(profiles.dp_name(kind, place))], relative_name=None,
        only_contains_user_certs=True, only_contains_ca_certs=False, only_some_reasons=None,
        indirect_crl=False, only_contains_attribute_certs=False)
    entries = sim.revoked_entries(kind, generation, now, (prefecture, city))
    return _crl(sim, ca, entries, now, idp)


def arl(sim: SimAuthority, kind: Kind, generation: int, now: datetime) -> bytes:
    """b7: the authority revocation list at the CA's own DP; no CA is ever revoked here."""
    ca = sim.authority(kind, generation)
    idp = x509.IssuingDistributionPoint(
        full_name=[x509.DirectoryName(ca.cert.subject)], relative_name=None,
        only_contains_user_certs=False, only_contains_ca_certs=True, only_some_reasons=None,
        indirect_crl=False, only_contains_attribute_certs=False)
    return _crl(sim, ca, [], now, idp)


def _crl(sim: SimAuthority, ca: Authority, entries: list[tuple[int, str, datetime]],
         now: datetime, idp: x509.IssuingDistributionPoint | None) -> bytes:
    faults = sim.faults()
    last_update, next_update = now, now + CRL_LIFETIME
    if "crl_stale" in faults:
        last_update, next_update = now - 2 * CRL_LIFETIME, now - CRL_LIFETIME
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject)
               .last_update(last_update).next_update(next_update)
               .add_extension(x509.CRLNumber(sim.next_crl_number(ca.kind, ca.generation)),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                              critical=False))
    if idp is not None:
        builder = builder.add_extension(idp, critical=True)
    for serial, reason, revoked_at in entries:
        entry = (x509.RevokedCertificateBuilder()
                 .serial_number(serial).revocation_date(revoked_at))
        flag = _reason_or_none(reason)
        if flag is not None:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    # crl_bad_signature: a well-formed CRL whose signature the CA key does not verify.
    key = sim.rogue_key() if "crl_bad_signature" in faults else sim.ca_key(ca.kind, ca.generation)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
