"""Expired OAuth state is purged in batches; live state is kept."""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa

from authz.database import utcnow
from authz.database import write
from authz.oauth.models import AccessToken
from authz.oauth.models import AuthorizationCode
from authz.oauth.models import Grant
from authz.oauth.models import PushedRequest
from authz.oauth.models import RefreshToken
from authz.oauth.purge import purge


def test_purge_removes_only_what_has_expired(db, create_client):
    client = create_client()
    now = utcnow()
    with write(db):
        db.add(Grant(id="grt_1", client_id=client.client_id, scope="openid", resource=[]))
        db.flush()
        for index, age in enumerate((timedelta(days=2), timedelta(hours=1), -timedelta(hours=1))):
            expires = now - age
            db.add(AuthorizationCode(
                code_hash=f"c{index}", grant_id="grt_1", client_id=client.client_id,
                redirect_uri="https://app.example/cb", scope="openid",
                code_challenge="x" * 43, code_challenge_method="S256", expires_at=expires))
            db.add(AccessToken(jti=f"j{index}", grant_id="grt_1", client_id=client.client_id,
                               subject="s", scope="openid", audience=["a"], expires_at=expires))
            db.add(RefreshToken(token_hash=f"r{index}", grant_id="grt_1",
                                client_id=client.client_id, generation=1, scope="openid",
                                expires_at=expires))
            db.add(PushedRequest(handle_hash=secrets.token_hex(8), client_id=client.client_id,
                                 params=[], expires_at=expires))
    removed = purge(db, now, batch=1)  # batch of one: the loop must go round
    assert removed == {"codes": 1, "access_tokens": 2, "refresh_tokens": 2,
                       "pushed_requests": 2}
    assert db.execute(sa.select(AuthorizationCode.code_hash).order_by(
        AuthorizationCode.code_hash)).scalars().all() == ["c1", "c2"]  # a day of memory
    assert db.execute(sa.select(AccessToken.jti)).scalars().all() == ["j2"]
    assert db.get(Grant, "grt_1") is not None
