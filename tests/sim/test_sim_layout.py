"""The simulator's layering: Flask only in its HTTP and CLI faces; the verifier never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AUTHZ = Path(__file__).resolve().parents[2] / "authz"
FLASK_FACES = {"http.py", "cli.py"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((AUTHZ / "sim").glob("*.py")), ids=lambda p: p.name)
def test_sim_domain_modules_do_not_import_flask(path):
    if path.name in FLASK_FACES:
        return
    for module in imported(path):
        assert module.split(".")[0] not in {"flask", "werkzeug", "flask_sqlalchemy"}, module
        assert not module.startswith(("authz.api", "authz.web", "authz.cli", "authz.extensions"))


def test_the_verifier_never_imports_the_simulator():
    # docs/jpki-contract.md: the service sees certificates, signatures and status bytes only.
    for path in sorted((AUTHZ / "identity").rglob("*.py")):
        for module in imported(path):
            assert not module.startswith("authz.sim"), f"{path.name} imports {module}"
