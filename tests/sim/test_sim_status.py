"""CRLs and the OCSP responder: signatures verify with the CA key; statuses; fault switches."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from sim_support import cert_of
from sim_support import sign_cert

from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.sim import lifecycle
from authz.sim.card import AUTH_CERT

T0 = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None = None,
                 algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def verify_ocsp(response: ocsp.OCSPResponse, ca: x509.Certificate) -> None:
    key = ca.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert response.signature_hash_algorithm is not None
    key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
               response.signature_hash_algorithm)


def ask(sim, cert, issuer, **kwargs):
    now = kwargs.pop("now", T0)
    return ocsp.load_der_ocsp_response(sim.ocsp_respond(ocsp_request(cert, issuer, **kwargs),
                                                        now=now))


# -- OCSP -----------------------------------------------------------------------------------------

def test_ocsp_good_with_nonce_signed_by_the_ca(sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    ca = sim.authority("auth", 1).cert
    response = ask(sim, cert, ca, nonce=b"n" * 16)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == cert.serial_number
    assert response.this_update_utc == T0
    assert response.next_update_utc == T0 + timedelta(hours=1)
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        ca.public_key()).digest
    assert response.responder_name is None
    nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value
    assert nonce.nonce == b"n" * 16
    verify_ocsp(response, ca)
    with pytest.raises(InvalidSignature):
        verify_ocsp(response, sim.authority("auth", 2).cert)


def test_ocsp_without_nonce_and_with_sha256_cert_ids(sim, issue):
    cert = sign_cert(issue())
    response = ask(sim, cert, sim.authority("sign", 1).cert, algorithm=hashes.SHA256())
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_class(x509.OCSPNonce)


@pytest.mark.parametrize(("reason", "expected"), [
    ("keyCompromise", x509.ReasonFlags.key_compromise),
    ("affiliationChanged", x509.ReasonFlags.affiliation_changed),
    ("superseded", x509.ReasonFlags.superseded),
    ("cessationOfOperation", x509.ReasonFlags.cessation_of_operation),
    ("certificateHold", x509.ReasonFlags.certificate_hold),
    ("cACompromise", x509.ReasonFlags.ca_compromise),
    ("unspecified", None),  # RFC 5280 §5.3.1: absent rather than unspecified
])
def test_ocsp_revoked_with_time_and_reason(sim, issue, reason, expected):
    card = issue()
    revoked_at = T0 - timedelta(hours=3)
    lifecycle.revoke(sim, card, "both", reason, now=revoked_at)
    for kind, cert in (("sign", sign_cert(card)), ("auth", cert_of(card, AUTH_CERT))):
        response = ask(sim, cert, sim.authority(kind, 1).cert)
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_time_utc == revoked_at
        assert response.revocation_reason == expected
        verify_ocsp(response, sim.authority(kind, 1).cert)


def test_ocsp_unknown_for_serials_that_ca_never_issued(sim, issue):
    ca = sim.authority("auth", 1)
    cert = cert_of(issue(), AUTH_CERT)
    stranger = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                .public_key(cert.public_key()).serial_number(cert.serial_number + 2)
                .not_valid_before(T0).not_valid_after(T0 + timedelta(days=1))
                .sign(sim.ca_key("auth", 1), hashes.SHA256()))
    response = ask(sim, stranger, ca.cert)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    verify_ocsp(response, ca.cert)
    # The same serial asked of the other generation (same DN, other key) is unknown too.
    response = ask(sim, cert, sim.authority("auth", 2).cert)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    verify_ocsp(response, sim.authority("auth", 2).cert)


def test_ocsp_second_generation(sim, issue):
    cert = cert_of(issue(generation=2), AUTH_CERT)
    response = ask(sim, cert, sim.authority("auth", 2).cert)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    verify_ocsp(response, sim.authority("auth", 2).cert)


def test_ocsp_refuses_foreign_issuers_and_garbage(sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    foreign_key = rsa.generate_private_key(65537, 2048)
    foreign = (x509.CertificateBuilder().subject_name(cert.issuer).issuer_name(cert.issuer)
               .public_key(foreign_key.public_key()).serial_number(7)
               .not_valid_before(T0).not_valid_after(T0 + timedelta(days=1))
               .sign(foreign_key, hashes.SHA256()))
    assert ask(sim, cert, foreign).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    garbage = ocsp.load_der_ocsp_response(sim.ocsp_respond(b"\x30\x03\x02\x01\x00"))
    assert garbage.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# -- OCSP faults ----------------------------------------------------------------------------------

def test_fault_timeout_raises_timeout_error(sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    sim.set_fault("timeout")
    with pytest.raises(TimeoutError):
        sim.ocsp_respond(ocsp_request(cert, sim.authority("auth", 1).cert))


def test_fault_try_later(sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    sim.set_fault("try_later")
    assert ask(sim, cert, sim.authority("auth", 1).cert).response_status is (
        ocsp.OCSPResponseStatus.TRY_LATER)


def test_fault_stale(sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    sim.set_fault("stale")
    response = ask(sim, cert, sim.authority("auth", 1).cert)
    assert response.next_update_utc is not None and response.next_update_utc < T0
    verify_ocsp(response, sim.authority("auth", 1).cert)  # still properly signed


def test_fault_wrong_signer(sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    sim.set_fault("wrong_signer")
    ca = sim.authority("auth", 1).cert
    response = ask(sim, cert, ca)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.responder_name == ca.subject  # it claims to be the CA ...
    with pytest.raises(InvalidSignature):
        verify_ocsp(response, ca)  # ... but the CA's key did not sign it
    [impostor] = response.certificates
    with pytest.raises(InvalidSignature):
        impostor.verify_directly_issued_by(ca)


def test_faults_set_and_clear(sim):
    assert sim.faults() == frozenset()
    sim.set_fault("stale")
    sim.set_fault("crl_stale")
    assert sim.clear_faults("stale") == {"crl_stale"}
    assert sim.clear_faults() == frozenset()
    with pytest.raises(InvalidInput, match="unknown fault"):
        sim.set_fault("slow")


# -- CRLs -----------------------------------------------------------------------------------------

def load_crl(data: bytes) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(data)


def test_full_crl_lists_revoked_certs_with_reasons(sim, issue):
    lost, moved, fine = issue(), issue(), issue()
    moved_serial = sign_cert(moved).serial_number
    lifecycle.revoke(sim, lost, "both", "keyCompromise", now=T0 - timedelta(hours=1))
    lifecycle.move(sim, moved, address="大阪府大阪市北区1", now=T0 - timedelta(minutes=5))
    ca = sim.authority("sign", 1).cert
    crl = load_crl(sim.crl("sign", 1, now=T0))
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.subject
    assert crl.last_update_utc == T0 and crl.next_update_utc == T0 + timedelta(hours=24)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(
        ca.public_key()).digest
    entry = crl.get_revoked_certificate_by_serial_number(sign_cert(lost).serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == T0 - timedelta(hours=1)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise)
    old_moved = crl.get_revoked_certificate_by_serial_number(moved_serial)
    assert old_moved is not None
    assert old_moved.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.affiliation_changed)
    assert crl.get_revoked_certificate_by_serial_number(sign_cert(fine).serial_number) is None
    assert crl.get_revoked_certificate_by_serial_number(sign_cert(moved).serial_number) is None
    auth = load_crl(sim.crl("auth", 1, now=T0))
    assert auth.get_revoked_certificate_by_serial_number(
        cert_of(lost, AUTH_CERT).serial_number) is not None
    assert auth.get_revoked_certificate_by_serial_number(
        cert_of(moved, AUTH_CERT).serial_number) is None  # a move keeps the auth cert


def test_crl_numbers_increase(sim):
    numbers = [load_crl(sim.crl("sign", 1)).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number for _ in range(3)]
    assert numbers == sorted(set(numbers))


def test_crl_drops_entries_after_not_after(sim, issue):
    card = issue()
    lifecycle.revoke(sim, card, "auth", "keyCompromise")
    serial = cert_of(card, AUTH_CERT).serial_number
    after = cert_of(card, AUTH_CERT).not_valid_after_utc + timedelta(seconds=1)
    assert load_crl(sim.crl("auth", 1)).get_revoked_certificate_by_serial_number(serial)
    assert load_crl(sim.crl("auth", 1, now=after)).get_revoked_certificate_by_serial_number(
        serial) is None


def test_dp_crl_is_per_municipality(sim, issue):
    tokyo, osaka = issue(), issue(address="大阪府大阪市北区1")
    lifecycle.revoke(sim, tokyo, "sign", "keyCompromise")
    lifecycle.revoke(sim, osaka, "sign", "keyCompromise")
    ca = sim.authority("sign", 1).cert
    crl = load_crl(sim.dp_crl("sign", "Tokyo-to", "Chiyoda-ku"))
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert [e.serial_number for e in crl] == [sign_cert(tokyo).serial_number]
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.only_contains_user_certs
    dp = sign_cert(tokyo).extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert idp.value.full_name is not None and idp.value.full_name[0] in (dp[0].full_name or [])
    osaka_crl = load_crl(sim.dp_crl("sign", "Osaka-fu", "Osaka-shi"))
    assert [e.serial_number for e in osaka_crl] == [sign_cert(osaka).serial_number]
    with pytest.raises(NotFound):
        sim.dp_crl("sign", "Hokkaido", "Sapporo-shi")
    with pytest.raises(NotFound):
        sim.dp_crl("sign", "Tokyo-to", "Chiyoda-ku", generation=2)  # nothing issued from G2


def test_arl_is_empty_and_signed(sim):
    for kind in ("sign", "auth"):
        for generation in (1, 2):
            ca = sim.authority(kind, generation).cert
            arl = load_crl(sim.arl(kind, generation))
            assert len(arl) == 0 and arl.issuer == ca.subject
            assert arl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]


def test_fault_crl_stale(sim):
    sim.set_fault("crl_stale")
    crl = load_crl(sim.crl("sign", 1, now=T0))
    assert crl.next_update_utc is not None and crl.next_update_utc < T0
    assert crl.is_signature_valid(sim.authority("sign", 1).cert.public_key())  # type: ignore[arg-type]


def test_fault_crl_bad_signature(sim, issue):
    issue()
    sim.set_fault("crl_bad_signature")
    for data in (sim.crl("sign", 1), sim.dp_crl("sign", "Tokyo-to", "Chiyoda-ku")):
        crl = load_crl(data)
        assert crl.issuer == sim.authority("sign", 1).cert.subject
        assert not crl.is_signature_valid(sim.authority("sign", 1).cert.public_key())  # type: ignore[arg-type]


def test_crl_of_unknown_ca(sim):
    with pytest.raises(NotFound):
        sim.crl("sign", 3)
