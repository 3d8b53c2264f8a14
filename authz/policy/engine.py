"""The policy engine: Casbin rules compiled into a decision table over a finite domain.

pycasbin evaluates every cell of role x institution type x category x purpose x consent state
x mode once, when a policy version is first used (``enforce_ex`` gives the matched rule); the
hot path is then a dict lookup. The table is cached per process by the policy's content hash,
so a policy change is a new hash and never a stale cache. Consent rows are never policy lines:
the consent state of a cell comes from one indexed lookup (``authz.consent.lookup``).

Casbin stays the reference: ``Policy.enforce_live`` asks the enforcer directly, and the tests
compare it with the table.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import casbin
from casbin import persist

from authz.consent.vocabulary import CATEGORIES
from authz.consent.vocabulary import PURPOSES
from authz.errors import InvalidInput
from authz.registry.rules import ROLES_BY_TYPE

FILES = ("model.conf", "rules.csv", "obligations.csv")
CONSENT_STATES = ("permit", "deny", "none")
MODES = ("normal", "disaster")
PATIENT_ROLE = "patient"  # the patient themself, for ``self_view`` only
SELF_VIEW = "self_view"
DISASTER = "disaster"
DEFAULT_DENY = "default-deny"
EFFECTS = ("allow", "deny")
OBLIGATIONS = ("lookback_days", "notify_patient", "auditor_review",
               "exclude_undisclosed_to_patient")
MAX_FILE = 256 * 1024
_GROUP_SECTIONS = ("g", "g2", "g3", "g4", "g5")


class PolicyError(InvalidInput):
    """A policy bundle that cannot be loaded; the message names the file and line."""

    code = "invalid_policy"


@dataclass(frozen=True)
class Cell:
    """One decision of the table: the effect, the rule that decided and the obligations."""

    allow: bool
    rule: str
    obligations: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


def bundle_hash(bundle: Mapping[str, str]) -> str:
    """The policy version: SHA-256 of the canonical JSON of the three files."""
    data = json.dumps({name: bundle[name] for name in FILES}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def default_directory() -> Path:
    """``policies/`` beside the package (the repository root of an editable install)."""
    return Path(__file__).resolve().parents[2] / "policies"


def load_bundle(directory: Path) -> dict[str, str]:
    bundle = {}
    for name in FILES:
        path = directory / name
        try:
            if path.stat().st_size > MAX_FILE:
                raise PolicyError(f"{path} is larger than {MAX_FILE} bytes")
            bundle[name] = path.read_text(encoding="utf-8")
        except OSError as error:
            raise PolicyError(f"cannot read {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise PolicyError(f"{path} is not UTF-8") from None
    return bundle


def domain() -> Iterator[tuple[str, str, str, str, str, str]]:
    """Every request the service can make: roles an institution type may register (and the
    patient for self view), every category, purpose and consent state; disaster mode only
    with the disaster purpose."""
    for kind, roles in ROLES_BY_TYPE.items():
        for role in (*roles, PATIENT_ROLE):
            purposes = [SELF_VIEW] if role == PATIENT_ROLE else [
                p for p in PURPOSES if p != SELF_VIEW]
            for purpose in purposes:
                modes = MODES if purpose == DISASTER else ("normal",)
                for category in CATEGORIES:
                    for consent in CONSENT_STATES:
                        for mode in modes:
                            yield role, kind, category, purpose, consent, mode


class _TextAdapter(persist.Adapter):  # type: ignore[misc]
    """Policy lines from a string (the bundle stored in the database), read-only."""

    def __init__(self, text: str) -> None:
        self._lines = [line for line, _ in _csv_lines(text, "rules.csv")]

    def load_policy(self, model: Any) -> None:
        for line in self._lines:
            persist.load_policy_line(line, model)


def _csv_lines(text: str, name: str) -> Iterator[tuple[str, int]]:
    """Non-blank, non-comment lines with their line numbers."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line, number


def _fields(line: str) -> list[str]:
    return [value.strip() for value in next(csv.reader(io.StringIO(line)))]


class Policy:
    """A compiled policy version: ``evaluate`` is a table lookup, ``enforce_live`` asks Casbin."""

    def __init__(self, bundle: Mapping[str, str], *, table: bool = True) -> None:
        """``table=False`` skips compiling the table (tests that only ask Casbin)."""
        self.bundle = {name: bundle[name] for name in FILES}
        self.version = bundle_hash(self.bundle)
        self.groups = _check_rules(self.bundle["rules.csv"])
        self._obligations = _parse_obligations(self.bundle["obligations.csv"], self.groups)
        try:
            model = casbin.Enforcer.new_model(text=self.bundle["model.conf"])
            self._enforcer = casbin.Enforcer(model, _TextAdapter(self.bundle["rules.csv"]))
            self._enforcer.enforce_ex(*next(domain()))  # matchers and arity fail only here
        except Exception as error:  # pycasbin raises bare exceptions for bad models
            raise PolicyError(f"model.conf or rules.csv cannot be loaded: {error}") from None
        self._lock = threading.Lock()  # pycasbin is not thread-safe; the table is
        self.rule_lines = {rule[-1]: ", ".join(["p", *rule])
                           for rule in self._enforcer.get_policy()}
        self.table = {cell: self._live(*cell) for cell in domain()} if table else {}

    def evaluate(self, role: str, institution_type: str, category: str, purpose: str,
                 consent: str, mode: str = "normal") -> Cell:
        """The decision for one cell; anything outside the domain is denied."""
        cell = self.table.get((role, institution_type, category, purpose, consent, mode))
        return cell if cell is not None else Cell(False, DEFAULT_DENY)

    def enforce_live(self, role: str, institution_type: str, category: str, purpose: str,
                     consent: str, mode: str = "normal") -> Cell:
        """The same question asked of the Casbin enforcer itself (tests, ``explain``)."""
        return self._live(role, institution_type, category, purpose, consent, mode)

    def _live(self, *request: str) -> Cell:
        with self._lock:
            allowed, explain = self._enforcer.enforce_ex(*request)
        rule = explain[-1] if explain else DEFAULT_DENY
        if not allowed:
            return Cell(False, rule)
        return Cell(True, rule, MappingProxyType(self._obligations_for(request[3], request[2])))

    def _obligations_for(self, purpose: str, category: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for name, purposes, categories, value in self._obligations:
            if purpose in purposes and category in categories:
                found[name] = value  # the last matching line wins
        return found


def _check_rules(text: str) -> dict[str, dict[str, set[str]]]:
    """Refuse unknown sections, effects and values (a typo must not silently deny), and
    return each group section as {group name: members}."""
    groups: dict[str, dict[str, set[str]]] = {section: {} for section in _GROUP_SECTIONS}
    rules: list[tuple[list[str], int]] = []
    for line, number in _csv_lines(text, "rules.csv"):
        values = _fields(line)
        section = values[0]
        if section in groups:
            if len(values) != 3:
                raise PolicyError(f"rules.csv line {number}: a group line has two values")
            groups[section].setdefault(values[2], set()).add(values[1])
        elif section == "p":
            if len(values) != 10:
                raise PolicyError(f"rules.csv line {number}: a rule has nine values")
            rules.append((values[1:], number))
        else:
            raise PolicyError(f"rules.csv line {number}: unknown section {section!r}")
    known = (
        {role for roles in ROLES_BY_TYPE.values() for role in roles} | {PATIENT_ROLE},
        set(ROLES_BY_TYPE), set(CATEGORIES), set(PURPOSES), set(CONSENT_STATES) | set(MODES))
    for section, vocabulary in zip(("g", "g2", "g3", "g4", "g5"), known, strict=True):
        for group, members in groups[section].items():
            unknown = members - vocabulary - set(groups[section])
            if unknown:
                raise PolicyError(f"rules.csv: {section} group {group!r} has unknown members "
                                  + ", ".join(sorted(unknown)))
    seen: set[str] = set()
    for (priority, role, kind, category, purpose, consent, mode, effect, rule), number in rules:
        where = f"rules.csv line {number}"
        if not priority.isdigit():
            raise PolicyError(f"{where}: priority must be a whole number")
        for value, section, allowed in ((role, "g", known[0]), (kind, "g2", known[1]),
                                        (category, "g3", known[2]), (purpose, "g4", known[3])):
            if value != "*" and value not in allowed and value not in groups[section]:
                raise PolicyError(f"{where}: unknown value {value!r}")
        for value in (consent, mode):
            if value not in known[4] and value not in groups["g5"]:
                raise PolicyError(f"{where}: unknown consent state or mode {value!r}")
        if effect not in EFFECTS:
            raise PolicyError(f"{where}: effect must be allow or deny")
        if not rule or rule in seen:
            raise PolicyError(f"{where}: rule ids must be present and unique")
        seen.add(rule)
    return groups


def _parse_obligations(text: str, groups: dict[str, dict[str, set[str]]]
                       ) -> list[tuple[str, frozenset[str], frozenset[str], int]]:
    parsed = []
    for line, number in _csv_lines(text, "obligations.csv"):
        values = _fields(line)
        where = f"obligations.csv line {number}"
        if len(values) != 4:
            raise PolicyError(f"{where}: obligation, purpose, category, value")
        name, purpose, category, value = values
        if name not in OBLIGATIONS:
            raise PolicyError(f"{where}: unknown obligation {name!r}")
        if not value.isdigit():
            raise PolicyError(f"{where}: the value must be a whole number")
        parsed.append((name, _expand(purpose, PURPOSES, groups["g4"], where),
                       _expand(category, CATEGORIES, groups["g3"], where), int(value)))
    return parsed


def _expand(value: str, vocabulary: Mapping[str, Any], groups: dict[str, set[str]],
            where: str) -> frozenset[str]:
    if value == "*":
        return frozenset(vocabulary)
    if value in vocabulary:
        return frozenset({value})
    if value in groups:
        return frozenset(groups[value])
    raise PolicyError(f"{where}: unknown value {value!r}")


_cache_lock = threading.Lock()
_cache: dict[str, Policy] = {}
CACHE_SIZE = 4


def compiled(bundle: Mapping[str, str]) -> Policy:
    """The compiled policy of ``bundle``, cached per process by its hash."""
    version = bundle_hash(bundle)
    with _cache_lock:
        policy = _cache.get(version)
    if policy is None:
        policy = Policy(bundle)
        with _cache_lock:
            if len(_cache) >= CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[version] = policy
    return policy


def cached(version: str) -> Policy | None:
    """The compiled policy of ``version`` if this process has it."""
    with _cache_lock:
        return _cache.get(version)
