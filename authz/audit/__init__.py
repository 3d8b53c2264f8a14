"""Append-only, hash-chained audit log (DESIGN section 6). No Flask here."""

from __future__ import annotations

from authz.audit.events import Event
from authz.audit.events import record

__all__ = ["Event", "record"]
