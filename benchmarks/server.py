"""``server``: gunicorn (sync workers) against granian (WSGI) serving authz, side by side.

Each server runs as ``authz serve --server NAME --workers N`` on a free loopback port, with a
fresh instance folder (so a fresh SQLite database and fresh signing keys), until ``/readyz``
answers 200. Every endpoint is warmed up, then loaded with a fixed number of requests (bounded
in time as well). Servers alternate within each repeat, so drift in the machine's background
load falls on both. The load generator shares the machine's cores with the server under test:
absolute figures are lower than on a dedicated client, the comparison is like for like.

Figures per server, worker count and endpoint are medians over the repeats; ``errors`` are
summed. ``server_cpu_ms_per_request`` is the CPU time of the whole server process tree (master
and workers) during the measured run, divided by the answered requests.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.common import ROOT
from benchmarks.common import BenchmarkError
from benchmarks.common import figure
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import ratio

SERVERS = ("gunicorn", "granian")
ENDPOINTS = ("/healthz", "/jwks.json")
HOST = "127.0.0.1"
FULL_WORKERS = (2, 4)
FULL = {"requests": 10_000, "repeats": 3}
QUICK = {"requests": 1_000, "repeats": 1}
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 25.0  # above gunicorn's graceful_timeout (20 s) in authz.server
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--workers", nargs="+", type=int, metavar="N",
                        help="worker counts to try (default: 2 4; --quick: the `authz serve`"
                        " default)")
    parser.add_argument("--requests", type=int, metavar="N",
                        help=f"requests per endpoint and run (default: {FULL['requests']};"
                        f" --quick: {QUICK['requests']})")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help=f"runs per server and worker count (default: {FULL['repeats']};"
                        f" --quick: {QUICK['repeats']})")
    parser.add_argument("--connections", type=int, default=8, metavar="N",
                        help="concurrent client connections (default: 8)")
    parser.add_argument("--max-seconds", type=float, default=60.0, metavar="S",
                        help="time bound of one measured load run (default: 60)")
    parser.add_argument("--loadgen", choices=loadgen.TOOLS, default="auto",
                        help="load generator (default: wrk if installed, else python)")


# -- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def authz_command() -> list[str]:
    """The ``authz`` console script beside this interpreter (the project's venv)."""
    script = Path(sys.executable).parent / "authz"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from authz.cli import main; main()"]


def _die_with_harness() -> None:
    """In the child before exec: SIGTERM the server if the harness itself is killed (Linux)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def session_members(session_id: int) -> list[int]:
    """Processes of a session (a server started with ``start_new_session``): master, workers."""
    members: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def cpu_seconds(session_id: int) -> float:
    total = 0
    for pid in session_members(session_id):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def _kib(path: Path, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def memory(session_id: int) -> dict[str, Any]:
    """RSS counts shared pages once per process; PSS splits them, so its sum is the real cost."""
    pids = session_members(session_id)
    rss = sum(_kib(Path(f"/proc/{pid}/status"), "VmRSS:") for pid in pids)
    pss = sum(_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:") for pid in pids)
    return {"processes": len(pids), "rss_mib": figure(rss / 1024, 1) if pids else None,
            "pss_mib": figure(pss / 1024, 1) if pss else None}


@dataclass
class Server:
    name: str
    workers: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float = 0.0
    clean_shutdown: bool = False
    exit_code: int | None = None

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""


def _get_status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _wait_ready(server: Server, started: float) -> None:
    deadline = started + READY_TIMEOUT_S
    while _get_status(server.port, "/readyz") != 200:
        if server.process.poll() is not None:
            raise BenchmarkError(f"{server.name} exited with {server.process.returncode} before"
                                 f" it was ready: {server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{server.name} not ready after {READY_TIMEOUT_S:.0f} s:"
                                 f" {server.log_tail()}")
        time.sleep(0.05)
    server.startup_s = time.monotonic() - started
    # /readyz answered from one worker; wait until every worker process exists too.
    while len(session_members(server.process.pid)) < server.workers + 1:
        if time.monotonic() > deadline or not Path("/proc").is_dir():
            break
        time.sleep(0.05)


def _stop(server: Server) -> None:
    """SIGTERM to the master; SIGKILL to the whole session after a timeout or for stragglers."""
    process = server.process
    clean = True
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            clean = False
    if session_members(process.pid):  # a worker outlived its master, or the master hung
        clean = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    server.exit_code = process.wait()
    server.clean_shutdown = clean


@contextlib.contextmanager
def serving(name: str, workers: int, workdir: Path) -> Iterator[Server]:
    """Run ``authz serve`` on a fresh instance folder; always stopped on the way out."""
    instance = workdir / f"{name}-{workers}-{secrets.token_hex(4)}"
    instance.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env["AUTHZ_INSTANCE_PATH"] = str(instance)  # fresh SQLite database, secrets and keys
    port = free_port()
    log_path = instance / "server.log"
    command = [*authz_command(), "serve", "--server", name, "--workers", str(workers),
               "--host", HOST, "--port", str(port)]
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   start_new_session=True, preexec_fn=_die_with_harness)
    server = Server(name, workers, port, process, log_path)
    try:
        _wait_ready(server, started)
        yield server
    finally:
        _stop(server)


# -- measuring ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    servers: tuple[str, ...]
    workers: tuple[int, ...]
    requests: int
    warmup: int
    repeats: int
    connections: int
    max_seconds: float
    tool: str


@dataclass
class Samples:
    """Raw figures of one server and worker count over the repeats."""

    outcomes: dict[str, list[loadgen.Outcome]] = field(default_factory=lambda: defaultdict(list))
    cpu_ms_per_request: dict[str, list[float]] = field(
        default_factory=lambda: defaultdict(list))
    startup_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    pss_mib: list[float] = field(default_factory=list)
    processes: int = 0
    clean_shutdowns: list[bool] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)


def _measure(server: Server, settings: Settings, samples: Samples) -> None:
    for path in ENDPOINTS:
        def load(count: int, path: str = path) -> loadgen.Load:
            return loadgen.Load(HOST, server.port, path, count, settings.connections,
                                settings.max_seconds)

        loadgen.generate(settings.tool, load(settings.warmup))
        before = cpu_seconds(server.process.pid)
        outcome = loadgen.generate(settings.tool, load(settings.requests))
        cpu = cpu_seconds(server.process.pid) - before
        samples.outcomes[path].append(outcome)
        if outcome.requests:
            samples.cpu_ms_per_request[path].append(cpu * 1000 / outcome.requests)
        log(f"  {server.name} x{server.workers} {path}: {outcome.per_second:.0f} req/s,"
            f" p50 {outcome.p50_ms:.2f} ms, p99 {outcome.p99_ms:.2f} ms,"
            f" {outcome.errors} errors")
    mem = memory(server.process.pid)
    samples.processes = int(mem["processes"])
    if mem["rss_mib"] is not None:
        samples.rss_mib.append(float(mem["rss_mib"]))
    if mem["pss_mib"] is not None:
        samples.pss_mib.append(float(mem["pss_mib"]))


def _summary(samples: Samples) -> dict[str, Any]:
    endpoints: dict[str, Any] = {}
    for path in ENDPOINTS:
        outcomes = samples.outcomes[path]
        endpoints[path] = {
            "requests_per_s": figure(median([o.per_second for o in outcomes]), 1),
            "latency_p50_ms": figure(median([o.p50_ms for o in outcomes])),
            "latency_p99_ms": figure(median([o.p99_ms for o in outcomes])),
            "errors": sum(o.errors for o in outcomes),
            "requests": sum(o.requests for o in outcomes),
            "server_cpu_ms_per_request": figure(median(samples.cpu_ms_per_request[path])),
            "runs_requests_per_s": [figure(o.per_second, 1) for o in outcomes],
        }
    return {
        "endpoints": endpoints,
        "startup_s": figure(median(samples.startup_s), 2),
        "memory": {"processes": samples.processes,
                   "rss_mib": figure(median(samples.rss_mib), 1),
                   "pss_mib": figure(median(samples.pss_mib), 1)},
        "clean_shutdown": all(samples.clean_shutdowns),
        "exit_codes": samples.exit_codes,
    }


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if "granian" not in results or "gunicorn" not in results:
        return {}
    ratios: dict[str, Any] = {}
    for workers, granian in results["granian"].items():
        gunicorn = results["gunicorn"].get(workers)
        if gunicorn is None:
            continue
        ratios[workers] = {}
        for path in ENDPOINTS:
            a, b = granian["endpoints"][path], gunicorn["endpoints"][path]
            ratios[workers][path] = {
                "throughput": ratio(a["requests_per_s"] or 0.0, b["requests_per_s"] or 0.0),
                "median_latency": ratio(a["latency_p50_ms"] or 0.0, b["latency_p50_ms"] or 0.0),
            }
    return ratios


def _settings(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    workers = args.workers or ([default_workers()] if quick else list(FULL_WORKERS))
    requests = args.requests or (QUICK["requests"] if quick else FULL["requests"])
    repeats = args.repeats or (QUICK["repeats"] if quick else FULL["repeats"])
    if min(workers) < 1 or requests < 1 or repeats < 1 or args.connections < 1:
        raise BenchmarkError("--workers, --requests, --repeats and --connections must be >= 1")
    return Settings(servers=tuple(args.servers), workers=tuple(workers), requests=requests,
                    warmup=max(200, requests // 10), repeats=repeats,
                    connections=args.connections, max_seconds=args.max_seconds,
                    tool=loadgen.choose(args.loadgen))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def default_workers() -> int:
    """The ``--workers`` default of ``authz serve``: what a quick run measures."""
    from authz.cli import serve_command

    for param in serve_command.params:
        if param.name == "workers" and isinstance(param.default, int):
            return param.default
    return 4


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = _settings(args)
    log(f"load generator: {settings.tool}; servers {', '.join(settings.servers)}; workers"
        f" {settings.workers}; {settings.requests} requests x {settings.repeats} repeats")
    samples: dict[tuple[str, int], Samples] = defaultdict(Samples)
    with tempfile.TemporaryDirectory(prefix="authz-bench-server-") as folder:
        for workers in settings.workers:
            for repeat in range(settings.repeats):
                # Alternate which server goes first, so neither always runs on a warmer machine.
                order = settings.servers if repeat % 2 == 0 else settings.servers[::-1]
                for name in order:
                    log(f"{name} with {workers} workers, repeat {repeat + 1}/{settings.repeats}")
                    entry = samples[(name, workers)]
                    server: Server | None = None
                    try:
                        with serving(name, workers, Path(folder)) as server:
                            entry.startup_s.append(server.startup_s)
                            _measure(server, settings, entry)
                    finally:
                        if server is not None:
                            entry.clean_shutdowns.append(server.clean_shutdown)
                            entry.exit_codes.append(server.exit_code)
    results: dict[str, dict[str, Any]] = {}
    for name in settings.servers:
        results[name] = {str(w): _summary(samples[(name, w)]) for w in settings.workers}
    errors = sum(e["errors"] for by_workers in results.values()
                 for summary in by_workers.values() for e in summary["endpoints"].values())
    return {
        "load_generator": {"tool": settings.tool, "version": loadgen.describe(settings.tool),
                           "connections": settings.connections,
                           "requests_per_run": settings.requests,
                           "warmup_requests": settings.warmup, "repeats": settings.repeats,
                           "max_seconds_per_run": settings.max_seconds},
        "servers": {
            "gunicorn": {"version": _version("gunicorn"), "worker_class": "sync"},
            "granian": {"version": _version("granian"), "interface": "wsgi"},
        },
        "worker_counts": list(settings.workers),
        "results": results,
        "ratios": {"granian_over_gunicorn": _ratios(results)},
        "errors": errors,
    }
