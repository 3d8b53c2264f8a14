"""b6 step 8: revocation via OCSP and CRL, signed by an independent test responder (``testpki``).

The responder really parses the verifier's OCSP request and signs real responses and CRLs;
its knobs produce each fault. No soft-fail: every fault must end in ``CardRejected``.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from testpki import NOW
from testpki import Issued
from testpki import Pki
from testpki import Responder
from testpki import der_children
from testpki import der_tlv
from testpki import ocsp_key_hash
from testpki import ocsp_name_hash
from testpki import verify

from authz.identity.errors import CardRejected
from authz.identity.errors import StatusUnavailable
from authz.identity.status import NONCE_BYTES
from authz.identity.status import Status
from authz.identity.status import StatusSource
from authz.identity.status import check
from authz.identity.trust import AUTH
from authz.identity.trust import SIGN
from authz.identity.trust import Anchor

REASONS = list(x509.ReasonFlags)
PARSE_WARNINGS = (
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning",
    "ignore:Attribute's length must be:UserWarning",
)


@pytest.fixture
def pki() -> Pki:
    return Pki()


def rejected(reason: str, pki: Pki, issued: Issued, **kwargs: Any) -> None:
    with pytest.raises(CardRejected) as info:
        verify(pki, issued, kind=issued.ca.kind, **kwargs)
    assert info.value.reason == reason


# -- the request the verifier sends -------------------------------------------------------------

@pytest.mark.parametrize("kind", [SIGN, AUTH])
def test_ocsp_request_names_the_certificate_and_carries_a_fresh_nonce(pki: Pki,
                                                                      kind: str) -> None:
    responder = Responder(pki)
    issued = pki.issue(kind)
    for _ in range(2):
        assert verify(pki, issued, kind=kind, source=responder).status == Status(True, "ocsp")
    first, second = responder.requests
    for request in (first, second):
        assert request.serial_number == issued.serial
        assert isinstance(request.hash_algorithm, hashes.SHA256)
        assert request.issuer_name_hash == ocsp_name_hash(issued.ca.cert, hashes.SHA256())
        assert request.issuer_key_hash == ocsp_key_hash(issued.ca.cert, hashes.SHA256())
        assert len(Responder._nonce(request) or b"") == NONCE_BYTES
    assert Responder._nonce(first) != Responder._nonce(second)
    assert not responder.crl_requests


# -- revoked, each reason -----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["ocsp", "crl"])
@pytest.mark.parametrize("kind", [SIGN, AUTH])
@pytest.mark.parametrize("reason", [*REASONS, None],
                         ids=[*[r.name for r in REASONS], "no-reason-code"])
def test_revoked_for_each_reason(pki: Pki, method: str, kind: str,
                                 reason: x509.ReasonFlags | None) -> None:
    issued = pki.issue(kind)
    pki.revoke(issued, reason)
    name = reason.name if reason is not None else "unspecified"
    rejected(f"revoked:{name}", pki, issued, trust=pki.trust(status_method=method))


@pytest.mark.parametrize("method", ["ocsp", "crl"])
def test_revocation_is_per_certificate_and_per_ca_generation(pki: Pki, method: str) -> None:
    trust = pki.trust(pki.sign_g1, pki.sign_g2, pki.auth_g1, status_method=method)
    revoked = pki.issue(SIGN)
    pki.revoke(revoked, x509.ReasonFlags.affiliation_changed)
    assert verify(pki, pki.issue(SIGN), trust=trust).status.good  # a sibling is unaffected
    # The same serial under the other generation (same DN, other key) is another certificate.
    twin = pki.issue(SIGN, ca=pki.sign_g2, serial=revoked.serial)
    card = verify(pki, twin, trust=trust)
    assert card.status.good and card.anchor.generation == 2
    pki.revoke(twin, x509.ReasonFlags.superseded)
    rejected("revoked:superseded", pki, twin, trust=trust)


@pytest.mark.parametrize("method", ["ocsp", "crl"])
def test_move_revokes_the_sign_certificate_only(pki: Pki, method: str) -> None:
    """a5: a change of the 4 attributes revokes the sign cert; the auth cert stays valid."""
    trust = pki.trust(status_method=method)
    sign, auth = pki.issue(SIGN), pki.issue(AUTH)
    pki.revoke(sign, x509.ReasonFlags.affiliation_changed)
    rejected("revoked:affiliation_changed", pki, sign, trust=trust)
    assert verify(pki, auth, kind=AUTH, trust=trust).status.good


# -- OCSP faults --------------------------------------------------------------------------------

OCSP_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("timeout", {"timeout": True}, "status_unavailable:timeout"),
    ("try-later", {"try_later": True}, "ocsp_try_later"),
    ("stale", {"stale": True}, "ocsp_stale"),
    ("this-update-in-future", {"future": True}, "ocsp_not_yet_valid"),
    ("no-next-update", {"no_next_update": True}, "ocsp_stale"),
    ("wrong-signer", {"wrong_signer": True}, "ocsp_bad_signature"),
    ("delegated-responder-with-ocsp-signing", {"delegate": "authorised"}, None),
    ("delegated-responder-without-eku", {"delegate": "no_eku"}, "ocsp_bad_signer"),
    ("delegated-responder-of-another-ca", {"delegate": "foreign"}, "ocsp_bad_signer"),
    ("delegated-responder-of-the-other-generation", {"delegate": "other_generation"},
     "ocsp_bad_signer"),
    ("delegated-responder-forged", {"delegate": "forged"}, "ocsp_bad_signer"),
    ("delegated-responder-expired", {"delegate": "expired"}, "ocsp_bad_signer"),
    ("nonce-omitted", {"nonce": "omit"}, "ocsp_nonce_mismatch"),
    ("nonce-wrong", {"nonce": "wrong"}, "ocsp_nonce_mismatch"),
    ("response-for-another-serial", {"other_serial": True}, "ocsp_wrong_certificate"),
    ("this-update-ahead-within-skew", {"now": NOW + timedelta(seconds=50)}, None),
    ("next-update-passed-within-skew", {"now": NOW - timedelta(hours=1, seconds=50)}, None),
    ("this-update-ahead-beyond-skew", {"now": NOW + timedelta(seconds=70)},
     "ocsp_not_yet_valid"),
    ("next-update-passed-beyond-skew", {"now": NOW - timedelta(hours=1, seconds=70)},
     "ocsp_stale"),
]


@pytest.mark.parametrize("kind", [SIGN, AUTH])
@pytest.mark.parametrize(("knobs", "reason"), [(c[1], c[2]) for c in OCSP_CASES],
                         ids=[c[0] for c in OCSP_CASES])
def test_ocsp_faults(pki: Pki, kind: str, knobs: dict[str, Any], reason: str | None) -> None:
    responder = Responder(pki, **knobs)
    issued = pki.issue(kind)
    if reason is None:
        assert verify(pki, issued, kind=kind, source=responder).status == Status(True, "ocsp")
    else:
        rejected(reason, pki, issued, source=responder)
    assert not responder.crl_requests  # no fallback to CRL (fail closed)


def test_ocsp_unknown_serial(pki: Pki) -> None:
    issued = pki.issue(SIGN)
    pki.issued[issued.ca.key_id].discard(issued.serial)
    rejected("ocsp_unknown", pki, issued)


def test_delegated_responder_reports_revocation(pki: Pki) -> None:
    issued = pki.issue(SIGN)
    pki.revoke(issued, x509.ReasonFlags.key_compromise)
    rejected("revoked:key_compromise", pki, issued, source=Responder(pki, delegate="authorised"))


def test_responder_that_does_not_serve_the_ca(pki: Pki) -> None:
    responder = Responder(pki, serves=frozenset({pki.sign_g1.key_id}))
    issued = pki.issue(SIGN, ca=pki.sign_g2)  # same DN as G1: only the key hash differs
    rejected("ocsp_unauthorized", pki, issued, source=responder,
             trust=pki.trust(pki.sign_g1, pki.sign_g2, pki.auth_g1))


class Fixed:
    """A status source answering fixed bytes, or raising."""

    def __init__(self, ocsp_answer: bytes = b"", crl_answer: bytes = b"",
                 error: Exception | None = None) -> None:
        self.ocsp_answer, self.crl_answer, self.error = ocsp_answer, crl_answer, error

    def ocsp(self, request_der: bytes) -> bytes:
        if self.error is not None:
            raise self.error
        return self.ocsp_answer

    def crl(self, anchor: Anchor) -> bytes:
        if self.error is not None:
            raise self.error
        return self.crl_answer


class Editing:
    """Passes the real responder's answer through ``edit`` (no re-signing)."""

    def __init__(self, inner: Responder, edit: Any) -> None:
        self.inner, self.edit = inner, edit

    def ocsp(self, request_der: bytes) -> bytes:
        return bytes(self.edit(self.inner.ocsp(request_der)))

    def crl(self, anchor: Anchor) -> bytes:
        return bytes(self.edit(self.inner.crl(anchor)))


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)


@pytest.mark.parametrize(("source", "reason"), [
    (Fixed(b""), "ocsp_malformed"),
    (Fixed(b"\x30\x03\x0a\x01\x00"), "ocsp_malformed"),
    (Fixed(b"not an ocsp response"), "ocsp_malformed"),
    (Fixed(_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)), "ocsp_malformed_request"),
    (Fixed(_unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)), "ocsp_internal_error"),
    (Fixed(_unsuccessful(ocsp.OCSPResponseStatus.SIG_REQUIRED)), "ocsp_sig_required"),
    (Fixed(_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)), "ocsp_unauthorized"),
    (Fixed(error=StatusUnavailable("ocsp_unreachable:URLError")),
     "status_unavailable:ocsp_unreachable:URLError"),
    (Fixed(error=TimeoutError()), "status_unavailable:timeout"),
], ids=["empty", "successful-without-body", "garbage", "malformed-request", "internal-error",
        "sig-required", "unauthorized", "unreachable", "timeout"])
def test_ocsp_answers_that_are_not_responses(pki: Pki, source: StatusSource,
                                             reason: str) -> None:
    rejected(reason, pki, pki.issue(SIGN), source=source)


def test_replayed_ocsp_response_is_refused(pki: Pki) -> None:
    """A good response captured earlier (another nonce) cannot be replayed: RFC 8954."""
    issued, recorded = pki.issue(SIGN), []

    def record(raw: bytes) -> bytes:
        recorded.append(raw)
        return raw

    verify(pki, issued, source=Editing(Responder(pki), record))
    rejected("ocsp_nonce_mismatch", pki, issued, source=Fixed(recorded[0]))


# -- CRL faults ---------------------------------------------------------------------------------

CRL_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("timeout", {"timeout": True}, "status_unavailable:timeout"),
    ("stale", {"crl_stale": True}, "crl_stale"),
    ("bad-signature", {"crl_bad_signature": True}, "crl_bad_signature"),
    ("other-issuer", {"crl_other_issuer": True}, "crl_bad_signature"),
    ("other-generation-same-dn", {"crl_other_generation": True}, "crl_bad_signature"),
    ("last-update-in-future", {"now": NOW + timedelta(minutes=10)}, "crl_not_yet_valid"),
    ("next-update-passed-within-skew", {"now": NOW - timedelta(hours=24, seconds=30)}, None),
    ("next-update-passed-beyond-skew", {"now": NOW - timedelta(hours=24, seconds=90)},
     "crl_stale"),
    ("partitioned-idp-critical", {"crl_extension": (x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier("http://127.0.0.1:9/crl/sign/a/b.crl")],
        relative_name=None, only_contains_user_certs=True, only_contains_ca_certs=False,
        only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False),
        True)}, "crl_unsupported_critical_extension"),
    ("delta-crl", {"crl_extension": (x509.DeltaCRLIndicator(6), True)},
     "crl_unsupported_critical_extension"),
    ("unknown-noncritical-extension", {"crl_extension": (x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.3"), b"\x05\x00"), False)}, None),
]


@pytest.mark.parametrize("kind", [SIGN, AUTH])
@pytest.mark.parametrize(("knobs", "reason"), [(c[1], c[2]) for c in CRL_CASES],
                         ids=[c[0] for c in CRL_CASES])
def test_crl_faults(pki: Pki, kind: str, knobs: dict[str, Any], reason: str | None) -> None:
    responder = Responder(pki, **knobs)
    issued = pki.issue(kind)
    trust = pki.trust(status_method="crl")
    if reason is None:
        assert verify(pki, issued, kind=kind, source=responder,
                      trust=trust).status == Status(True, "crl")
    else:
        rejected(reason, pki, issued, source=responder, trust=trust)
    assert not responder.requests  # no fallback to OCSP (fail closed)


def test_partitioned_crl_cannot_hide_a_revocation(pki: Pki) -> None:
    """A per-city CRL lacks certificates of other cities; read as complete it said "good"."""
    issued = pki.issue(SIGN)
    pki.revoke(issued, x509.ReasonFlags.key_compromise)
    other_city = Responder(pki, crl_extension=(x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier("http://127.0.0.1:9/crl/sign/x/y.crl")],
        relative_name=None, only_contains_user_certs=True, only_contains_ca_certs=False,
        only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False),
        True))
    other_city.pki = Pki()  # the same roots, none of this city's revocations
    rejected("crl_unsupported_critical_extension", pki, issued, source=other_city,
             trust=pki.trust(status_method="crl"))


@pytest.mark.parametrize(("answer", "reason"), [
    (b"", "crl_malformed"), (b"garbage", "crl_malformed"), (b"\x30\x00", "crl_malformed"),
], ids=["empty", "garbage", "empty-sequence"])
def test_crl_answers_that_are_not_crls(pki: Pki, answer: bytes, reason: str) -> None:
    rejected(reason, pki, pki.issue(SIGN), source=Fixed(crl_answer=answer),
             trust=pki.trust(status_method="crl"))


def test_crl_anchor_is_the_issuing_generation(pki: Pki) -> None:
    responder = Responder(pki)
    issued = pki.issue(SIGN, ca=pki.sign_g2)
    verify(pki, issued, source=responder,
           trust=pki.trust(pki.sign_g1, pki.sign_g2, pki.auth_g1, status_method="crl"))
    (anchor,) = responder.crl_requests
    assert anchor.generation == 2 and anchor.key_id == pki.sign_g2.key_id


# -- malformed answers that parse lazily (regressions: these escaped as other exceptions) -----

SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")
UNKNOWN_OID = bytes.fromhex("06092a864886f70d01017f")  # 1.2.840.113549.1.1.127


def _edit(old: bytes, new: bytes) -> Any:
    def edit(raw: bytes) -> bytes:
        assert old in raw and len(old) == len(new)
        return raw.replace(old, new, 1)
    return edit


def _crl_version(value: int) -> Any:
    def edit(raw: bytes) -> bytes:
        tbs, algorithm, signature = der_children(raw)
        fields = der_children(tbs)
        assert fields[0] == b"\x02\x01\x01"
        fields[0] = bytes([2, 1, value])
        return der_tlv(0x30, der_tlv(0x30, b"".join(fields)) + algorithm + signature)
    return edit


C_JP = bytes.fromhex("0603550406" "1302" "4a50")


@pytest.mark.parametrize(("method", "edit", "reason"), [
    ("ocsp", _edit(SHA256_RSA_OID, UNKNOWN_OID), "ocsp_bad_signature"),
    ("crl", _crl_version(3), "crl_malformed"),
    ("crl", _crl_version(0), "crl_malformed"),
    ("crl", _edit(C_JP, C_JP[:-1] + b"*"), "crl_malformed"),  # not a PrintableString
    ("crl", _edit(C_JP, C_JP[:5] + b"\x03" + C_JP[6:]), "crl_malformed"),  # BIT STRING
    ("crl", _edit(C_JP, C_JP[:5] + b"\x93" + C_JP[6:]), "crl_malformed"),  # [19] implicit
], ids=["ocsp-unknown-signature-algorithm", "crl-version-3", "crl-version-0",
        "crl-issuer-bad-printable-string", "crl-issuer-bit-string", "crl-issuer-context-tag"])
def test_malformed_answers_are_refused(pki: Pki, method: str, edit: Any, reason: str) -> None:
    rejected(reason, pki, pki.issue(SIGN), source=Editing(Responder(pki), edit),
             trust=pki.trust(status_method=method))


# -- property: a flipped byte in a status answer never turns "revoked" into "good" ---------------

@pytest.fixture(scope="module")
def revoked_case() -> dict[str, Any]:
    pki = Pki()
    issued = pki.issue(SIGN)
    pki.revoke(issued, x509.ReasonFlags.key_compromise)
    trust = pki.trust()
    return {"pki": pki, "serial": issued.serial, "anchor": trust.anchors_for(SIGN)[0],
            "skew": trust.clock_skew}


class Flipping:
    def __init__(self, inner: Responder, position: int, mask: int) -> None:
        self.inner, self.position, self.mask = inner, position, mask

    def _flip(self, raw: bytes) -> bytes:
        position = self.position % len(raw)
        return raw[:position] + bytes([raw[position] ^ self.mask]) + raw[position + 1:]

    def ocsp(self, request_der: bytes) -> bytes:
        return self._flip(self.inner.ocsp(request_der))

    def crl(self, anchor: Anchor) -> bytes:
        return self._flip(self.inner.crl(anchor))


@pytest.mark.filterwarnings(*PARSE_WARNINGS)
@settings(max_examples=50, deadline=None)
@given(method=st.sampled_from(["ocsp", "crl"]),
       delegate=st.sampled_from([None, "authorised"]),
       position=st.integers(0, 4000), mask=st.integers(1, 255))
def test_flipped_status_answer_never_says_good(revoked_case: dict[str, Any], method: str,
                                               delegate: str | None, position: int,
                                               mask: int) -> None:
    source = Flipping(Responder(revoked_case["pki"], delegate=delegate), position, mask)
    try:
        status = check(revoked_case["serial"], revoked_case["anchor"], source, method, NOW,
                       revoked_case["skew"])
    except CardRejected:
        return
    assert not status.good  # still "revoked" (the flip hit something outside the signature)


def test_ocsp_key_hash_is_over_the_public_key_bits(pki: Pki) -> None:
    """The responder and the verifier agree on RFC 6960 CertID hashing (sanity of testpki)."""
    spki = pki.sign_g1.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki.endswith(pki.sign_g1.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1))
    assert ocsp_key_hash(pki.sign_g1.cert, hashes.SHA1()) == hashlib.sha1(  # noqa: S324
        pki.sign_g1.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1)).digest()


@pytest.mark.filterwarnings(*PARSE_WARNINGS)
def test_every_crl_byte_flip_keeps_the_certificate_revoked(revoked_case: dict[str, Any]) -> None:
    """Exhaustive companion for CRLs (fixed bytes, so cheap): every position, three masks."""
    anchor = revoked_case["anchor"]
    crl = Responder(revoked_case["pki"]).crl(anchor)
    for position in range(len(crl)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = crl[:position] + bytes([crl[position] ^ mask]) + crl[position + 1:]
            try:
                status = check(revoked_case["serial"], anchor, Fixed(crl_answer=flipped), "crl",
                               NOW, revoked_case["skew"])
            except CardRejected:
                continue
            assert not status.good, (position, mask)


def test_ca_signed_response_that_includes_the_ca_certificate(pki: Pki) -> None:
    # RFC 6960 §4.2.1: a CA may include its own certificate; that is not a delegation.
    issued = pki.issue(SIGN)
    responder = Responder(pki, include_ca_cert=True)
    assert verify(pki, issued, kind=SIGN, source=responder).status == Status(True, "ocsp")
