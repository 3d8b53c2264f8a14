"""The performance harness runs end to end. Only the shape of its figures is checked: timings
depend on the machine and are never asserted."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"


def _registry() -> dict[str, str | None]:
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.BENCHMARKS)


# Contract names not written yet (mapped to None in run.py's registry).
UNIMPLEMENTED = [name for name, module in _registry().items() if module is None]
ENDPOINT_KEYS = {"requests_per_s", "latency_p50_ms", "latency_p99_ms", "errors", "requests",
                 "server_cpu_ms_per_request", "runs_requests_per_s"}


def run_benchmark(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def figures(*args: str) -> dict[str, Any]:
    completed = run_benchmark(*args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)  # stdout is exactly one JSON object
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("name", [*UNIMPLEMENTED, "no-such-benchmark"])
def test_unimplemented_benchmark_exits_2_with_one_line(name: str) -> None:
    completed = run_benchmark(name, "--quick", "--json", timeout=60)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert len(completed.stderr.strip().splitlines()) == 1
    assert "not implemented yet" in completed.stderr


@pytest.mark.slow
def test_audit_quick() -> None:
    result = figures("audit", "--quick", "--json")
    assert result["benchmark"] == "audit"
    assert result["mode"] == "quick"
    assert result["errors"] == 0
    assert "sqlite" in result["databases"]
    for database in result["databases"].values():
        assert set(database) >= {"append_batched", "append_single", "verify"}
        for key in ("append_batched", "append_single", "verify"):
            assert isinstance(database[key]["per_s"], float)
            assert len(database[key]["runs_per_s"]) == result["repeats"]
        assert database["verify"]["ok"] is True
        assert database["verify"]["records"] == database["append_batched"]["events"] == 5000


@pytest.mark.slow
@pytest.mark.parametrize("loadgen", ["auto", "python"])
def test_server_quick(loadgen: str) -> None:
    result = figures("server", "--quick", "--json", "--loadgen", loadgen)
    assert result["benchmark"] == "server"
    assert result["errors"] == 0
    if loadgen == "python":
        assert result["load_generator"]["tool"] == "python"
    (workers,) = result["worker_counts"]  # quick mode: only the `authz serve` default
    for server in ("gunicorn", "granian"):
        summary = result["results"][server][str(workers)]
        assert summary["clean_shutdown"] is True
        assert set(summary["memory"]) == {"processes", "rss_mib", "pss_mib"}
        for endpoint in ("/healthz", "/jwks.json"):
            endpoint_figures = summary["endpoints"][endpoint]
            assert set(endpoint_figures) >= ENDPOINT_KEYS
            assert endpoint_figures["errors"] == 0
            assert endpoint_figures["requests"] > 0
    ratios = result["ratios"]["granian_over_gunicorn"][str(workers)]
    for endpoint in ("/healthz", "/jwks.json"):
        assert set(ratios[endpoint]) == {"throughput", "median_latency"}


TOKEN_OPERATIONS = ("client_credentials", "introspection")
TOKEN_KEYS = {"requests_per_s", "latency_p50_ms", "latency_p99_ms", "errors",
              "unexpected_bodies", "requests", "server_cpu_ms_per_request",
              "runs_requests_per_s"}


@pytest.mark.slow
def test_tokens_quick() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the oidc-provider peer of `tokens` cannot run")
    result = figures("tokens", "--quick", "--json")
    assert result["benchmark"] == "tokens"
    assert result["mode"] == "quick"
    assert result["errors"] == 0
    assert result["servers"]["oidc-provider"]["skipped"] is None
    for server in ("authz", "oidc-provider"):
        summary = result["results"][server]
        assert set(summary["memory"]) == {"processes", "rss_mib", "pss_mib"}
        assert set(summary) >= {*TOKEN_OPERATIONS, "startup_s", "notes"}
        token = summary["client_credentials"]
        assert set(token) == TOKEN_KEYS
        assert token["errors"] == 0
        assert token["requests"] > 0
        introspection = summary["introspection"]
        if introspection is None:  # authz before its endpoint existed: said why
            assert server == "authz"
            assert "404" in summary["notes"]["introspection"]
        else:
            assert set(introspection) == TOKEN_KEYS
            assert introspection["errors"] == 0
    ratios = result["ratios"]["authz_over_oidc_provider"]
    assert set(ratios["client_credentials"]) == {"throughput", "latency_p50", "latency_p99"}
    if result["results"]["authz"]["introspection"] is None:
        assert ratios["introspection"] is None
    else:
        assert set(ratios["introspection"]) == {"throughput", "latency_p50", "latency_p99"}


def test_tokens_without_node_skips_the_peer() -> None:
    """No Node.js: the peer is reported skipped with a reason; nothing hangs, nothing fails."""
    result = figures("tokens", "--quick", "--json", "--servers", "oidc-provider",
                     "--node", "/nonexistent/node")
    assert result["errors"] == 0
    assert result["results"] == {"oidc-provider": None}
    assert "Node.js not found" in result["servers"]["oidc-provider"]["skipped"]
    assert result["ratios"]["authz_over_oidc_provider"] == {
        "client_credentials": None, "introspection": None}
