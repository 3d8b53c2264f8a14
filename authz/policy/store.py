"""The active policy version, kept in the database so every instance converges on it.

``activate`` stores a bundle by its content hash and makes it the active one (audited).
``current`` answers the active compiled policy; it re-reads the active hash at most once a
second per database, so a change reaches every process of every instance within about a second,
without a restart. With no policy active yet, the bundled ``policies/`` is activated.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.orm import Session

from authz import audit
from authz.database import utcnow
from authz.database import write
from authz.policy.engine import FILES
from authz.policy.engine import Policy
from authz.policy.engine import PolicyError
from authz.policy.engine import bundle_hash
from authz.policy.engine import cached
from authz.policy.engine import compiled
from authz.policy.engine import default_directory
from authz.policy.engine import load_bundle
from authz.policy.models import PolicyVersion

RECHECK_SECONDS = 1.0
_lock = threading.Lock()
_active: dict[str, tuple[float, str]] = {}  # database -> (next check, active hash)


def activate(session: Session, bundle: Mapping[str, str], *, source: str, actor: str) -> str:
    """Store and activate ``bundle`` (compiled first: a bundle that fails never activates)."""
    policy = compiled(bundle)
    with write(session):
        _store(session, policy, source)
        audit.record(session, audit.Event(
            type="policy.activated", actor=actor, policy_version=policy.version,
            detail={"source": source[:200]}))
    forget()
    return policy.version


def _store(session: Session, policy: Policy, source: str) -> None:
    row = session.get(PolicyVersion, policy.version)
    if row is None:
        row = PolicyVersion(hash=policy.version, source=source[:200],
                            files=json.dumps(policy.bundle, sort_keys=True, ensure_ascii=False))
        session.add(row)
    row.activated_at = utcnow()
    session.flush()


def active_hash(session: Session) -> str | None:
    return session.execute(
        select(PolicyVersion.hash).where(PolicyVersion.activated_at.is_not(None))
        .order_by(PolicyVersion.activated_at.desc()).limit(1)).scalar_one_or_none()


def bundle_of(session: Session, version: str) -> dict[str, str]:
    row = session.get(PolicyVersion, version)
    if row is None:
        raise PolicyError(f"no stored policy version {version}")
    files = json.loads(row.files)
    bundle = {name: str(files[name]) for name in FILES}
    if bundle_hash(bundle) != version:
        raise PolicyError(f"stored policy {version} does not match its hash")
    return bundle


def current(session: Session) -> Policy:
    """The active compiled policy of this database."""
    owner = _owner(session)
    now = time.monotonic()
    with _lock:
        known = _active.get(owner)
    if known is not None and now < known[0]:
        version = known[1]
    else:
        version = active_hash(session) or ensure_bundled(session)
        with _lock:
            _active[owner] = (now + RECHECK_SECONDS, version)
    return cached(version) or compiled(bundle_of(session, version))


def ensure_bundled(session: Session, directory: Path | None = None) -> str:
    """Activate the bundled policy when none is active; return the active version."""
    bundle = load_bundle(directory or default_directory())
    policy = compiled(bundle)
    with write(session):
        version = active_hash(session)
        if version is not None:
            return version
        _store(session, policy, f"bundled:{policy.version[:12]}")
        audit.record(session, audit.Event(
            type="policy.activated", actor="system", policy_version=policy.version,
            detail={"source": "bundled"}))
    return policy.version


def forget() -> None:
    """Drop the cached active hash (after an activation in this process)."""
    with _lock:
        _active.clear()


def _owner(session: Session) -> str:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return engine.url.render_as_string(hide_password=True)
