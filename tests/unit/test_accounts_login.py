"""Login sessions (hub/identity/login.py): the interface OIDC builds on."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from hub.db import utcnow
from hub.identity import login
from hub.identity.account_models import LoginSession, MemberAccount
from hub.programs.models import Member

TTL = timedelta(hours=1)


def _account(db, **fields) -> MemberAccount:
    def work(session):
        member = Member(id=uuid.uuid4())
        session.add(member)
        session.flush()
        account = MemberAccount(
            member_id=member.id, email=f"{uuid.uuid4().hex[:10]}@example.com", password_hash="x", **fields
        )
        session.add(account)
        session.flush()
        return account

    return db.write(work)


def test_a_started_session_loads_by_id_and_by_cookie(db):
    account = _account(db, given_name="Sari", family_name="Dewi", locale="id")
    started, cookie = db.write(lambda s: login.start(s, account, ("pwd", "otp"), ttl=TTL))
    with db.read() as session:
        by_id = login.load(session, started.session_id)
        by_cookie, stale = login.from_cookie(session, cookie)
        stored = session.get(LoginSession, started.session_id)
    assert by_id == by_cookie == started and not stale
    assert started.amr == ("pwd", "otp") and started.member_id == account.member_id
    assert not started.email_verified and started.auth_time.tzinfo is not None
    assert cookie not in stored.cookie_hash and len(stored.cookie_hash) == 64
    later = utcnow() + login.LAST_SEEN_GRANULARITY
    db.write(lambda s: login.seen(s, started.session_id, now=later))
    with db.read() as session:
        assert session.get(LoginSession, started.session_id).last_seen_at == later


def test_ended_expired_and_unknown_sessions_load_as_none(db):
    account = _account(db)
    started, cookie = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL))
    with db.read() as session:
        assert login.load(session, started.session_id, now=utcnow() + TTL) is None
        assert login.from_cookie(session, cookie, now=utcnow() + login.LAST_SEEN_GRANULARITY)[1]
        assert login.load(session, uuid.uuid4()) is None
        assert login.from_cookie(session, cookie + "x") is None
    assert db.write(lambda s: login.end(s, started.session_id)) is True
    assert db.write(lambda s: login.end(s, started.session_id)) is False  # idempotent
    with db.read() as session:
        assert login.load(session, started.session_id) is None
        assert login.from_cookie(session, cookie) is None


def test_logging_in_again_renews_the_same_accounts_session_and_refuses_to_replace_anothers(db):
    account, other = _account(db), _account(db)
    first, old_cookie = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL))
    later = utcnow() + timedelta(minutes=10)
    again, new_cookie = db.write(
        lambda s: login.start(s, account, ("pwd", "otp"), ttl=TTL, replacing=first.session_id, now=later)
    )
    assert again.session_id == first.session_id and again.auth_time == later and again.amr == ("pwd", "otp")
    # Another account's live session must be ended first (hub.identity.signout tells its brands).
    with pytest.raises(ValueError):
        db.write(lambda s: login.start(s, other, ("pwd",), ttl=TTL, replacing=first.session_id))
    assert db.write(lambda s: login.end(s, first.session_id))
    switched, _ = db.write(lambda s: login.start(s, other, ("pwd",), ttl=TTL, replacing=first.session_id))
    with db.read() as session:
        assert login.from_cookie(session, old_cookie) is None  # a new cookie on every login
        assert login.load(session, first.session_id) is None
        assert login.load(session, switched.session_id).account_id == other.id
        assert login.from_cookie(session, new_cookie) is None


def test_end_all_ends_only_that_accounts_sessions(db):
    account, other = _account(db), _account(db)
    a, _ = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL))
    b, _ = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL))
    kept, _ = db.write(lambda s: login.start(s, other, ("pwd",), ttl=TTL))
    assert set(db.write(lambda s: login.end_all(s, account.id))) == {a.session_id, b.session_id}
    assert db.write(lambda s: login.end_all(s, account.id)) == []
    with db.read() as session:
        assert login.load(session, a.session_id) is None and login.load(session, b.session_id) is None
        assert login.load(session, kept.session_id) is not None


def test_account_claims_are_only_those_the_account_holds(db):
    bare = _account(db)
    named = _account(db, given_name="Sari", family_name="Dewi", locale="id")
    with db.read() as session:
        assert login.account_claims(session, bare.id) == {"email": bare.email, "email_verified": False}
        assert login.account_claims(session, named.id) == {
            "email": named.email, "email_verified": False, "given_name": "Sari",
            "family_name": "Dewi", "name": "Sari Dewi", "locale": "id",
        }
        assert login.account_claims(session, uuid.uuid4()) == {}
