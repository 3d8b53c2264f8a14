"""The independent scenario table through the compiled table and through Casbin itself."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from policy_support import OBLIGATIONS
from policy_support import Scenario
from policy_support import load_scenarios

from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.policy.engine import Policy

ROWS = load_scenarios()


@pytest.mark.parametrize("scenario", ROWS, ids=[row.id for row in ROWS])
def test_scenario(policy: Policy, scenario: Scenario) -> None:
    table = policy.evaluate(*scenario.request)
    live = policy.enforce_live(*scenario.request)
    assert table.allow is scenario.allow, f"table: {scenario} (rule {table.rule})"
    assert live.allow is scenario.allow, f"casbin: {scenario} (rule {live.rule})"
    assert (table.rule, dict(table.obligations)) == (live.rule, dict(live.obligations)), (
        f"table and casbin disagree on the rule or obligations: {scenario}")


def test_the_table_has_both_answers_for_every_purpose_and_category() -> None:
    """Every purpose has permit and deny rows; every category appears permitted and denied."""
    purposes = Counter((row.request[3], row.expected) for row in ROWS)
    categories = Counter((row.request[2], row.expected) for row in ROWS)
    for purpose in PURPOSES:
        assert purposes[purpose, "permit"] and purposes[purpose, "deny"], purpose
    for category in CATEGORIES:
        assert categories[category, "permit"] and categories[category, "deny"], category
    assert 150 <= len(ROWS) <= 300


@pytest.mark.parametrize(("content", "message"), [
    ("role,institution_type\n", "line 1: the header"),
    ("role,institution_type,category,purpose,consent,mode,expected,note\n"
     "physician,hospital,medicaton,treatment_visit,permit,normal,deny,typo\n",
     "line 2: unknown category 'medicaton'"),
    ("role,institution_type,category,purpose,consent,mode,expected,note\n"
     "physician,hospital,medication,treatment_visit,permit,normal,deny\n", "line 2: 8 values"),
    ("role,institution_type,category,purpose,consent,mode,expected,note\n"
     "physician,hospital,medication,treatment_visit,permit,normal,permit,\n", "line 2: every"),
    ("role,institution_type,category,purpose,consent,mode,expected,note\n"
     "physician,hospital,medication,treatment_visit,permit,normal,permit,a\n"
     "physician,hospital,medication,treatment_visit,permit,normal,deny,b\n",
     "line 3: the same request as line 2"),
])
def test_a_malformed_table_is_refused(tmp_path: Path, content: str, message: str) -> None:
    """A typo in the table must not pass silently as a deny row."""
    path = tmp_path / "scenarios.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_scenarios(path)


@pytest.mark.parametrize(("request_", "obligations"), OBLIGATIONS,
                         ids=["-".join(request) for request, _ in OBLIGATIONS])
def test_obligations(policy: Policy, request_: tuple[str, ...],
                     obligations: dict[str, int]) -> None:
    table = policy.evaluate(*request_)
    live = policy.enforce_live(*request_)
    assert dict(table.obligations) == obligations, table
    assert dict(live.obligations) == obligations, live


@pytest.mark.parametrize("request_", [
    ("physician", "hospital", "medication", "disaster", "none", "disaster"),
    ("pharmacist", "pharmacy", "eprescription", "disaster", "none", "disaster"),
])
def test_a_disaster_permit_uses_the_normal_windows(policy: Policy,
                                                   request_: tuple[str, ...]) -> None:
    """Disaster access is not emergency access: no patient notice obligation, normal windows."""
    cell = policy.evaluate(*request_)
    assert cell.allow
    assert "notify_patient" not in cell.obligations
    assert cell.obligations["lookback_days"] == {"medication": 1095, "eprescription": 100}[
        request_[2]]
