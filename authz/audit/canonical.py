"""Canonical JSON for audit records: strings and integers only.

For such values sorted keys, no insignificant whitespace and UTF-8 output are exactly RFC 8785
(JCS); floats, booleans and nulls are refused because JCS re-serializes numbers and the record
must hash the same everywhere. The test suite checks equality with the ``rfc8785`` package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

MAX_DEPTH = 8


class NotCanonical(ValueError):
    """A value that cannot appear in an audit record."""


def check(value: Any, depth: int = 0) -> None:
    """Raise :class:`NotCanonical` unless ``value`` holds only strings, integers, lists, maps."""
    if depth > MAX_DEPTH:
        raise NotCanonical("nested too deeply")
    if isinstance(value, str):
        return
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise NotCanonical(f"{type(value).__name__} is not allowed; use a string or an integer")
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:  # RFC 8785 §3.2.2.3: outside I-JSON's exact integer range
            raise NotCanonical("integer outside the I-JSON range")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical("object keys must be strings")
            check(item, depth + 1)
        return
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for item in value:
            check(item, depth + 1)
        return
    raise NotCanonical(f"{type(value).__name__} is not allowed")


def dumps(value: Mapping[str, Any]) -> bytes:
    """Canonical UTF-8 bytes of a mapping of strings and integers."""
    check(value)
    return json.dumps(_ordered(value), separators=(",", ":"), ensure_ascii=False).encode()


def _ordered(value: Any) -> Any:
    """RFC 8785 §3.2.3: members sorted by their names' UTF-16 code units, recursively."""
    if isinstance(value, Mapping):
        keys = sorted(value, key=_utf16) if not all(k.isascii() for k in value) else sorted(value)
        return {k: _ordered(value[k]) for k in keys}
    if isinstance(value, list | tuple):
        return [_ordered(item) for item in value]
    return value


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")
