"""Values shared by the OAuth tests."""

from __future__ import annotations

import base64

ISSUER = "http://127.0.0.1:8000"
REDIRECT = "https://app.example/cb"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
