"""Prometheus scrape endpoint, answered only to loopback clients (put a scraper beside it)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import abort
from flask import request

from authz import metrics
from authz.config import is_loopback_host

bp = Blueprint("telemetry", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """Counters of all worker processes; 404 to anyone not on this machine."""
    # A request relayed by a proxy on this machine also comes from loopback: refuse anything
    # that carries forwarding headers, so /metrics is never public through a reverse proxy.
    relayed = any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP"))
    if relayed or not is_loopback_host(request.remote_addr):
        abort(404)
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
