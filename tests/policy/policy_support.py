"""The hand-written scenario table (``scenarios.csv``) and helpers for the policy tests.

The table is written from the programme's rules (reference jpki-simulation.md a12-a14 and
section c, DESIGN section 5, the service's professional rules), never generated from
``policies/rules.csv``: it is the independent witness the rule files are checked against.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.policy.engine import CONSENT_STATES
from authz.policy.engine import MODES
from authz.policy.engine import PATIENT_ROLE
from authz.registry.rules import INSTITUTION_TYPES
from authz.registry.rules import ROLES

SCENARIOS = Path(__file__).resolve().parent / "scenarios.csv"
HEADER = ("role", "institution_type", "category", "purpose", "consent", "mode", "expected",
          "note")
VOCABULARY = {
    "role": (*ROLES, PATIENT_ROLE),
    "institution_type": INSTITUTION_TYPES,
    "category": tuple(CATEGORIES),
    "purpose": tuple(PURPOSES),
    "consent": CONSENT_STATES,
    "mode": MODES,
    "expected": ("permit", "deny"),
}


@dataclass(frozen=True)
class Scenario:
    """One row: the request, the expected effect and the source it was written from."""

    line: int
    request: tuple[str, str, str, str, str, str]
    expected: str
    note: str

    @property
    def allow(self) -> bool:
        return self.expected == "permit"

    @property
    def id(self) -> str:
        return f"line{self.line}-" + "-".join(self.request)

    def __str__(self) -> str:
        return (f"scenarios.csv line {self.line} ({','.join(self.request)}) expects "
                f"{self.expected}: {self.note}")


def load_scenarios(path: Path = SCENARIOS) -> list[Scenario]:
    """Every row, each value checked against the vocabulary so a typo cannot pass as a deny."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(value.strip() for value in rows[0]) != HEADER:
        raise ValueError(f"{path.name} line 1: the header must be {','.join(HEADER)}")
    scenarios = []
    seen: dict[tuple[str, ...], int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(value.strip() for value in row):
            continue
        if len(row) != len(HEADER):
            raise ValueError(f"{path.name} line {line}: {len(HEADER)} values expected")
        values = dict(zip(HEADER, (value.strip() for value in row), strict=True))
        for column, allowed in VOCABULARY.items():
            if values[column] not in allowed:
                raise ValueError(f"{path.name} line {line}: unknown {column} "
                                 f"{values[column]!r}")
        if not values["note"]:
            raise ValueError(f"{path.name} line {line}: every row cites its source in note")
        request = (values["role"], values["institution_type"], values["category"],
                   values["purpose"], values["consent"], values["mode"])
        if request in seen:
            raise ValueError(f"{path.name} line {line}: the same request as line "
                             f"{seen[request]}")
        seen[request] = line
        scenarios.append(Scenario(line, request, values["expected"], values["note"]))
    return scenarios


def rule_lines(text: str) -> list[tuple[int, str]]:
    """The non-blank, non-comment lines of a rules file, with their 1-based line numbers."""
    return [(number, raw.strip()) for number, raw in enumerate(text.splitlines(), start=1)
            if raw.strip() and not raw.strip().startswith("#")]


def without_line(text: str, number: int) -> str:
    """``text`` with its line ``number`` (1-based) deleted."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[:number - 1] + lines[number:])


_EMERGENCY = {"notify_patient": 1, "auditor_review": 1}
# Obligation checks written from the programme's rules (kept out of the CSV, whose format is the
# operator's `authz policy test FILE`): request -> the exact obligations of the decision.
OBLIGATIONS: list[tuple[tuple[str, str, str, str, str], dict[str, int]]] = [
    # DESIGN 5 and a13: an emergency permit notifies the patient, goes to auditor review and
    # uses the emergency summary windows (3 months; e-prescription 45 days; surgery 5 years).
    (("emergency_physician", "hospital", "medication", "emergency", "none"),
     {**_EMERGENCY, "lookback_days": 90}),
    (("emergency_physician", "hospital", "eprescription", "emergency", "deny"),
     {**_EMERGENCY, "lookback_days": 45}),
    (("emergency_physician", "hospital", "clinical_claims", "emergency", "permit"),
     {**_EMERGENCY, "lookback_days": 90}),
    (("emergency_physician", "hospital", "dialysis", "emergency", "none"),
     {**_EMERGENCY, "lookback_days": 90}),
    (("emergency_physician", "hospital", "surgery", "emergency", "none"),
     {**_EMERGENCY, "lookback_days": 1825}),
    # a12, a14, c1: normal display windows; medication 3 years, e-prescription 100 days, lab
    # results the last year, the 5-year categories, and none for qualification.
    (("physician", "hospital", "qualification", "treatment_visit", "permit"), {}),
    (("physician", "hospital", "medication", "treatment_visit", "permit"),
     {"lookback_days": 1095}),
    (("physician", "clinic", "eprescription", "treatment_visit", "permit"),
     {"lookback_days": 100}),
    (("physician", "hospital", "clinical_claims", "treatment_referral", "permit"),
     {"lookback_days": 1825}),
    (("physician", "hospital", "surgery", "treatment_visit", "permit"),
     {"lookback_days": 1825}),
    (("physician", "clinic", "dialysis", "treatment_visit", "permit"),
     {"lookback_days": 1825}),
    (("dentist", "clinic", "specific_checkup", "treatment_visit", "permit"),
     {"lookback_days": 1825}),
    (("physician", "hospital", "checkup_report", "treatment_visit", "permit"),
     {"lookback_days": 1825}),
    (("physician", "hospital", "diagnoses", "home_or_online_care", "permit"),
     {"lookback_days": 1825}),
    (("physician", "hospital", "infection", "treatment_visit", "permit"),
     {"lookback_days": 1825}),
    (("researcher", "research", "genetic", "secondary_use", "permit"),
     {"lookback_days": 1825}),
    (("nurse", "clinic", "drug_allergy", "treatment_visit", "permit"),
     {"lookback_days": 1825}),
    (("care_worker", "care_provider", "other_allergy", "home_or_online_care", "permit"),
     {"lookback_days": 1825}),
    (("nurse", "hospital", "lab_results", "treatment_referral", "permit"),
     {"lookback_days": 365}),
    (("care_worker", "care_provider", "prescriptions", "home_or_online_care", "permit"),
     {"lookback_days": 1825}),
    (("pharmacist", "pharmacy", "medication", "dispensing", "permit"),
     {"lookback_days": 1095}),
    (("researcher", "research", "lab_results", "secondary_use", "permit"),
     {"lookback_days": 365}),
    # c2, a14: self view hides diagnoses not yet disclosed to the patient.
    (("patient", "resource_server", "qualification", "self_view", "none"),
     {"exclude_undisclosed_to_patient": 1}),
    (("patient", "hospital", "diagnoses", "self_view", "deny"),
     {"exclude_undisclosed_to_patient": 1, "lookback_days": 1825}),
    # A deny carries no obligations, emergency or not.
    (("emergency_physician", "hospital", "lab_results", "emergency", "none"), {}),
]
