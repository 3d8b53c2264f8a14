"""A bundle that cannot be right is refused as a whole, with the file and line named."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.policy.engine import FILES
from authz.policy.engine import MAX_FILE
from authz.policy.engine import Policy
from authz.policy.engine import PolicyError
from authz.policy.engine import load_bundle

RULE = "p, 40, physician, medical, clinical_record, treatment, permit, any_mode, allow, {}"


def appended(text: str, line: str) -> tuple[str, int]:
    """``text`` with ``line`` added at the end, and that line's number."""
    lines = text.splitlines()
    return "\n".join([*lines, line]) + "\n", len(lines) + 1


@pytest.mark.parametrize(("name", "line", "message"), [
    ("rules.csv", "q, physician, clinician", "unknown section 'q'"),
    ("rules.csv", "P, 40, physician, medical, clinical_record, treatment, permit, any_mode, "
     "allow, upper", "unknown section 'P'"),
    ("rules.csv", RULE.replace("physician", "surgeon").format("bad-role"),
     "unknown value 'surgeon'"),
    ("rules.csv", RULE.replace("medical", "spa").format("bad-type"), "unknown value 'spa'"),
    ("rules.csv", RULE.replace("clinical_record", "xray").format("bad-category"),
     "unknown value 'xray'"),
    ("rules.csv", RULE.replace("treatment", "cure").format("bad-purpose"),
     "unknown value 'cure'"),
    ("rules.csv", RULE.replace("permit", "maybe").format("bad-consent"),
     "unknown consent state or mode 'maybe'"),
    ("rules.csv", RULE.replace("any_mode", "urgent").format("bad-mode"),
     "unknown consent state or mode 'urgent'"),
    ("rules.csv", RULE.replace(", any_mode", "").format("short"), "nine values"),
    ("rules.csv", RULE.format("long, extra"), "nine values"),
    ("rules.csv", "g, physician, clinician, extra", "two values"),
    ("rules.csv", RULE.replace("allow", "permit").format("bad-effect"),
     "effect must be allow or deny"),
    ("rules.csv", RULE.format("physician-treatment"), "rule ids must be present and unique"),
    ("rules.csv", RULE.format(""), "rule ids must be present and unique"),
    ("rules.csv", RULE.replace("40", "high").format("word-priority"), "whole number"),
    ("rules.csv", RULE.replace("40", "-1").format("negative-priority"), "whole number"),
    ("rules.csv", RULE.replace("40", "1.5").format("fraction-priority"), "whole number"),
    ("obligations.csv", "notify_doctor, emergency, *, 1", "unknown obligation 'notify_doctor'"),
    ("obligations.csv", "lookback_days, *, xray, 30", "unknown value 'xray'"),
    ("obligations.csv", "lookback_days, cure, medication, 30", "unknown value 'cure'"),
    ("obligations.csv", "lookback_days, *, medication", "obligation, purpose, category, value"),
    ("obligations.csv", "lookback_days, *, medication, 90 days", "whole number"),
    ("obligations.csv", "lookback_days, *, medication, -5", "whole number"),
])
def test_a_bad_line_is_refused_with_file_and_line(bundle: dict[str, str], name: str, line: str,
                                                  message: str) -> None:
    text, number = appended(bundle[name], line)
    with pytest.raises(PolicyError) as caught:
        Policy({**bundle, name: text})
    assert f"{name} line {number}: " in str(caught.value)
    assert message in str(caught.value)
    assert caught.value.code == "invalid_policy"


def test_a_group_with_an_unknown_member_is_refused(bundle: dict[str, str]) -> None:
    text, _ = appended(bundle["rules.csv"], "g, surgeon, clinician")
    with pytest.raises(PolicyError, match=r"rules\.csv.*unknown members surgeon"):
        Policy({**bundle, "rules.csv": text})


def test_a_model_conf_that_does_not_parse_is_refused(bundle: dict[str, str]) -> None:
    with pytest.raises(PolicyError, match=r"model\.conf.*line 1"):
        Policy({**bundle, "model.conf": "this is not a model\n"})


MODEL_BREAKAGES = {
    "empty": lambda model: "",
    "no effect": lambda model: model.replace("e = priority(p.eft) || deny", ""),
    "no matchers": lambda model: model.split("[matchers]")[0],
    "matcher syntax": lambda model: model.replace("m = (p.role", "m = (p.role ===="),
    "request arity": lambda model: model.replace(
        "r = role, type, category, purpose, consent, mode", "r = role, type"),
    "policy arity": lambda model: model.replace("p = priority, role", "p = role"),
}


@pytest.mark.parametrize("breakage", MODEL_BREAKAGES)
def test_a_broken_model_conf_is_refused(bundle: dict[str, str], breakage: str) -> None:
    """Loaded or not, a model that cannot answer a request must be a PolicyError, never a
    bare RuntimeError or SyntaxError out of pycasbin (a traceback in the CLI, a 500 in the
    API)."""
    model = MODEL_BREAKAGES[breakage](bundle["model.conf"])
    assert model != bundle["model.conf"]
    with pytest.raises(PolicyError, match=r"model\.conf"):
        Policy({**bundle, "model.conf": model})


@pytest.mark.parametrize("problem", ["missing", "not utf-8", "too large"])
def test_load_bundle_refuses_unreadable_files(tmp_path: Path, bundle: dict[str, str],
                                              problem: str) -> None:
    for name in FILES:
        (tmp_path / name).write_text(bundle[name], encoding="utf-8")
    target = tmp_path / "rules.csv"
    if problem == "missing":
        target.unlink()
    elif problem == "not utf-8":
        target.write_bytes("# 規則\n".encode("shift_jis"))
    else:
        target.write_text("#" * (MAX_FILE + 1), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"rules\.csv"):
        load_bundle(tmp_path)
