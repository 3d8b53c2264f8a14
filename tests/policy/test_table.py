"""The compiled table is Casbin's answer on its domain and a deny everywhere else."""

from __future__ import annotations

import random

import pytest

from authz.policy.engine import DEFAULT_DENY
from authz.policy.engine import Policy
from authz.policy.engine import domain

SAMPLE = 3000
SEED = 20261128


def test_the_table_covers_exactly_the_domain(policy: Policy) -> None:
    cells = list(domain())
    assert len(cells) == len(set(cells))
    assert set(policy.table) == set(cells)


def test_the_table_equals_casbin_on_random_cells(policy: Policy) -> None:
    cells = random.Random(SEED).sample(list(domain()), SAMPLE)
    differ = []
    for cell in cells:
        table, live = policy.evaluate(*cell), policy.enforce_live(*cell)
        if (table.allow, table.rule, dict(table.obligations)) != (
                live.allow, live.rule, dict(live.obligations)):
            differ.append(f"{','.join(cell)}: table {table} casbin {live}")
    assert not differ, "\n".join(differ[:20])
    assert {policy.evaluate(*cell).allow for cell in cells} == {True, False}


@pytest.mark.parametrize("cell", [
    # A role the institution type cannot register (authz.registry.rules.ROLES_BY_TYPE).
    ("physician", "pharmacy", "medication", "treatment_visit", "permit", "normal"),
    ("nurse", "municipality", "qualification", "home_or_online_care", "permit", "normal"),
    ("emergency_physician", "clinic", "medication", "emergency", "none", "normal"),
    ("researcher", "hospital", "diagnoses", "secondary_use", "permit", "normal"),
    ("physician", "resource_server", "medication", "treatment_visit", "permit", "normal"),
    # The patient outside self view.
    ("patient", "hospital", "medication", "treatment_visit", "permit", "normal"),
    # Disaster mode with another purpose.
    ("physician", "hospital", "medication", "treatment_visit", "permit", "disaster"),
    # Values outside the vocabulary, wildcards and group names of rules.csv.
    ("root", "hospital", "medication", "treatment_visit", "permit", "normal"),
    ("Physician", "hospital", "medication", "treatment_visit", "permit", "normal"),
    ("*", "*", "*", "*", "permit", "normal"),
    ("physician", "medical", "clinical_record", "treatment", "permit", "normal"),
    ("physician", "hospital", "medication", "treatment_visit", "any_consent", "any_mode"),
    ("physician", "hospital", "medication", "treatment_visit", "", "normal"),
    ("physician", "hospital", "medication", "treatment_visit", "permit", "urgent"),
    ("emergency_physician", "hospital", "medication", "emergency", "none", "normal "),
])
def test_cells_outside_the_domain_are_denied(policy: Policy, cell: tuple[str, ...]) -> None:
    decision = policy.evaluate(*cell)
    assert not decision.allow
    assert decision.rule == DEFAULT_DENY
    assert not decision.obligations
