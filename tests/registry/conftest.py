"""Fixtures for registry tests: the real CLI, a snapshot of what was written, client keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import NamedTuple

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskCliRunner
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

import authz.cli
from authz.audit.models import HEAD_ID
from authz.audit.models import AuditHead
from authz.registry.models import Client
from authz.registry.models import Institution

CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


class Written(NamedTuple):
    """How much is stored: compared before and after a refused command."""

    institutions: int
    clients: int
    audit_seq: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def cli(runner: FlaskCliRunner) -> Callable[..., Result]:
    """Run ``authz ARGS...`` through the real command group against the test app."""

    def invoke(*args: str) -> Result:
        return runner.invoke(authz.cli.authz_cli, list(args))

    return invoke


@pytest.fixture
def written(db: Session) -> Callable[[], Written]:
    def snapshot() -> Written:
        db.rollback()  # a fresh transaction: SQLite would otherwise keep an old read snapshot
        try:
            return Written(
                db.execute(select(func.count()).select_from(Institution)).scalar_one(),
                db.execute(select(func.count()).select_from(Client)).scalar_one(),
                db.execute(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)).scalar_one(),
            )
        finally:
            db.rollback()

    return snapshot


@pytest.fixture
def make_jwk() -> Callable[..., dict[str, Any]]:
    """A fresh EC public JWK (ES256 by default); ``private=True`` adds ``d``."""

    def make(kid: str = "k1", crv: str = "P-256", *, private: bool = False) -> dict[str, Any]:
        curve = CURVES[crv]
        key = ec.generate_private_key(curve)
        numbers = key.public_key().public_numbers()
        size = (curve.key_size + 7) // 8
        jwk = {"kty": "EC", "crv": crv, "kid": kid,
               "x": b64url(numbers.x.to_bytes(size, "big")),
               "y": b64url(numbers.y.to_bytes(size, "big"))}
        if private:
            jwk["d"] = b64url(key.private_numbers().private_value.to_bytes(size, "big"))
        return jwk

    return make


@pytest.fixture
def make_rsa_jwk() -> Callable[..., dict[str, Any]]:
    def make(kid: str = "rsa1") -> dict[str, Any]:
        numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
        return {"kty": "RSA", "kid": kid, "e": b64url(numbers.e.to_bytes(3, "big")),
                "n": b64url(numbers.n.to_bytes(256, "big"))}

    return make


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[Any], str]:
    """Write a JWKS (object, text or bytes) to a new file and return its path."""
    counter = iter(range(1_000_000))

    def write(content: Any) -> str:
        path = tmp_path / f"jwks-{next(counter)}.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content), encoding="utf-8")
        return str(path)

    return write
