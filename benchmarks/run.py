"""Run one benchmark: ``python benchmarks/run.py NAME [--quick] [--json] [options]``.

With ``--json`` stdout carries exactly one JSON object of figures; progress and logs go to
stderr. ``--quick`` is the CI-sized variant. Exit status: 0 when the run had no errors, 1 when a
request or check failed or the benchmark could not run, 2 for a bad or unimplemented name.

Benchmarks are modules registered in :data:`BENCHMARKS`; each provides
``add_arguments(parser)`` and ``run(args) -> dict`` whose result has an integer ``errors``.
A name mapped to ``None`` is part of the contract but not written yet.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any
from typing import Protocol
from typing import cast

ROOT = Path(__file__).resolve().parent.parent

BENCHMARKS: dict[str, str | None] = {
    "server": "benchmarks.server",
    "jpki": "benchmarks.jpki",
    "tokens": "benchmarks.tokens",
    "decisions": "benchmarks.decisions",
    "audit": "benchmarks.audit",
}


class Benchmark(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> dict[str, Any]: ...


def _fail(message: str, status: int) -> int:
    print(f"benchmarks/run.py: {message}", file=sys.stderr)
    return status


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the benchmarks' cleanup (servers stop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    available = ", ".join(name for name, module in BENCHMARKS.items() if module)
    names = [arg for arg in argv if not arg.startswith("-")]
    if not names:
        if {"-h", "--help"} & set(argv):
            print(__doc__.strip() + f"\n\nBenchmarks: {', '.join(BENCHMARKS)}"
                  f" (implemented: {available}).\nPer-benchmark options:"
                  " benchmarks/run.py NAME --help")
            return 0
        return _fail(f"name a benchmark: {available}", 2)
    name = next((arg for arg in names if arg in BENCHMARKS), names[0])
    if BENCHMARKS.get(name) is None:
        return _fail(f"benchmark {name!r} is not implemented yet (available: {available})", 2)

    # Run as a script, sys.path[0] is benchmarks/; import the harness as a package instead.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with contextlib.suppress(ValueError):
        sys.path.remove(str(Path(__file__).resolve().parent))
    common = importlib.import_module("benchmarks.common")
    module = cast(Benchmark, importlib.import_module(cast(str, BENCHMARKS[name])))

    parser = argparse.ArgumentParser(prog=f"benchmarks/run.py {name}")
    parser.add_argument("name", choices=[name])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    module.add_arguments(parser)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    header = {"benchmark": name, "mode": "quick" if args.quick else "full",
              "machine": common.machine()}
    try:
        # Nothing a library prints may corrupt the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            figures = module.run(args)
    except common.BenchmarkError as error:
        return _fail(f"{name}: {error}", 1)
    header["machine"]["loadavg_1m_end"] = common.machine()["loadavg_1m"]  # was it quiet?
    result = {**header, **figures, "elapsed_s": round(time.monotonic() - started, 1)}
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
