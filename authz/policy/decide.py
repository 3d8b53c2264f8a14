"""``decide()``: one answer per category, from the compiled rules and the consent lookup.

The caller (the decision API) has already authenticated the institution, resolved the patient
and checked the role against the institution's registration; ``decide`` reads the consent state
with one indexed lookup (plus the disaster declaration for the disaster purpose), looks each
category up in the policy table and returns the results with their rules, consents and
obligations. ``record`` then writes the audit event (and opens or reuses the emergency access
window) in one transaction that commits before the answer leaves.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz import audit
from authz.consent import lookup
from authz.consent.models import EmergencyAccess
from authz.database import write
from authz.policy.engine import DEFAULT_DENY
from authz.policy.engine import DISASTER
from authz.policy.engine import Policy
from authz.policy.models import DisasterDeclaration

EMERGENCY = "emergency"
EMERGENCY_WINDOW = timedelta(hours=24)
# Why consent could not be asked (DESIGN 5: "when consent is hard to obtain").
EMERGENCY_REASONS = ("unconscious", "unable_to_communicate", "life_threatening",
                     "no_surrogate_available")
REASONS = {
    "emergency-summary": "emergency_access",
    "disaster-summary": "disaster_mode",
    "self-view": "self_view",
    "patient-deny": "patient_deny",
}


@dataclass(frozen=True)
class Question:
    """What an institution asks about one patient."""

    patient_id: str
    institution_id: str
    institution_type: str
    categories: tuple[str, ...]
    purpose: str
    role: str
    practitioner: str
    emergency_reason: str | None = None


@dataclass(frozen=True)
class Result:
    category: str
    decision: str
    reason: str
    rule: str
    consent_ids: tuple[str, ...]
    obligations: dict[str, int]
    explanation: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {"category": self.category, "decision": self.decision, "reason": self.reason,
                "rule": self.rule, "consent_ids": list(self.consent_ids),
                "obligations": dict(self.obligations)}
        if self.explanation is not None:
            body["explanation"] = dict(self.explanation)
        return body


@dataclass
class Decision:
    decision_id: str
    policy_version: str
    question: Question
    mode: str
    results: list[Result]
    emergency_access: dict[str, str] | None = field(default=None)

    @property
    def permitted(self) -> list[str]:
        return [r.category for r in self.results if r.decision == "permit"]

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"decision_id": self.decision_id,
                                "policy_version": self.policy_version,
                                "results": [r.to_dict() for r in self.results]}
        if self.emergency_access:
            body["emergency_access"] = dict(self.emergency_access)
        return body


def decide(session: Session, policy: Policy, question: Question, now: datetime, *,
           explain: bool = False) -> Decision:
    """Evaluate without writing anything (``record`` makes it count).

    ``explain`` adds, per category, the matched rule line of the policy, the consent state the
    lookup found and the mode: what an operator needs to see why.
    """
    mode = "normal"
    if question.purpose == DISASTER and declared(session, question.institution_id, now):
        mode = DISASTER
    states = lookup.states(session, patient_id=question.patient_id,
                           institution_id=question.institution_id, purpose=question.purpose,
                           categories=question.categories, now=now)
    results = []
    for category in question.categories:
        state, consent_ids = states.of(category)
        cell = policy.evaluate(question.role, question.institution_type, category,
                               question.purpose, state, mode)
        if cell.allow:
            reason = REASONS.get(cell.rule, "consent")
        elif cell.rule == "patient-deny":
            reason = "patient_deny"
        elif cell.rule == DEFAULT_DENY and state == "none" and policy.evaluate(
                question.role, question.institution_type, category, question.purpose,
                "permit", mode).allow:
            reason = "consent_expired" if category in states.expired else "no_consent"
        else:
            reason = "not_permitted"
        shown = consent_ids if (cell.allow and state == "permit") or state == "deny" else ()
        explanation = None
        if explain:
            explanation = {"rule_line": policy.rule_lines.get(cell.rule, "no rule matched"),
                           "consent_state": state, "mode": mode,
                           "consents": " ".join(consent_ids)}
        results.append(Result(category, "permit" if cell.allow else "deny", reason, cell.rule,
                              shown, dict(cell.obligations), explanation))
    return Decision(decision_id=f"dcs_{secrets.token_hex(10)}", policy_version=policy.version,
                    question=question, mode=mode, results=results)


def declared(session: Session, institution_id: str, now: datetime) -> bool:
    """Whether an operator's disaster declaration covers the institution now."""
    active = session.execute(
        select(DisasterDeclaration.institutions).where(
            DisasterDeclaration.start <= now, DisasterDeclaration.end > now,
            DisasterDeclaration.ended_at.is_(None))).scalars()
    return any(institution_id in institutions for institutions in active)


def record(session: Session, decisions: list[Decision], *, client_id: str, now: datetime,
           request_id: str | None = None) -> None:
    """Audit every decision (and open emergency windows) in one committed transaction."""
    with write(session):
        for decision in decisions:
            question = decision.question
            emergency = question.purpose == EMERGENCY and bool(decision.permitted)
            if emergency:
                decision.emergency_access = _emergency_window(session, question, now)
            audit.record(session, audit.Event(
                type="decision.evaluated", actor=f"client:{client_id}",
                outcome="permit" if decision.permitted else "deny",
                institution=question.institution_id, client=client_id,
                patient=question.patient_id, request_id=request_id,
                policy_version=decision.policy_version,
                detail=_detail(decision, emergency)), now=now)


def _detail(decision: Decision, emergency: bool) -> dict[str, Any]:
    question = decision.question
    detail: dict[str, Any] = {
        "decision_id": decision.decision_id, "purpose": question.purpose, "role": question.role,
        "practitioner": question.practitioner, "mode": decision.mode,
        "permitted": decision.permitted,
        "denied": [r.category for r in decision.results if r.decision == "deny"],
        "rules": sorted({r.rule for r in decision.results}),
        "consent_ids": sorted({c for r in decision.results for c in r.consent_ids}),
        "emergency": int(emergency)}
    if question.emergency_reason:
        detail["emergency_reason"] = question.emergency_reason
    if decision.emergency_access:
        detail["emergency_access_id"] = decision.emergency_access["id"]
    return detail


def _emergency_window(session: Session, question: Question, now: datetime) -> dict[str, str]:
    """The open 24-hour window for (patient, institution), or a new one queued for review."""
    window = session.execute(
        select(EmergencyAccess).where(
            EmergencyAccess.patient_id == question.patient_id,
            EmergencyAccess.institution_id == question.institution_id,
            EmergencyAccess.expires_at > now)
        .order_by(EmergencyAccess.started_at.desc()).limit(1)).scalar_one_or_none()
    if window is None:
        window = EmergencyAccess(
            id=f"emg_{secrets.token_hex(10)}", patient_id=question.patient_id,
            institution_id=question.institution_id, practitioner=question.practitioner,
            reason=question.emergency_reason or "", started_at=now,
            expires_at=now + EMERGENCY_WINDOW)
        session.add(window)
        session.flush()
        audit.record(session, audit.Event(
            type="emergency.access_opened", actor=f"practitioner:{question.practitioner}",
            institution=question.institution_id, patient=question.patient_id,
            reason=question.emergency_reason,
            detail={"emergency_access_id": window.id,
                    "expires_at": window.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}), now=now)
    return {"id": window.id, "expires_at": window.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
