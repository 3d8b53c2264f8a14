"""One full card verification (reference b6 steps 2-8), timed.

Figures: median and p99 of ``authz.identity.verify.verify_response`` for an authentication
certificate with the in-process status source (the mounted simulator: OCSP request built,
answered and signed by the simulated CA, then signature-checked), the same with CRL, the same
with OCSP over loopback HTTP to ``authz sim serve``, and the verification alone with a status
source that is never asked (to show where the time goes). Target: median under 5 ms in-process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import BenchmarkError
from benchmarks.common import figure
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import percentile

TARGET_MEDIAN_MS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=None,
                        help="verifications per variant (default 400, quick 40)")


def _time(call: Callable[[], Any], samples: int) -> dict[str, Any]:
    call()  # warm caches (key parsing, imports) outside the figures
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    ordered = sorted(durations)
    return {"samples": samples, "median_ms": figure(median(ordered)),
            "p99_ms": figure(percentile(ordered, 0.99))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from authz.identity.link import link_from  # noqa: F401 - the same sources as the service
    from authz.identity.status import HttpOcspSource
    from authz.identity.trust import AUTH
    from authz.identity.trust import SIGN
    from authz.identity.trust import Anchor
    from authz.identity.trust import TrustConfig
    from authz.identity.trust import load_anchors
    from authz.identity.verify import verify_response
    from authz.sim import lifecycle
    from authz.sim.authority import SimAuthority
    from authz.sim.card import AUTH_CERT
    from authz.sim.card import AUTH_KEY
    from authz.sim.card import AUTH_PIN
    from authz.sim.card import VirtualCard
    from authz.sim.card import digest_info

    samples = args.samples or (40 if args.quick else 400)
    folder = Path(tempfile.mkdtemp(prefix="authz-bench-jpki-"))
    log("creating simulated CAs and a card")
    sim = SimAuthority.open(folder / "jpki-sim")
    card_file = folder / "card.json"
    lifecycle.issue_card(sim, name="見本\u3000花子", birthdate="1985-03-15", gender="female",
                         address="東京都千代田区見本町一丁目1番1号", pin="1234",
                         password="DEMO2026", out=card_file)
    card = VirtualCard.load(card_file)
    tbs = b'{"aud":"http://127.0.0.1:8000","iat":1,"nonce":"n","purpose":"login","txn":"t","v":1}'
    card.select_ap()
    card.verify(AUTH_PIN, "1234")
    cert = card.read(AUTH_CERT)
    signature = card.sign(AUTH_KEY, digest_info(tbs))
    anchors = tuple(load_anchors(SIGN, sim.anchor_pems(SIGN)) +
                    load_anchors(AUTH, sim.anchor_pems(AUTH)))

    class InProcess:
        def ocsp(self, request_der: bytes) -> bytes:
            return bytes(sim.ocsp_respond(request_der))

        def crl(self, anchor: Anchor) -> bytes:
            return bytes(sim.crl(anchor.kind, anchor.generation))

    class NeverAsked:
        def ocsp(self, request_der: bytes) -> bytes:
            raise AssertionError("not asked")

        def crl(self, anchor: Anchor) -> bytes:
            raise AssertionError("not asked")

    def verify(source: Any, method: str = "ocsp") -> Callable[[], Any]:
        trust = TrustConfig(anchors=anchors, status_method=method)
        return lambda: verify_response(kind=AUTH, tbs=tbs, cert_der=cert, signature=signature,
                                       trust=trust, source=source, now=datetime.now(UTC))

    results: dict[str, Any] = {}
    errors = 0
    log(f"in-process OCSP x{samples}")
    results["in_process_ocsp"] = _time(verify(InProcess()), samples)
    log(f"in-process CRL x{samples}")
    results["in_process_crl"] = _time(verify(InProcess(), "crl"), samples)

    # Verification alone: the status step is replaced by a source whose answer is pre-built.
    from authz.identity import verify as verify_module

    original = verify_module.check
    verify_module.check = lambda *a, **k: verify_module.Status(True, "none")  # type: ignore[assignment]
    try:
        results["without_status"] = _time(verify(NeverAsked()), samples)
    finally:
        verify_module.check = original

    port = _free_port()
    env = {**os.environ, "AUTHZ_INSTANCE_PATH": str(folder)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "authz"), "sim", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/jpki-sim/ocsp"
        _wait(f"http://127.0.0.1:{port}/jpki-sim/arl/auth.crl", server)
        log(f"OCSP over loopback HTTP x{samples}")
        results["http_ocsp"] = _time(verify(HttpOcspSource(url)), samples)
    except BenchmarkError:
        errors += 1
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    in_process = results["in_process_ocsp"]["median_ms"]
    return {**results, "target_median_ms": TARGET_MEDIAN_MS,
            "meets_target": bool(in_process is not None and in_process < TARGET_MEDIAN_MS),
            "errors": errors}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchmarkError("authz sim serve exited")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise BenchmarkError("authz sim serve did not answer")
