"""Signing keys: lifecycle, publication before use, encryption at rest, first-start races."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import jwt
import proc_helpers
import pytest
import sqlalchemy as sa

from authz.cli import authz_cli
from authz.database import utcnow
from authz.errors import ConfigError
from authz.keys import service
from authz.keys.models import SigningKey


@pytest.fixture
def kek(app):
    return app.config["AUTHZ_KEK_BYTES"]


def states(db):
    return dict(db.execute(sa.select(SigningKey.kid, SigningKey.state)).all())


def test_first_start_creates_an_active_and_a_published_next_key(db, kek):
    created = service.ensure_keys(db, kek)
    assert len(created) == 2
    assert sorted(states(db).values()) == ["active", "next"]
    assert service.ensure_keys(db, kek) == []  # idempotent
    published = {k["kid"] for k in service.jwks(db)["keys"]}
    assert published == set(states(db))
    for key in service.jwks(db)["keys"]:
        assert key["alg"] == "ES256" and key["crv"] == "P-256" and "d" not in key


def test_active_key_signs_es256_tokens_that_the_jwks_verifies(db, kek):
    service.ensure_keys(db, kek)
    active = service.active_key(db, kek)
    token = jwt.encode({"sub": "x"}, active.private_key, algorithm="ES256",
                       headers={"kid": active.kid})
    public = jwt.PyJWKSet.from_dict(service.jwks(db))[active.kid]
    assert jwt.decode(token, public.key, algorithms=["ES256"]) == {"sub": "x"}


def test_rotation_promotes_the_key_that_was_already_published(db, kek):
    service.ensure_keys(db, kek)
    before = {k["kid"] for k in service.jwks(db)["keys"]}
    upcoming = next(kid for kid, state in states(db).items() if state == "next")
    result = service.rotate(db, kek, actor="test")
    assert result["active"] == upcoming and upcoming in before
    assert service.active_key(db, kek).kid == upcoming
    assert sorted(states(db).values()) == ["active", "next", "retiring"]
    # the retiring key still verifies tokens it signed
    assert result["retiring"] in {k["kid"] for k in service.jwks(db)["keys"]}


def test_retired_keys_leave_the_jwks_lose_their_private_part_and_stay_in_history(db, kek):
    service.ensure_keys(db, kek)
    old = service.rotate(db, kek, actor="test")["retiring"]
    assert service.retire_due(db, timedelta(hours=1)) == 0
    assert service.retire_due(db, timedelta(hours=1), now=utcnow() + timedelta(hours=2)) == 1
    key = db.get(SigningKey, old)
    assert key.state == "retired" and key.private_enc is None
    assert old not in {k["kid"] for k in service.jwks(db)["keys"]}
    assert old in {k.kid for k in service.history(db)}


def test_private_keys_are_encrypted_at_rest(db, kek):
    service.ensure_keys(db, kek)
    key = db.execute(sa.select(SigningKey).where(SigningKey.state == "active")).scalar_one()
    assert b"PRIVATE" not in key.private_enc and len(key.private_enc) > 100
    with pytest.raises(ConfigError, match="AUTHZ_KEY_ENCRYPTION_KEY"):
        service.active_key(db, bytes(32))


def test_keys_rotate_and_list_commands(runner, db, kek):
    result = runner.invoke(authz_cli, ["keys", "init", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(authz_cli, ["keys", "rotate", "--json"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(authz_cli, ["keys", "list"])
    assert sorted(line.split("\t")[1] for line in listed.output.splitlines()) == [
        "active", "next", "retiring"]


def test_jwks_endpoints(client, db, kek):
    service.ensure_keys(db, kek)
    service.rotate(db, kek, actor="test")
    db.commit()
    response = client.get("/jwks.json")
    assert response.status_code == 200
    assert response.mimetype == "application/jwk-set+json"
    assert len(response.get_json()["keys"]) == 3
    history = client.get("/jwks/history.json").get_json()["keys"]
    assert {k["state"] for k in history} == {"active", "next", "retiring"}
    assert all("private_enc" not in k and "d" not in k["public_jwk"] for k in history)


def test_instances_starting_together_create_exactly_one_active_key(db, database_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(4) as pool:
            pending = [pool.apply_async(proc_helpers.ensure_keys,
                                        (database_url, str(tmp_path / f"i{w}"), start))
                       for w in range(4)]
            start.set()
            created = [kid for p in pending for kid in p.get(timeout=120)]
    assert len(created) == 2
    assert sorted(states(db).values()) == ["active", "next"]
