"""The verifier reads seq, prev and the indexed columns out of the record bytes without parsing;
it must agree with a full JSON parse on every record, honest or not."""

from __future__ import annotations

import hashlib
from datetime import UTC
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.audit.events import Event
from authz.audit.events import build_record
from authz.audit.events import timestamp
from authz.audit.verify import StoredRow
from authz.audit.verify import _parsed_columns_match
from authz.audit.verify import columns_match
from authz.audit.verify import record_links

MOMENT = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
ids = st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"),
                          min_size=1, max_size=12)
details = st.dictionaries(st.sampled_from(["institution", "patient", "prev", "seq", "outcome",
                                           "policy_version", "x"]),
                          st.text(max_size=8) | st.integers(0, 99), max_size=4)


@given(institution=ids, patient=ids, policy=ids, detail=details,
       outcome=st.sampled_from(["success", "failure", "permit", "deny"]),
       other_institution=ids, other_patient=ids,
       other_outcome=st.sampled_from(["success", "deny"]))
def test_fast_column_check_agrees_with_parsing(institution, patient, policy, detail, outcome,
                                               other_institution, other_patient,
                                               other_outcome):
    event = Event(type="decision.evaluated", actor="client:x", outcome=outcome,
                  institution=institution, patient=patient, policy_version=policy,
                  detail=detail)
    prev = hashlib.sha256(b"prev").digest()
    record = build_record(event, 7, prev, MOMENT)
    assert record_links(record, 7, prev)
    assert not record_links(record, 8, prev)
    assert not record_links(record, 7, bytes(32))
    honest = StoredRow(7, record, b"", event.type, outcome, institution, patient,
                       timestamp(MOMENT))
    assert columns_match(honest)
    for edited in (honest._replace(institution_id=other_institution),
                   honest._replace(patient_id=other_patient),
                   honest._replace(outcome=other_outcome),
                   honest._replace(type="identity.session_started"),
                   honest._replace(time="2026-11-28T12:00:00.000000Z")):
        assert columns_match(edited) == _parsed_columns_match(edited)


@pytest.mark.parametrize("record", [b"not json", b"[]", b'{"seq":7}'])
def test_garbage_never_links(record):
    assert not record_links(record, 7, bytes(32))
