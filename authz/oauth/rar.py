"""Rich Authorization Requests (RFC 9396) of type ``health_record_access``.

A detail names the grantee institution (never a wildcard: it must be the requesting client's
own), a purpose, the categories and optionally an end of the period. The consent page shows each
detail item by item; sensitive categories are never pre-selected.
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.consent.vocabulary import SENSITIVE

TYPE = "health_record_access"
MAX_DETAILS = 5
MAX_PERIOD = timedelta(days=3653)
NO_CONSENT = frozenset({"emergency", "disaster", "self_view"})
MAX_CHARS = 4096
FIELDS = frozenset({"type", "institution", "purpose", "categories", "period", "patient",
                    "actions", "locations"})


class InvalidDetails(ValueError):
    """RFC 9396 §5: answered with ``invalid_authorization_details``."""


def parse(raw: str | None, *, institution: str) -> list[dict[str, Any]]:
    """Validate ``authorization_details`` for a client of ``institution``; [] when absent."""
    if raw is None or raw == "":
        return []
    if len(raw) > MAX_CHARS:
        raise InvalidDetails("authorization_details is too long")
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidDetails("authorization_details is not JSON") from None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_DETAILS:
        raise InvalidDetails(f"authorization_details must be an array of 1 to {MAX_DETAILS}")
    return [_detail(item, institution) for item in value]


def _detail(item: Any, institution: str) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type") != TYPE:
        raise InvalidDetails(f"each detail must be an object of type {TYPE}")
    unknown = set(item) - FIELDS
    if unknown:
        raise InvalidDetails("a detail has an unknown member")
    if item.get("institution") != institution:
        raise InvalidDetails("institution must be the requesting client's own institution")
    if item.get("purpose") not in PURPOSES:
        raise InvalidDetails("unknown purpose")
    if item["purpose"] in NO_CONSENT:
        raise InvalidDetails("emergency, disaster and self view need no consent")
    categories = item.get("categories")
    if not isinstance(categories, list) or not categories or len(categories) > len(CATEGORIES) \
            or not all(isinstance(c, str) and c in CATEGORIES for c in categories):
        raise InvalidDetails("categories must be a non-empty list of known categories")
    detail: dict[str, Any] = {"type": TYPE, "institution": institution,
                              "purpose": item["purpose"],
                              "categories": list(dict.fromkeys(categories))}
    period = item.get("period")
    if period is not None:
        detail["period"] = _period(period)
    elif item["purpose"] != "treatment_visit":
        # Only treatment-visit consent has a default period (24 hours).
        raise InvalidDetails("this purpose needs period.end")
    if item.get("actions") not in (None, ["read"]):
        raise InvalidDetails('actions may only be ["read"]')
    return detail


def _period(period: Any) -> dict[str, str]:
    if not isinstance(period, dict) or set(period) - {"end"} or not isinstance(
            period.get("end"), str):
        raise InvalidDetails('period must be {"end": "<RFC 3339 time>"}')
    try:
        end = datetime.fromisoformat(period["end"].replace("Z", "+00:00"))
    except ValueError:
        raise InvalidDetails("period.end is not an RFC 3339 time") from None
    if end.tzinfo is None:
        raise InvalidDetails("period.end needs a time zone")
    now = datetime.now(UTC)
    if not now < end <= now + MAX_PERIOD:
        raise InvalidDetails("period.end must be in the future and at most ten years ahead")
    return {"end": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def preselected(detail: dict[str, Any], refused: set[str] | None = None) -> list[str]:
    """What the consent page ticks by default: every requested category but sensitive ones
    and those the rules refuse this institution."""
    return [c for c in detail["categories"] if c not in SENSITIVE and c not in (refused or ())]


def approve(details: list[dict[str, Any]], chosen: set[str],
            refused: list[set[str]] | None = None) -> list[dict[str, Any]]:
    """The granted details: each keeps only the categories the patient ticked (index:name),
    never one the rules refuse (``refused``, per detail)."""
    granted = []
    for index, detail in enumerate(details):
        blocked = refused[index] if refused else set()
        kept = [c for c in detail["categories"]
                if f"{index}:{c}" in chosen and c not in blocked]
        if kept:
            granted.append({**detail, "categories": kept})
    return granted
