"""Prometheus metrics. Unauthenticated noise is counted here and logged, never audited.

Under ``authz serve`` every worker is a process: ``PROMETHEUS_MULTIPROC_DIR`` is set (by
``authz.server``) before this module is imported, so the counters of all workers are summed
when ``/metrics`` is scraped.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess

REQUESTS = Counter("authz_http_requests", "HTTP requests answered.",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("authz_http_request_seconds", "Time to answer a request.", ["endpoint"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
REFUSED = Counter("authz_http_refused", "Requests refused with a client error (4xx), by code.",
                  ["code"])


def exposition() -> tuple[bytes, str]:
    """The text exposition of every counter, summed over worker processes when needed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
