"""Architecture rules that the code must keep."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Domain packages take a session and plain values; Flask stays in api/, web/ and the CLI.
FLASK_FREE = ["identity", "consent", "policy", "audit", "registry", "keys", "jobs",
              "database.py", "errors.py", "config.py", "context.py", "logs.py"]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("part", FLASK_FREE)
def test_domain_code_does_not_import_flask(part):
    target = ROOT / "authz" / part
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    for path in files:
        for module in imported_modules(path):
            root = module.split(".")[0]
            assert root not in {"flask", "flask_sqlalchemy", "flask_migrate", "flask_limiter",
                                "werkzeug"}, f"{path.relative_to(ROOT)} imports {module}"
            assert module not in {"authz.extensions", "authz.api", "authz.web", "authz.cli"}, (
                f"{path.relative_to(ROOT)} imports {module}")


def test_the_legacy_casbin_distribution_is_not_installed():
    from importlib import metadata

    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("casbin")
    assert metadata.version("pycasbin").startswith("2.8")
