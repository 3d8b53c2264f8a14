"""Export a consent as an HL7 FHIR R4 ``Consent`` resource, validated before it leaves.

Structure is checked with ``fhir.resources``' R4B models (R4B shares R4's Consent); those models
do not enforce required code bindings or invariants, so ``check_bindings`` adds ours: status,
scope, provision type, action and purpose codes from their value sets, and ppc-1 (policy or
policyRule present). Record categories are our own code system under the issuer.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.consent import Consent as FhirConsent
from pydantic import ValidationError

from authz.consent.models import ACTIVE
from authz.consent.models import DENY
from authz.consent.models import Consent
from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.registry.models import Institution

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
CATEGORY_SYSTEM = "http://loinc.org"
POLICY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
ACTOR_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
STATUSES = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
SCOPES = frozenset({"adr", "research", "patient-privacy", "treatment"})
PROVISION_TYPES = frozenset({"deny", "permit"})
ACTIONS = frozenset({"collect", "access", "use", "disclose", "correct"})
# v3 PurposeOfUse for our purposes (HL7 v3 ActReason).
PURPOSE_OF_USE = {
    "treatment_visit": "TREAT", "treatment_referral": "TREAT", "dispensing": "TREAT",
    "home_or_online_care": "TREAT", "emergency": "ETREAT", "disaster": "ETREAT",
    "self_view": "PATRQT", "secondary_use": "HRESCH",
}


class ExportError(ValueError):
    """The resource we built does not validate: a bug, never sent."""


def to_fhir(consent: Consent, institution: Institution | None, *, issuer: str,
            status: str) -> dict[str, Any]:
    """``status`` is the consent's status now (``active``, ``revoked`` or ``expired``)."""
    provision: dict[str, Any] = {
        "type": "deny" if consent.decision == DENY else "permit",
        "period": {"start": _instant(consent.start)},
        "action": [{"coding": [{"system": ACTION_SYSTEM, "code": "access"}]}],
        "code": [{"coding": [{"system": f"{issuer}/fhir/CodeSystem/record-category",
                              "code": c, "display": CATEGORIES[c][1]}]}
                 for c in consent.categories],
    }
    if consent.end is not None:
        provision["period"]["end"] = _instant(consent.end)
    if institution is not None:
        provision["actor"] = [{
            "role": {"coding": [{"system": ACTOR_ROLE_SYSTEM, "code": "IRCP"}]},
            "reference": {"reference": f"Organization/{institution.id}",
                          "display": institution.name}}]
    if consent.purpose in PURPOSE_OF_USE:
        provision["purpose"] = [
            {"system": PURPOSE_SYSTEM, "code": PURPOSE_OF_USE[consent.purpose]},
            {"system": f"{issuer}/fhir/CodeSystem/purpose", "code": consent.purpose,
             "display": PURPOSES[consent.purpose][1]}]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent.id.replace("_", "-"),
        "meta": {"versionId": str(consent.version), "lastUpdated": _instant(consent.updated_at)},
        "identifier": [{"system": f"{issuer}/consents", "value": consent.id}],
        "status": "active" if status == ACTIVE else "inactive",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "research"
                              if consent.purpose == "secondary_use" else "patient-privacy"}]},
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"reference": f"Patient/{consent.patient_id}"},
        "dateTime": _instant(consent.created_at),
        "policyRule": {"coding": [{"system": POLICY_SYSTEM,
                                   "code": "OPTOUT" if consent.decision == DENY else "OPTIN"}]},
        "provision": provision,
    }
    validate(resource)
    return resource


def validate(resource: dict[str, Any]) -> None:
    try:
        FhirConsent.model_validate(resource)
    except ValidationError as error:
        raise ExportError(f"FHIR Consent does not validate: {error.error_count()} errors") \
            from None
    problems = check_bindings(resource)
    if problems:
        raise ExportError("FHIR Consent breaks bindings: " + "; ".join(problems))


def check_bindings(resource: dict[str, Any]) -> list[str]:
    """Required bindings and invariants the models do not check."""
    problems = []
    if resource.get("status") not in STATUSES:
        problems.append("status outside its required value set")
    scope_codes = [c.get("code") for c in resource.get("scope", {}).get("coding", [])
                   if c.get("system") == SCOPE_SYSTEM]
    if not scope_codes or not set(scope_codes) <= SCOPES:
        problems.append("scope outside consent-scope")
    if not resource.get("policy") and not resource.get("policyRule"):
        problems.append("ppc-1: policy or policyRule is required")
    provision = resource.get("provision") or {}
    if provision.get("type") not in PROVISION_TYPES:
        problems.append("provision.type outside consent-provision-type")
    for action in provision.get("action", []):
        for coding in action.get("coding", []):
            if coding.get("system") == ACTION_SYSTEM and coding.get("code") not in ACTIONS:
                problems.append("provision.action outside consent-action")
    for coding in provision.get("purpose", []):
        if coding.get("system") == PURPOSE_SYSTEM and \
                coding.get("code") not in set(PURPOSE_OF_USE.values()):
            problems.append("provision.purpose outside PurposeOfUse")
    return problems


def _instant(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
