"""Small helpers shared by tests."""

from __future__ import annotations

import base64
import socket
from typing import Any

TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"
TEST_KEK = base64.urlsafe_b64encode(bytes(range(32))).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_config(database_url: str) -> dict[str, Any]:
    return {"AUTHZ_DATABASE_URL": database_url, "AUTHZ_SECRET_KEY": TEST_SECRET,
            "AUTHZ_KEY_ENCRYPTION_KEY": TEST_KEK, "AUTHZ_ISSUER": "http://127.0.0.1:8000",
            "TESTING": True}
