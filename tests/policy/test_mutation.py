"""Mutation test: deleting any one line of ``policies/rules.csv`` makes some scenario fail.

A line whose deletion no scenario notices is either untested (the table lacks a row from the
programme's rules) or redundant (it can go). Either way the rule file and the table disagree
about what the policy is, and the test names every such line at once.
"""

from __future__ import annotations

import pytest
from policy_support import OBLIGATIONS
from policy_support import Scenario
from policy_support import rule_lines
from policy_support import without_line

from authz.policy.engine import Policy
from authz.policy.engine import PolicyError


def wrong(policy: Policy, scenarios: list[Scenario]) -> Scenario | None:
    """The first scenario Casbin answers wrongly under ``policy``, if any."""
    for scenario in scenarios:
        if policy.enforce_live(*scenario.request).allow is not scenario.allow:
            return scenario
    return None


def test_the_unmutated_rules_pass_every_scenario(bundle: dict[str, str],
                                                 scenarios: list[Scenario]) -> None:
    """The baseline: without it, a "killed" mutation could be a scenario that always fails."""
    assert wrong(Policy(bundle, table=False), scenarios) is None


def test_deleting_any_rule_line_fails_some_scenario(bundle: dict[str, str],
                                                    scenarios: list[Scenario]) -> None:
    lines = rule_lines(bundle["rules.csv"])
    assert any(line.startswith("p,") for _, line in lines)
    assert any(line.startswith("g") for _, line in lines)
    survivors = []
    for number, line in lines:
        mutated = {**bundle, "rules.csv": without_line(bundle["rules.csv"], number)}
        try:
            policy = Policy(mutated, table=False)
        except PolicyError:
            continue  # the bundle is refused as a whole: nothing can run on it
        if wrong(policy, scenarios) is None:
            survivors.append(f"rules.csv line {number}: {line}")
    assert not survivors, (
        f"{len(survivors)} of {len(lines)} rule lines can be deleted without any scenario "
        "failing (add a scenario from the programme's rules, or drop the line):\n"
        + "\n".join(survivors))


def test_deleting_any_obligation_line_changes_some_obligation(bundle: dict[str, str]) -> None:
    """The same for ``obligations.csv``, against the obligation cases of the programme."""
    survivors = []
    lines = rule_lines(bundle["obligations.csv"])
    for number, line in lines:
        policy = Policy({**bundle, "obligations.csv": without_line(bundle["obligations.csv"],
                                                                    number)}, table=False)
        if all(dict(policy.enforce_live(*request).obligations) == expected
               for request, expected in OBLIGATIONS):
            survivors.append(f"obligations.csv line {number}: {line}")
    assert not survivors, "\n".join(survivors)


MODEL_CHANGES = {
    # Each keeps model.conf loadable but changes what it means.
    "allow overrides": ("e = priority(p.eft) || deny", "e = some(where (p.eft == allow))"),
    "consent ignored": (" && g5(r.consent, p.consent)", ""),
    "mode ignored": (" && g5(r.mode, p.mode)", ""),
    "category ignored": ("(p.category == \"*\" || g3(r.category, p.category)) && ", ""),
    "type ignored": ("(p.type == \"*\" || g2(r.type, p.type)) && ", ""),
    "role ignored": ("(p.role == \"*\" || g(r.role, p.role)) && ", ""),
    "purpose ignored": ("(p.purpose == \"*\" || g4(r.purpose, p.purpose)) && ", ""),
}


@pytest.mark.parametrize("change", MODEL_CHANGES)
def test_changing_the_model_fails_some_scenario(bundle: dict[str, str],
                                                scenarios: list[Scenario], change: str) -> None:
    old, new = MODEL_CHANGES[change]
    assert old in bundle["model.conf"]
    policy = Policy({**bundle, "model.conf": bundle["model.conf"].replace(old, new)},
                    table=False)
    assert wrong(policy, scenarios) is not None, f"no scenario notices: {change}"
