"""Strict decoding shared by the JWS checks of ours (client assertions, DPoP proofs).

RFC 7515 §2 base64url without padding and canonical (one spelling per byte string), and JSON
objects in strict UTF-8 (RFC 8259 §8.1) without duplicate member names (RFC 7515 §5.2 item 4
lets parsers refuse them; refusing is the only reading every parser agrees with) and without
NaN or Infinity. Callers map ``ValueError`` to their own error codes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from typing import NoReturn

BASE64URL = re.compile(r"[A-Za-z0-9_-]*")  # empty is b""; callers decide if that is allowed


class DuplicateMember(ValueError):
    """A JSON object named the same member twice."""


class NotAnObject(ValueError):
    """Valid JSON, but not an object."""


def b64url_decode(segment: str) -> bytes:
    """Canonical unpadded base64url, else ValueError."""
    if not BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:
        raise ValueError("not base64url") from None
    # Non-zero trailing bits would give a second spelling of the same bytes.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("not canonical base64url")
    return raw


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise DuplicateMember("duplicate member")
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def json_object(raw: bytes) -> dict[str, Any]:
    """A strict JSON object, else DuplicateMember or ValueError."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_members,
                           parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(value, dict):
        raise NotAnObject("not a JSON object")
    return value
