"""``authz policy test FILE``: the operator's scenario CSV through the active or a given policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from flask.testing import FlaskCliRunner
from policy_support import SCENARIOS
from policy_support import Scenario
from policy_support import without_line

from authz.cli import authz_cli
from authz.policy.engine import FILES
from authz.policy.engine import Policy

HEADER = "role,institution_type,category,purpose,consent,mode,expected,note\n"
GOOD = "physician,hospital,medication,treatment_visit,permit,normal,permit,a12\n"


def policy_test(runner: FlaskCliRunner, *args: object) -> Result:
    return runner.invoke(authz_cli, ["policy", "test", *map(str, args)])


def test_the_scenario_table_passes(runner: FlaskCliRunner, scenarios: list[Scenario],
                                   bundle: dict[str, str]) -> None:
    result = policy_test(runner, SCENARIOS)
    assert result.exit_code == 0, result.output
    assert f"{len(scenarios)} of {len(scenarios)} scenarios pass" in result.stdout
    assert Policy(bundle, table=False).version[:12] in result.stdout
    as_json = json.loads(policy_test(runner, SCENARIOS, "--json").stdout)
    assert as_json["scenarios"] == len(scenarios)
    assert as_json["failed"] == []


def test_a_wrong_expectation_fails_naming_the_row(runner: FlaskCliRunner, tmp_path: Path,
                                                  scenarios: list[Scenario]) -> None:
    lines = SCENARIOS.read_text(encoding="utf-8").splitlines(keepends=True)
    row = next(s for s in scenarios if s.request == (
        "emergency_physician", "hospital", "lab_results", "emergency", "none", "normal"))
    lines[row.line - 1] = lines[row.line - 1].replace(",deny,", ",permit,")
    path = tmp_path / "mine.csv"
    path.write_text("".join(lines), encoding="utf-8")
    result = policy_test(runner, path)
    assert result.exit_code == 1, result.output
    assert f"{path}:{row.line}: expected permit, got deny" in result.stdout
    assert f"{len(scenarios) - 1} of {len(scenarios)} scenarios pass" in result.stdout
    failed = json.loads(policy_test(runner, path, "--json").stdout)["failed"]
    assert [(f["line"], f["expected"], f["got"]) for f in failed] == [
        (row.line, "permit", "deny")]


def test_a_failing_row_is_named_by_its_line_in_the_file(runner: FlaskCliRunner,
                                                        tmp_path: Path) -> None:
    """Comment lines count: the operator opens the file at the line the CLI names."""
    path = tmp_path / "mine.csv"
    path.write_text("# my institution's checks\n" + HEADER + GOOD
                    + "physician,hospital,medication,treatment_visit,none,normal,permit,x\n",
                    encoding="utf-8")
    result = policy_test(runner, path)
    assert result.exit_code == 1, result.output
    assert f"{path}:4: expected permit, got deny" in result.stdout


def test_dir_tests_a_policy_directory_before_it_is_loaded(runner: FlaskCliRunner,
                                                          tmp_path: Path,
                                                          bundle: dict[str, str],
                                                          scenarios: list[Scenario]) -> None:
    """Without the emergency rule, the emergency permits of the table fail."""
    rules = bundle["rules.csv"]
    number = next(n for n, line in enumerate(rules.splitlines(), start=1)
                  if line.startswith("p,") and line.endswith("emergency-summary"))
    for name in FILES:
        text = without_line(rules, number) if name == "rules.csv" else bundle[name]
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = policy_test(runner, SCENARIOS, "--dir", tmp_path)
    assert result.exit_code == 1, result.output
    assert "emergency" not in result.stderr
    failing = [line for line in result.stdout.splitlines() if ": expected permit, got deny" in line]
    emergency = [s.line for s in scenarios if s.allow and s.request[3] == "emergency"]
    assert len(failing) == len(emergency) > 0


def assert_one_error_line(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authz: error: ")
    assert fragment in lines[0]


@pytest.mark.parametrize(("content", "fragment"), [
    ("role,category\nphysician,medication\n", "missing columns: institution_type"),
    (HEADER, "no scenarios"),
    (HEADER + GOOD.replace(",permit,a12", ",maybe,a12"), ":2: expected must be"),
    (HEADER + GOOD.replace(",permit,normal", ",granted,normal"), ":2: consent must be"),
    (HEADER + GOOD.replace(",normal,", ",urgent,"), ":2: mode must be"),
    (HEADER + GOOD + GOOD.replace("permit,normal,permit", "permit,normal"), ":3:"),
    (b"\xff\xfe role,institution_type\n", "not a UTF-8 CSV file"),
    # A typo must not pass silently as a deny row.
    (HEADER + GOOD.replace("medication", "medicaton"), ":2:"),
    (HEADER + GOOD.replace("physician", "surgeon"), ":2:"),
    (HEADER + GOOD.replace("hospital", "spa"), ":2:"),
    (HEADER + GOOD.replace("treatment_visit", "treatment"), ":2:"),
], ids=["columns", "empty", "expected", "consent", "mode", "short-row", "not-utf8",
        "unknown-category", "unknown-role", "unknown-type", "unknown-purpose"])
def test_a_malformed_csv_is_one_error_line(runner: FlaskCliRunner, tmp_path: Path,
                                           content: str | bytes, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    assert_one_error_line(policy_test(runner, path), fragment)


def test_a_missing_file_is_one_error_line(runner: FlaskCliRunner, tmp_path: Path) -> None:
    assert_one_error_line(policy_test(runner, tmp_path / "nope.csv"), "cannot read")


def test_a_csv_saved_with_a_byte_order_mark_is_read(runner: FlaskCliRunner,
                                                    tmp_path: Path) -> None:
    """Spreadsheet programs write UTF-8 with a BOM; the header must still be recognised."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + GOOD).encode())
    result = policy_test(runner, path)
    assert result.exit_code == 0, result.output
    assert "1 of 1 scenarios pass" in result.stdout
