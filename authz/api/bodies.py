"""Request bodies of the JSON API: one reader, so every route refuses the same way."""

from __future__ import annotations

from typing import Any

from flask import request

from authz.errors import InvalidInput

MAX_BODY = 64 * 1024


def json_object(max_bytes: int = MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object, or a clear 400: too large, not JSON, not an object, or
    nested deeper than the parser's stack (a ``RecursionError``, not a ``ValueError``)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise InvalidInput("the request body is too large")
    if not request.is_json:
        raise InvalidInput("send a JSON object with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise InvalidInput("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body
