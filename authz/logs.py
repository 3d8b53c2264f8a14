"""Structured JSON logs: one object per line, request id attached, no free-form payloads.

Only the fields in ``SAFE_EXTRAS`` are copied from a record's ``extra``; anything else a caller
passes is dropped, so secrets or personal attributes cannot slip in through ``extra``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC
from datetime import datetime

from authz.context import request_id_var

SAFE_EXTRAS = ("method", "path", "status", "duration_ms", "remote_addr", "job", "event",
               "endpoint", "code", "workers", "server", "bind", "count")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key in SAFE_EXTRAS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str) -> None:
    """Route the ``authz`` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("authz")
    logger.setLevel(level)
    if not any(getattr(h, "_authz", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._authz = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
