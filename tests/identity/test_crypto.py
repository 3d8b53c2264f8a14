"""Keys derived from the KEK: sealing, fingerprints and pairwise identifiers."""

from __future__ import annotations

import pytest

from authz.identity.crypto import IdentityKeys

KEYS = IdentityKeys.from_kek(bytes(range(32)))


def test_each_use_has_its_own_key():
    assert len({KEYS.attributes, KEYS.fingerprint, KEYS.pairwise}) == 3
    assert IdentityKeys.from_kek(bytes(32)).pairwise != KEYS.pairwise


def test_sealed_data_opens_only_for_its_row():
    blob = KEYS.seal("山田\u3000花子".encode(), "verification:1")
    assert "山田".encode() not in blob
    assert KEYS.open(blob, "verification:1").decode() == "山田\u3000花子"
    with pytest.raises(ValueError, match="does not open"):
        KEYS.open(blob, "verification:2")  # moved to another row
    with pytest.raises(ValueError, match="does not open"):
        IdentityKeys.from_kek(bytes(32)).open(blob, "verification:1")


def test_pairwise_subjects_are_per_institution_and_stable():
    # DESIGN 3: every client of one institution sees the same sub; others see another.
    hospital = KEYS.pairwise_sub("pat_1", "ins_hospital")
    assert hospital == KEYS.pairwise_sub("pat_1", "ins_hospital")
    assert hospital != KEYS.pairwise_sub("pat_1", "ins_clinic")
    assert hospital != KEYS.pairwise_sub("pat_2", "ins_hospital")
    assert "pat_1" not in hospital
    assert len(hospital) == 43  # 256 bits, base64url


def test_certificate_fingerprints_reveal_neither_issuer_nor_serial():
    first = KEYS.cert_fingerprint(b"\x01" * 20, 123456789)
    assert first == KEYS.cert_fingerprint(b"\x01" * 20, 123456789)
    assert first != KEYS.cert_fingerprint(b"\x02" * 20, 123456789)
    assert "123456789" not in first
    assert format(123456789, "x") not in first
