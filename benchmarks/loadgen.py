"""HTTP load generators for loopback benchmarks, bounded in request count and in time.

``wrk`` is used when it is on PATH: one thread, ``connections`` connections, stopped by a Lua
script once the requested count has answered. Otherwise (CI machines often lack wrk) the load
comes from ``connections`` processes, each with one keep-alive ``http.client`` connection. Both
are closed-loop (a connection sends its next request when the previous one has answered), and
both reconnect when a server closes the connection after a response, as gunicorn's sync workers
do. Latency therefore includes the TCP connect whenever the server does not keep connections.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import BenchmarkError
from benchmarks.common import percentile

TOOLS = ("auto", "wrk", "python")
REQUEST_TIMEOUT_S = 10

# wrk's main thread sleeps for the whole -d duration even after every worker thread stopped, so
# on reaching its count the thread sends SIGINT to wrk itself: wrk then stops early and reports
# the true elapsed time. Without LuaJIT's ffi the run is bounded by -d only (throughput stays
# right; the count is then exceeded).
WRK_SCRIPT = """
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
  ffi.cdef[[
  int kill(int pid, int sig);
  int getpid(void);
  ]]
end
local limit = 0
local count = 0

function init(args)
  limit = tonumber(args[1])
end

function response(status, headers, body)
  count = count + 1
  if count == limit and has_ffi then
    ffi.C.kill(ffi.C.getpid(), 2)
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'AUTHZ_BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"ffi":%s}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), tostring(has_ffi)))
end
"""


@dataclass(frozen=True)
class Load:
    host: str
    port: int
    path: str
    requests: int
    connections: int
    max_seconds: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Outcome:
    """``requests`` counts answered requests (any status); ``errors`` non-2xx and I/O failures."""

    requests: int
    errors: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else math.nan


def choose(preference: str) -> str:
    """``wrk`` or ``python``; ``auto`` takes wrk when it is installed."""
    if preference == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if preference == "wrk":
        raise BenchmarkError("wrk is not on PATH (apt-get install wrk, or use --loadgen python)")
    return "python"


def describe(tool: str) -> str:
    if tool != "wrk":
        return "python http.client, one keep-alive connection per process"
    completed = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (completed.stdout or completed.stderr).splitlines()[0].strip()


def generate(tool: str, load: Load) -> Outcome:
    return run_wrk(load) if tool == "wrk" else run_python(load)


def wrk_stats(script_text: str, url: str, connections: int, max_seconds: float,
              script_args: list[str], files: dict[str, str] | None = None) -> dict[str, Any]:
    """Run wrk with a Lua script that prints one ``AUTHZ_BENCH {json}`` line; its figures.

    ``files`` are written beside the script and ``{name}`` in ``script_args`` is replaced by
    the path of the file of that name (bodies for a POST load, say).
    """
    with tempfile.TemporaryDirectory(prefix="authz-wrk-") as folder:
        script = Path(folder) / "script.lua"
        script.write_text(script_text)
        paths = {}
        for name, content in (files or {}).items():
            paths[name] = Path(folder) / name
            paths[name].write_text(content)
        args = [str(paths[a[1:-1]]) if a.startswith("{") and a[1:-1] in paths else a
                for a in script_args]
        command = ["wrk", "-t1", f"-c{connections}", f"-d{math.ceil(max_seconds)}s",
                   f"--timeout={REQUEST_TIMEOUT_S}s", "-s", str(script), url, "--", *args]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                       timeout=max_seconds + 30)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"wrk did not finish within {max_seconds + 30:.0f} s") from None
    lines = [ln for ln in completed.stdout.splitlines() if ln.startswith("AUTHZ_BENCH ")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
        raise BenchmarkError(f"wrk failed (exit {completed.returncode}): {' '.join(tail)}")
    stats: dict[str, Any] = json.loads(lines[-1].removeprefix("AUTHZ_BENCH "))
    return stats


def io_errors(stats: dict[str, Any]) -> int:
    return sum(int(stats[k]) for k in ("connect", "read", "write", "timeout"))


def run_wrk(load: Load) -> Outcome:
    stats = wrk_stats(WRK_SCRIPT, load.url, load.connections, load.max_seconds,
                      [str(load.requests)])
    return Outcome(requests=int(stats["requests"]),
                   errors=io_errors(stats) + int(stats["status"]),
                   elapsed_s=int(stats["duration_us"]) / 1e6,
                   p50_ms=int(stats["p50_us"]) / 1000, p99_ms=int(stats["p99_us"]) / 1000)


@dataclass(frozen=True)
class _ClientResult:
    latencies: list[float]
    errors: int
    started: float
    finished: float


def _client(host: str, port: int, path: str, count: int, max_seconds: float) -> _ClientResult:
    """One connection sending ``count`` GETs back to back (in a worker process)."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
    latencies: list[float] = []
    errors = 0
    started = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux
    deadline = started + max_seconds
    for _ in range(count):
        if time.monotonic() >= deadline:
            break
        began = time.perf_counter()
        try:
            connection.request("GET", path)  # HTTP/1.1: keep-alive unless the server closes
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()  # the next request() reconnects
            continue
        latencies.append(time.perf_counter() - began)
        if not 200 <= response.status < 300:
            errors += 1
    finished = time.monotonic()
    connection.close()
    return _ClientResult(latencies, errors, started, finished)


def _default_signals() -> None:
    """Pool workers must die on SIGTERM, as ``Pool.terminate`` expects.

    A forked worker inherits the harness's SIGTERM handler; a handler only sets a flag, and a
    worker that gets the signal just before blocking on the pool's queue lock sleeps forever.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_python(load: Load) -> Outcome:
    share, extra = divmod(load.requests, load.connections)
    jobs = [(load.host, load.port, load.path, share + (1 if i < extra else 0), load.max_seconds)
            for i in range(load.connections)]
    with multiprocessing.get_context().Pool(load.connections, initializer=_default_signals) as pool:
        results = pool.starmap(_client, [job for job in jobs if job[3] > 0])
        pool.close()  # workers leave on their own; terminate() is only the fallback
        pool.join()
    latencies = sorted(lat for result in results for lat in result.latencies)
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    return Outcome(requests=len(latencies), errors=sum(r.errors for r in results),
                   elapsed_s=elapsed, p50_ms=percentile(latencies, 0.50) * 1000,
                   p99_ms=percentile(latencies, 0.99) * 1000)
