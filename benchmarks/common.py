"""Helpers shared by the benchmarks: statistics, machine facts, progress output."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class BenchmarkError(RuntimeError):
    """A benchmark could not run (a server did not start, a tool failed): one line for the user."""


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the result."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``fraction`` in 0..1)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def figure(value: float | None, digits: int = 3) -> float | None:
    """A number fit for JSON: rounded, and ``None`` instead of NaN or infinity."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def ratio(numerator: float, denominator: float) -> float | None:
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return None
    return figure(numerator / denominator)


def machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_1m": figure(load, 2)}
