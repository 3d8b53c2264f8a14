"""Server-side login sessions: idle and absolute limits, touching, ending."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authz.database import utcnow
from authz.database import write
from authz.errors import NotFound
from authz.identity import sessions
from authz.identity.models import Account


@pytest.fixture
def account(db):
    with write(db):
        db.add(Account(id="pat_1", person_link_id="PERSON1", assurance="verified"))
    return "pat_1"


def start(db, account, now):
    return sessions.start(db, account_id=account, acr="urn:mdx:acr:jpki-auth",
                          amr=["hwk", "sc", "pin", "mfa"], auth_time=now, user_agent="t",
                          now=now)


def test_a_session_is_touched_and_expires_when_idle(db, account):
    now = utcnow()
    token, row = start(db, account, now)
    later = now + timedelta(minutes=20)
    assert sessions.current(db, token, now=later).last_seen_at == later  # touched
    assert sessions.current(db, token, now=later + timedelta(minutes=31)) is None  # idle


def test_the_absolute_limit_holds_even_when_active(db, account):
    now = utcnow()
    token, _row = start(db, account, now)
    moment = now
    for _ in range(17):
        moment += timedelta(minutes=29)
        if sessions.current(db, token, now=moment) is None:
            break
    assert moment - now <= sessions.ABSOLUTE + timedelta(minutes=29)
    assert sessions.current(db, token, now=now + sessions.ABSOLUTE) is None


def test_ending_a_session_and_only_ones_own(db, account):
    now = utcnow()
    token, row = start(db, account, now)
    with pytest.raises(NotFound):
        sessions.end(db, "pat_other", row.id, now=now)
    sessions.end(db, account, row.id, now=now)
    assert sessions.current(db, token, now=now) is None
    assert sessions.current(db, "not-a-token", now=now) is None
