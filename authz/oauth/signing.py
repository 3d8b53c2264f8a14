"""Sign JWTs (ES256 only) with the service's active key, cached briefly per process.

The cache is short so that after ``authz keys rotate`` every instance moves to the new key
within a minute; the old key stays published (``retiring``) far longer than that.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from authz.keys import service as keys

CACHE_SECONDS = 30.0
_lock = threading.Lock()
_cached: tuple[float, tuple[bytes, str], str, ECKey] | None = None


def _active(session: Session, kek: bytes) -> tuple[str, ECKey]:
    global _cached
    # Keyed by database as well: one process may serve several apps (tests do).
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    owner = (kek, engine.url.render_as_string(hide_password=True))
    with _lock:
        if _cached is not None and _cached[1] == owner and time.monotonic() < _cached[0]:
            return _cached[2], _cached[3]
    active = keys.active_key(session, kek)
    key = ECKey.import_key(active.private_key)
    with _lock:
        _cached = (time.monotonic() + CACHE_SECONDS, owner, active.kid, key)
    return active.kid, key


def forget() -> None:
    """Drop the cached key (after a rotation in this process, and in tests)."""
    global _cached
    with _lock:
        _cached = None


def sign(session: Session, kek: bytes, claims: dict[str, Any], typ: str) -> str:
    """A compact JWS with ``alg`` ES256, the active ``kid`` and the given ``typ``."""
    kid, key = _active(session, kek)
    return jwt.encode({"alg": "ES256", "kid": kid, "typ": typ}, claims, key,
                      algorithms=["ES256"])
