"""What a consent may usefully grant: categories some registered role of the institution could
see for the purpose once the patient consents. The rest is refused before it is recorded and
shown to the patient (DESIGN 5: tokens and consents follow the rules)."""

from __future__ import annotations

from collections.abc import Iterable

from authz.policy.engine import Policy
from authz.registry.models import Institution


def refused(policy: Policy, institution: Institution, purpose: str,
            categories: Iterable[str]) -> list[str]:
    return [category for category in categories
            if not any(policy.evaluate(role, institution.type, category, purpose,
                                       "permit").allow
                       for role in institution.roles)]
