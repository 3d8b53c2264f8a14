"""``tokens``: the token endpoint and introspection of authz against node-oidc-provider.

Two operations, each on both servers, in one run on the same machine with the same load
generator and connection count:

* ``client_credentials``: ``POST`` the token endpoint with ``grant_type=client_credentials``,
  client authentication ``private_key_jwt`` (ES256) and an RFC 8707 ``resource``; the answer is
  an RFC 9068 JWT access token. Each request carries its own assertion (a fresh ``jti``: both
  servers refuse a replay), so N distinct assertions are signed *before* the timed run and the
  load generator only cycles through the prepared bodies; its own signing cost is not in the
  figures. Assertions: ``aud`` = the issuer (what authz requires; oidc-provider accepts the
  issuer, the token endpoint URL or the endpoint's own URL), valid 4 minutes.
* ``introspection`` (RFC 7662): a resource-server client, authenticated the same way, asks
  about access tokens issued for its resource just before the run. authz: ``POST
  /oauth/introspect`` of its JWT access tokens, by a client of a ``resource_server``
  institution holding the ``introspect`` scope. The endpoint is probed first; a 404 reports
  ``"introspection": null`` with a note (the benchmark is ready before the endpoint is).
  oidc-provider refuses to introspect structured (JWT) tokens by design, so its figures are for
  opaque access tokens of a second resource indicator: the form it can introspect.

authz runs as ``authz serve`` (gunicorn sync workers, the ``authz serve`` default count) on a
fresh instance folder (SQLite, audit on: every issued token and every introspection is an audit
event), with the institutions and clients registered by the real ``authz`` CLI before it starts.
Its per-client rate limits (60 tokens a minute) would refuse nearly all of a load run, so the
instance's ``config.py`` sets ``RATELIMIT_ENABLED = False``; oidc-provider has no rate limiting.
oidc-provider (``benchmarks/node``, exact version in its package.json and lock file) runs as one
Node.js process with its default in-memory adapter, which is its advantage: authz writes every
token and audit event to SQLite. Clustering it would need a shared adapter (the in-memory one
is per process). Node dependencies are installed on first use (``npm install``), not at import.

Figures per server and operation are medians over the repeats (a fresh server each repeat,
order alternating). ``unexpected_bodies`` counts 200 answers without an access token, or
introspection answers that are not ``"active": true``; they count as errors. Ratios are
authz / oidc-provider: throughput (goal >= 1.0) and p50 / p99 latency (lower is better).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import http.client
import json
import math
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
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
from benchmarks.common import percentile
from benchmarks.common import ratio
from benchmarks.server import authz_command
from benchmarks.server import cpu_seconds
from benchmarks.server import default_workers
from benchmarks.server import free_port
from benchmarks.server import memory
from benchmarks.server import session_members

SERVERS = ("authz", "oidc-provider")
OPERATIONS = ("client_credentials", "introspection")
HOST = "127.0.0.1"
FULL = {"requests": 5_000, "repeats": 3}
QUICK = {"requests": 300, "repeats": 1}
SCOPE = "decisions"
RESOURCE = f"http://{HOST}/bench-api"  # an RFC 8707 resource indicator, never contacted
OPAQUE_RESOURCE = f"http://{HOST}/bench-api-opaque"  # oidc-provider: opaque tokens
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 240  # both servers: at most 5 minutes (authz refuses more)
ACCESS_TOKEN_TTL_S = 300
MAX_RUN_SECONDS = 180.0  # a run must end while its assertions and tokens are still valid
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 25.0  # above gunicorn's graceful_timeout (20 s) in authz.server
CLI_TIMEOUT_S = 120.0
NPM_TIMEOUT_S = 300.0
NODE_DIR = ROOT / "benchmarks" / "node"
PROVIDER_SCRIPT = NODE_DIR / "provider.mjs"
PEER_PACKAGE = "oidc-provider"
NPM_NOISE = ("at ", "syscall", "errno", "code:", "address:", "port:", "type:", "}")
ACCESS_TOKEN_BODY = r'"access_token"\s*:\s*"'
ACTIVE_BODY = r'"active"\s*:\s*true'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--requests", type=int, metavar="N",
                        help=f"requests per operation and run (default: {FULL['requests']};"
                        f" --quick: {QUICK['requests']})")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help=f"runs per server (default: {FULL['repeats']};"
                        f" --quick: {QUICK['repeats']})")
    parser.add_argument("--connections", type=int, default=8, metavar="N",
                        help="concurrent client connections, the same for both (default: 8)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="authz gunicorn workers (default: the `authz serve` default)")
    parser.add_argument("--max-seconds", type=float, default=120.0, metavar="S",
                        help="time bound of one measured load run (default: 120, at most"
                        f" {MAX_RUN_SECONDS:.0f}: assertions live {ASSERTION_LIFETIME_S} s)")
    parser.add_argument("--loadgen", choices=loadgen.TOOLS, default="auto",
                        help="load generator (default: wrk if installed, else python)")
    parser.add_argument("--node", default="node", metavar="PATH",
                        help="Node.js executable for oidc-provider (default: node on PATH)")


# -- keys and assertions -------------------------------------------------------------------------

class Caller:
    """A ``private_key_jwt`` client: an ES256 key pair, and its id once registered."""

    def __init__(self, kid: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.client_id = ""

    def private_jwk(self) -> dict[str, str]:
        from jwt.algorithms import ECAlgorithm

        jwk = json.loads(ECAlgorithm.to_jwk(self.key))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def public_jwks(self) -> dict[str, Any]:
        jwk = self.private_jwk()
        return {"keys": [{k: jwk[k] for k in ("kty", "crv", "x", "y", "kid", "alg", "use")}]}

    def assertions(self, audience: str, count: int) -> list[str]:
        """``count`` assertions with distinct ``jti``, valid from now for 4 minutes."""
        import jwt

        now = int(time.time())
        base = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now,
                "exp": now + ASSERTION_LIFETIME_S}
        return [jwt.encode({**base, "jti": secrets.token_urlsafe(18)}, self.key,
                           algorithm="ES256", headers={"kid": self.kid, "typ": "JWT"})
                for _ in range(count)]


def form(caller: Caller, assertion: str, **fields: str) -> str:
    return urllib.parse.urlencode({**fields, "client_id": caller.client_id,
                                   "client_assertion_type": JWT_BEARER,
                                   "client_assertion": assertion})


# -- servers -------------------------------------------------------------------------------------

@dataclass
class Target:
    """A running server and what the load needs to know about it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    token_path: str
    introspect_path: str
    system: Caller
    resource_server: Caller
    token_resource: str | None  # the ``resource`` of token requests (None: not supported)
    pool_resource: str | None  # the ``resource`` of the tokens to introspect
    workers: int = 1
    startup_s: float = 0.0

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    def token_bodies(self, count: int, resource: str | None = None) -> list[str]:
        extra = {"resource": resource} if resource else {}
        return [form(self.system, a, grant_type="client_credentials", scope=SCOPE, **extra)
                for a in self.system.assertions(self.issuer, count)]

    def introspect_bodies(self, tokens: list[str], count: int) -> list[str]:
        return [form(self.resource_server, a, token=tokens[i % len(tokens)],
                     token_type_hint="access_token")
                for i, a in enumerate(self.resource_server.assertions(self.issuer, count))]

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""


def _die_with_harness() -> None:
    """In the child before exec: SIGTERM the server if the harness itself is killed (Linux)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(extra)
    return env


def _request(port: int, method: str, path: str, body: str | None = None,
             timeout: float = 10.0) -> tuple[int | None, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return None, ""
    finally:
        connection.close()


def _start(command: list[str], env: dict[str, str], log_path: Path,
           cwd: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True, preexec_fn=_die_with_harness)


def _wait_ready(target: Target, path: str, started: float) -> None:
    deadline = started + READY_TIMEOUT_S
    while _request(target.port, "GET", path, timeout=2)[0] != 200:
        if target.process.poll() is not None:
            raise BenchmarkError(f"{target.name} exited with {target.process.returncode} before"
                                 f" it was ready: {target.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{target.name} not ready after {READY_TIMEOUT_S:.0f} s:"
                                 f" {target.log_tail()}")
        time.sleep(0.05)
    target.startup_s = time.monotonic() - started
    while len(session_members(target.process.pid)) < target.workers + 1:  # + gunicorn master
        if time.monotonic() > deadline or not Path("/proc").is_dir() or target.workers == 1:
            break
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, then SIGKILL to the whole session after a timeout; True when it left cleanly."""
    clean = True
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            clean = False
    if session_members(process.pid):
        clean = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return clean


def _cli(env: dict[str, str], *args: str) -> str:
    command = [*authz_command(), *args]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                                   timeout=CLI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"`authz {' '.join(args[:2])}` did not finish within"
                             f" {CLI_TIMEOUT_S:.0f} s") from None
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
        raise BenchmarkError(f"`authz {' '.join(args[:2])}` exited with"
                             f" {completed.returncode}: {' '.join(tail)}")
    return completed.stdout


def _cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    output = _cli(env, *args, "--json")
    try:
        value = json.loads(output.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise BenchmarkError(f"`authz {' '.join(args[:2])} --json` printed no JSON") from None
    if not isinstance(value, dict):
        raise BenchmarkError(f"`authz {' '.join(args[:2])} --json` printed {value!r}")
    return value


def _cli_has_resource_uri() -> bool:
    """Whether ``authz client add`` takes ``--resource-uri`` (RFC 8707 resource servers)."""
    from authz.cli import client_add

    return any(param.name == "resource_uri" for param in client_add.params)


@contextlib.contextmanager
def authz_server(workdir: Path, workers: int) -> Iterator[Target]:
    """Fresh instance, clients registered with the ``authz`` CLI, then ``authz serve``."""
    instance = workdir / f"authz-{secrets.token_hex(4)}"
    instance.mkdir(parents=True)
    # The token endpoint allows 60 requests a minute per client: a load run would be refused.
    (instance / "config.py").write_text("RATELIMIT_ENABLED = False\n")
    env = _clean_env(AUTHZ_INSTANCE_PATH=str(instance))
    system, resource_server = Caller("bench-system-1"), Caller("bench-rs-1")
    for caller in (system, resource_server):
        (instance / f"{caller.kid}.jwks.json").write_text(json.dumps(caller.public_jwks()))
    with_resource = _cli_has_resource_uri()
    _cli(env, "db", "upgrade")
    clinic = _cli_json(env, "institution", "add", "--name", "Benchmark clinic", "--type",
                       "clinic", "--code", "BENCH-CLINIC")
    system.client_id = _cli_json(
        env, "client", "add", "--institution", str(clinic["id"]), "--name", "Benchmark system",
        "--auth-method", "private_key_jwt", "--jwks", str(instance / f"{system.kid}.jwks.json"),
        "--scope", SCOPE)["client_id"]
    api = _cli_json(env, "institution", "add", "--name", "Benchmark API", "--type",
                    "resource_server", "--code", "BENCH-API")
    resource_args = ["--resource-uri", RESOURCE] if with_resource else []
    resource_server.client_id = _cli_json(
        env, "client", "add", "--institution", str(api["id"]), "--name", "Benchmark API",
        "--auth-method", "private_key_jwt", "--jwks",
        str(instance / f"{resource_server.kid}.jwks.json"), "--scope", "introspect",
        *resource_args)["client_id"]

    port = free_port()
    log_path = instance / "server.log"
    started = time.monotonic()
    process = _start([*authz_command(), "serve", "--workers", str(workers), "--host", HOST,
                      "--port", str(port)], env, log_path, ROOT)
    target = Target("authz", port, process, log_path, "/oauth/token", "/oauth/introspect",
                    system, resource_server, RESOURCE if with_resource else None,
                    RESOURCE if with_resource else None, workers=workers)
    try:
        _wait_ready(target, "/readyz", started)
        yield target
    finally:
        _stop(process)


def peer_unavailable(node: str) -> str | None:
    """Why oidc-provider cannot run here (no Node.js), or None."""
    if shutil.which(node) is None:
        return f"Node.js not found ({node!r} is not on PATH): oidc-provider skipped"
    return None


def _installed_version() -> str | None:
    with contextlib.suppress(OSError, ValueError):
        manifest = NODE_DIR / "node_modules" / PEER_PACKAGE / "package.json"
        return str(json.loads(manifest.read_text())["version"])
    return None


def wanted_version() -> str:
    return str(json.loads((NODE_DIR / "package.json").read_text())["dependencies"][PEER_PACKAGE])


def ensure_node_dependencies() -> str:
    """Install ``benchmarks/node`` from its package.json and lock file unless already there.

    Under ``flock`` on ``benchmarks/node/.install.lock``: two runs at once install once.
    """
    wanted = wanted_version()
    if _installed_version() == wanted:
        return wanted
    npm = shutil.which("npm")
    if npm is None:
        raise BenchmarkError("npm not found: cannot install oidc-provider into benchmarks/node"
                             " (install Node.js with npm, or run with --servers authz)")
    with (NODE_DIR / ".install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() != wanted:
            _npm_install(npm, wanted)
    installed = _installed_version()
    if installed != wanted:
        raise BenchmarkError(f"npm install left {PEER_PACKAGE} {installed}, expected {wanted}")
    return wanted


def _npm_install(npm: str, wanted: str) -> None:
    log(f"installing {PEER_PACKAGE} {wanted} into benchmarks/node (npm install)")
    try:
        completed = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                   capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"npm install in benchmarks/node did not finish within"
                             f" {NPM_TIMEOUT_S:.0f} s") from None
    if completed.returncode != 0:
        lines = [ln.removeprefix("npm error").strip()
                 for ln in (completed.stderr or completed.stdout).splitlines()]
        useful = [ln for ln in lines if ln and not ln.startswith(NPM_NOISE)]
        raise BenchmarkError(f"npm install in benchmarks/node failed (exit"
                             f" {completed.returncode}): {' | '.join(useful[:3])}")


def node_version(node: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        completed = subprocess.run([node, "--version"], capture_output=True, text=True,
                                   timeout=10, check=False)
        return completed.stdout.strip() or None
    return None


@contextlib.contextmanager
def peer_server(workdir: Path, node: str) -> Iterator[Target]:
    """oidc-provider in one Node.js process with its in-memory adapter."""
    folder = workdir / f"oidc-provider-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    system, resource_server = Caller("bench-system-1"), Caller("bench-rs-1")
    system.client_id, resource_server.client_id = "bench-system", "bench-api"
    port = free_port()
    signing = Caller("provider-1")
    client = {"grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
              "scope": SCOPE, "token_endpoint_auth_method": "private_key_jwt",
              "token_endpoint_auth_signing_alg": "ES256"}
    config = {
        "host": HOST, "port": port, "issuer": f"http://{HOST}:{port}",
        "jwks": {"keys": [signing.private_jwk()]},
        "clients": [{**client, "client_id": c.client_id, "jwks": c.public_jwks()}
                    for c in (system, resource_server)],
        "resources": {RESOURCE: "jwt", OPAQUE_RESOURCE: "opaque"},
        "introspectors": {resource_server.client_id: OPAQUE_RESOURCE},
        "scope": SCOPE, "access_token_ttl": ACCESS_TOKEN_TTL_S,
    }
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)  # holds the provider's private signing key
    log_path = folder / "provider.log"
    started = time.monotonic()
    process = _start([node, str(PROVIDER_SCRIPT), str(config_path)],
                     {**os.environ, "NODE_ENV": "production"}, log_path, NODE_DIR)
    target = Target("oidc-provider", port, process, log_path, "/token", "/token/introspection",
                    system, resource_server, RESOURCE, OPAQUE_RESOURCE)
    try:
        _wait_ready(target, "/.well-known/openid-configuration", started)
        yield target
    finally:
        _stop(process)


# -- load ----------------------------------------------------------------------------------------

# Like loadgen's count script, but POSTs: each request takes the next prepared body (a fresh
# assertion each), and every 200 answer's body is matched against a Lua pattern.
WRK_SCRIPT = """
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
  ffi.cdef[[
  int kill(int pid, int sig);
  int getpid(void);
  ]]
end
local threads = {}
local limit = 0
local count = 0
local index = 0
local prepared = {}
local pattern = ""
unexpected = 0
wrapped = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  limit = tonumber(args[1])
  pattern = args[4]
  for line in io.lines(args[3]) do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", args[2],
        {["Content-Type"] = "application/x-www-form-urlencoded"}, line)
    end
  end
end

function request()
  index = index + 1
  if index > #prepared then
    index = 1
    wrapped = wrapped + 1
  end
  return prepared[index]
end

function response(status, headers, body)
  count = count + 1
  if status == 200 and not string.find(body or "", pattern) then
    unexpected = unexpected + 1
  end
  if count == limit and has_ffi then
    ffi.C.kill(ffi.C.getpid(), 2)
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local bad, wraps = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("unexpected") or 0)
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'AUTHZ_BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"unexpected":%d,"wrapped":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), bad, wraps))
end
"""


FORM_HEADERS = (("Content-Type", "application/x-www-form-urlencoded"),)


@dataclass(frozen=True)
class PostLoad:
    port: int
    path: str
    bodies: list[str]  # one per request, used in order; at least requests + connections
    requests: int
    connections: int
    max_seconds: float
    expect: str  # a pattern a 200 answer's body must contain (Lua and Python agree on it)
    headers: tuple[tuple[str, str], ...] = FORM_HEADERS  # other headers: the Python client only


@dataclass(frozen=True)
class Measured:
    outcome: loadgen.Outcome
    unexpected: int  # 200 answers whose body did not match (already in outcome.errors)


def _lua_pattern(expect: str) -> str:
    """The two regexes used here, in Lua pattern syntax (``\\s`` is ``%s`` there)."""
    return expect.replace(r"\s", "%s")


def run_wrk(load: PostLoad) -> Measured:
    stats = loadgen.wrk_stats(
        WRK_SCRIPT, f"http://{HOST}:{load.port}{load.path}", load.connections,
        load.max_seconds, [str(load.requests), load.path, "{bodies.txt}",
                           _lua_pattern(load.expect)],
        files={"bodies.txt": "\n".join(load.bodies) + "\n"})
    if int(stats["wrapped"]):
        log(f"  warning: wrk used up the {len(load.bodies)} prepared bodies; replays follow")
    unexpected = int(stats["unexpected"])
    outcome = loadgen.Outcome(
        requests=int(stats["requests"]),
        errors=loadgen.io_errors(stats) + int(stats["status"]) + unexpected,
        elapsed_s=int(stats["duration_us"]) / 1e6, p50_ms=int(stats["p50_us"]) / 1000,
        p99_ms=int(stats["p99_us"]) / 1000)
    return Measured(outcome, unexpected)


@dataclass(frozen=True)
class _ClientResult:
    latencies: list[float]
    errors: int
    unexpected: int
    started: float
    finished: float


def _post_client(port: int, path: str, bodies: list[str], expect: str,
                 max_seconds: float,
                 header_pairs: tuple[tuple[str, str], ...] = FORM_HEADERS) -> _ClientResult:
    """One keep-alive connection POSTing its bodies back to back (in a worker process)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=loadgen.REQUEST_TIMEOUT_S)
    headers = dict(header_pairs)
    pattern = re.compile(expect.encode())
    latencies: list[float] = []
    errors = unexpected = 0
    started = time.monotonic()
    deadline = started + max_seconds
    for body in bodies:
        if time.monotonic() >= deadline:
            break
        began = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            continue
        latencies.append(time.perf_counter() - began)
        if response.status != 200:
            errors += 1
        elif not pattern.search(payload):
            errors += 1
            unexpected += 1
    finished = time.monotonic()
    connection.close()
    return _ClientResult(latencies, errors, unexpected, started, finished)


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # see loadgen._default_signals


def run_python(load: PostLoad) -> Measured:
    share, extra = divmod(load.requests, load.connections)
    jobs, start = [], 0
    for i in range(load.connections):
        count = share + (1 if i < extra else 0)
        if count:
            jobs.append((load.port, load.path, load.bodies[start:start + count], load.expect,
                         load.max_seconds, load.headers))
        start += count
    with multiprocessing.get_context().Pool(len(jobs), initializer=_default_signals) as pool:
        results = pool.starmap(_post_client, jobs)
        pool.close()
        pool.join()
    latencies = sorted(lat for result in results for lat in result.latencies)
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    outcome = loadgen.Outcome(requests=len(latencies), errors=sum(r.errors for r in results),
                              elapsed_s=elapsed, p50_ms=percentile(latencies, 0.50) * 1000,
                              p99_ms=percentile(latencies, 0.99) * 1000)
    return Measured(outcome, sum(r.unexpected for r in results))


def generate(tool: str, load: PostLoad) -> Measured:
    return run_wrk(load) if tool == "wrk" and load.headers == FORM_HEADERS else run_python(load)


# -- measuring -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    servers: tuple[str, ...]
    requests: int
    warmup: int
    repeats: int
    connections: int
    max_seconds: float
    tool: str
    workers: int
    pool: int
    node: str


@dataclass
class Samples:
    """Raw figures of one server over the repeats."""

    outcomes: dict[str, list[Measured]] = field(default_factory=lambda: defaultdict(list))
    cpu_ms_per_request: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    startup_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    pss_mib: list[float] = field(default_factory=list)
    processes: int = 0
    setup_errors: int = 0
    notes: dict[str, str] = field(default_factory=dict)


def _issue_pool(target: Target, count: int) -> list[str]:
    """Access tokens to introspect: issued one by one just before the run (outside it)."""
    tokens: list[str] = []
    for body in target.token_bodies(count, target.pool_resource):
        status, text = _request(target.port, "POST", target.token_path, body)
        try:
            token = json.loads(text)["access_token"] if status == 200 else None
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str):
            raise BenchmarkError(f"{target.name}: token request for the introspection pool"
                                 f" answered {status}: {text[:200]}")
        tokens.append(token)
    return tokens


def _probe_introspection(target: Target, tokens: list[str]) -> tuple[bool, str | None, int]:
    """(measure it?, note, errors): a 404 means the endpoint is not there yet, not a failure."""
    status, text = _request(target.port, "POST", target.introspect_path,
                            target.introspect_bodies(tokens, 1)[0])
    if status == 404:
        return False, (f"{target.introspect_path} answered 404: the introspection endpoint"
                       " does not exist yet"), 0
    if status == 200 and re.search(ACTIVE_BODY, text):
        return True, None, 0
    return False, (f"{target.introspect_path} answered {status} without \"active\": true:"
                   f" {text[:200]}"), 1


def _timed(target: Target, settings: Settings, samples: Samples, operation: str,
           bodies: Callable[[int], list[str]], path: str, expect: str) -> None:
    slack = 2 * settings.connections + 8  # wrk may send a few more than it counts
    for count, timed in ((settings.warmup, False), (settings.requests, True)):
        load = PostLoad(target.port, path, bodies(count + slack), count, settings.connections,
                        settings.max_seconds, expect)
        before = cpu_seconds(target.process.pid)
        measured = generate(settings.tool, load)
        cpu = cpu_seconds(target.process.pid) - before
        if not timed:
            continue
        samples.outcomes[operation].append(measured)
        outcome = measured.outcome
        if outcome.requests:
            samples.cpu_ms_per_request[operation].append(cpu * 1000 / outcome.requests)
        log(f"  {target.name} {operation}: {outcome.per_second:.0f} req/s,"
            f" p50 {outcome.p50_ms:.2f} ms, p99 {outcome.p99_ms:.2f} ms,"
            f" {outcome.errors} errors ({measured.unexpected} unexpected bodies)")


def _measure(target: Target, settings: Settings, samples: Samples) -> None:
    samples.startup_s.append(target.startup_s)
    _timed(target, settings, samples, "client_credentials",
           lambda n: target.token_bodies(n, target.token_resource), target.token_path,
           ACCESS_TOKEN_BODY)

    tokens = _issue_pool(target, settings.pool)
    measure, note, errors = _probe_introspection(target, tokens)
    samples.setup_errors += errors
    if note:
        samples.notes["introspection"] = note
        log(f"  {target.name} introspection: {note}")
    if measure:
        _timed(target, settings, samples, "introspection",
               lambda n: target.introspect_bodies(tokens, n), target.introspect_path,
               ACTIVE_BODY)

    mem = memory(target.process.pid)
    samples.processes = int(mem["processes"])
    if mem["rss_mib"] is not None:
        samples.rss_mib.append(float(mem["rss_mib"]))
    if mem["pss_mib"] is not None:
        samples.pss_mib.append(float(mem["pss_mib"]))


def _operation_summary(samples: Samples, operation: str) -> dict[str, Any] | None:
    measured = samples.outcomes.get(operation) or []
    if not measured:
        return None
    outcomes = [m.outcome for m in measured]
    return {
        "requests_per_s": figure(median([o.per_second for o in outcomes]), 1),
        "latency_p50_ms": figure(median([o.p50_ms for o in outcomes])),
        "latency_p99_ms": figure(median([o.p99_ms for o in outcomes])),
        "errors": sum(o.errors for o in outcomes),
        "unexpected_bodies": sum(m.unexpected for m in measured),
        "requests": sum(o.requests for o in outcomes),
        "server_cpu_ms_per_request": figure(median(samples.cpu_ms_per_request[operation])),
        "runs_requests_per_s": [figure(o.per_second, 1) for o in outcomes],
    }


def _summary(samples: Samples) -> dict[str, Any]:
    return {
        **{operation: _operation_summary(samples, operation) for operation in OPERATIONS},
        "startup_s": figure(median(samples.startup_s), 2),
        "memory": {"processes": samples.processes,
                   "rss_mib": figure(median(samples.rss_mib), 1),
                   "pss_mib": figure(median(samples.pss_mib), 1)},
        "notes": samples.notes,
    }


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    ours, peer = results.get("authz"), results.get("oidc-provider")
    ratios: dict[str, Any] = {}
    for operation in OPERATIONS:
        a = ours.get(operation) if ours else None
        b = peer.get(operation) if peer else None
        if a is None or b is None:
            ratios[operation] = None
            continue
        ratios[operation] = {
            "throughput": ratio(a["requests_per_s"] or math.nan, b["requests_per_s"] or math.nan),
            "latency_p50": ratio(a["latency_p50_ms"] or math.nan, b["latency_p50_ms"] or math.nan),
            "latency_p99": ratio(a["latency_p99_ms"] or math.nan, b["latency_p99_ms"] or math.nan),
        }
    return ratios


def _settings(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    requests = args.requests or (QUICK["requests"] if quick else FULL["requests"])
    repeats = args.repeats or (QUICK["repeats"] if quick else FULL["repeats"])
    workers = args.workers or default_workers()
    if min(requests, repeats, workers, args.connections) < 1:
        raise BenchmarkError("--requests, --repeats, --workers and --connections must be >= 1")
    if not 0 < args.max_seconds <= MAX_RUN_SECONDS:
        raise BenchmarkError(f"--max-seconds must be in (0, {MAX_RUN_SECONDS:.0f}]: assertions"
                             f" are valid {ASSERTION_LIFETIME_S} s from when they are signed")
    return Settings(servers=tuple(dict.fromkeys(args.servers)), requests=requests,
                    warmup=max(50, requests // 10), repeats=repeats,
                    connections=args.connections, max_seconds=args.max_seconds,
                    tool=loadgen.choose(args.loadgen), workers=workers,
                    pool=16 if quick else 64, node=args.node)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = _settings(args)
    servers = list(settings.servers)
    skipped: dict[str, str] = {}
    peer_version: str | None = None
    if "oidc-provider" in servers:
        reason = peer_unavailable(settings.node)
        if reason:
            log(reason)
            skipped["oidc-provider"] = reason
            servers.remove("oidc-provider")
        else:
            peer_version = ensure_node_dependencies()
    log(f"load generator: {settings.tool}; servers {', '.join(servers) or 'none'};"
        f" {settings.requests} requests x {settings.repeats} repeats,"
        f" {settings.connections} connections; authz workers {settings.workers}")

    samples: dict[str, Samples] = defaultdict(Samples)
    with tempfile.TemporaryDirectory(prefix="authz-bench-tokens-") as folder:
        for repeat in range(settings.repeats):
            order = servers if repeat % 2 == 0 else servers[::-1]
            for name in order:
                log(f"{name}, repeat {repeat + 1}/{settings.repeats}")
                if name == "authz":
                    starting = authz_server(Path(folder), settings.workers)
                else:
                    starting = peer_server(Path(folder), settings.node)
                with starting as target:
                    _measure(target, settings, samples[name])

    results: dict[str, Any] = {name: _summary(samples[name]) for name in servers}
    for name in skipped:
        results[name] = None
    errors = sum(samples[name].setup_errors for name in servers) + sum(
        (summary[op] or {}).get("errors", 0)
        for summary in results.values() if summary for op in OPERATIONS)
    return {
        "load_generator": {"tool": settings.tool, "version": loadgen.describe(settings.tool),
                           "connections": settings.connections,
                           "requests_per_run": settings.requests,
                           "warmup_requests": settings.warmup, "repeats": settings.repeats,
                           "max_seconds_per_run": settings.max_seconds,
                           "introspected_tokens": settings.pool},
        "servers": {
            "authz": {"version": _version("authz"), "server": "gunicorn sync",
                      "gunicorn": _version("gunicorn"), "workers": settings.workers,
                      "database": "sqlite", "audit": True,
                      "rate_limit": "disabled (instance config.py RATELIMIT_ENABLED = False)",
                      "access_token": "RFC 9068 JWT, ES256",
                      "introspected": "its JWT access tokens"},
            "oidc-provider": {"version": peer_version or wanted_version(),
                              "node": node_version(settings.node) if peer_version else None,
                              "processes": 1, "adapter": "in-memory (default, LRU of 1000)",
                              "access_token": "JWT (resourceIndicators accessTokenFormat"
                              " 'jwt'), ES256",
                              "introspected": "opaque access tokens (it refuses to"
                              " introspect JWTs)",
                              "skipped": skipped.get("oidc-provider")},
        },
        "operations": {
            "client_credentials": "POST token endpoint: client_credentials, private_key_jwt"
                                  " (ES256, fresh jti, pre-signed), resource indicator ->"
                                  " JWT access token",
            "introspection": "POST introspection endpoint (RFC 7662) by a resource server"
                             " client, private_key_jwt (fresh jti, pre-signed)",
        },
        "notes": [
            "the load generator shares the machine's cores with the server under test",
            "authz's gunicorn sync workers close the connection after every response, so each"
            " request includes a TCP connect; oidc-provider keeps connections alive",
            "introspection is measured on different token formats: authz its JWTs,"
            " oidc-provider opaque tokens (the only kind it introspects)",
        ],
        "results": results,
        "ratios": {"authz_over_oidc_provider": _ratios(results),
                   "goal": "throughput >= 1.0; latency ratios: lower is better"},
        "errors": errors,
    }
