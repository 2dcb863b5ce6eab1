"""The two kinds of browser session (hub/identity/session_store.py): members' logins
(hub.identity.login, no idle timeout) and the ops console's (hub.identity.ops_users: idle and
absolute timeouts, ended with their user), at the edges of their timeouts, once ended, and
each refusing the other's cookie."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from hub.db import utcnow
from hub.identity import login, ops_users, roles
from hub.identity.account_models import MemberAccount
from hub.identity.ops_user_models import OpsUser
from hub.programs.models import Member

TTL = timedelta(days=2)
SECOND = timedelta(seconds=1)


@pytest.fixture
def t0():
    return utcnow().replace(microsecond=0)


@pytest.fixture
def account(db) -> MemberAccount:
    def work(session):
        member = Member(id=uuid.uuid4())
        session.add(member)
        session.flush()
        account = MemberAccount(member_id=member.id, email=f"{uuid.uuid4().hex[:10]}@example.com",
                                password_hash="x")
        session.add(account)
        session.flush()
        return account
    return db.write(work)


@pytest.fixture
def user(db) -> OpsUser:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    user, _ = db.write(lambda s: ops_users.add(s, email=email, role=roles.OPS_ANALYST, partner_code=None,
                                               password_hash="x", actor="test"))
    return user


def _look(db, module, cookie, now):
    with db.read() as session:
        return module.from_cookie(session, cookie, now=now)


def test_an_ops_session_ends_after_idle_without_a_request_and_a_request_restarts_the_count(db, user, t0):
    started, cookie = db.write(lambda s: ops_users.start(s, user, now=t0))
    assert _look(db, ops_users, cookie, t0 + ops_users.IDLE - SECOND) == (started, True)
    assert _look(db, ops_users, cookie, t0 + ops_users.IDLE) is None
    seen_at = t0 + ops_users.IDLE - SECOND
    db.write(lambda s: ops_users.seen(s, started.session_id, now=seen_at))
    assert _look(db, ops_users, cookie, t0 + ops_users.IDLE) == (started, False)
    assert _look(db, ops_users, cookie, seen_at + ops_users.IDLE) is None


def test_last_seen_is_due_after_each_kinds_granularity(db, user, account, t0):
    _, ops_cookie = db.write(lambda s: ops_users.start(s, user, now=t0))
    _, member_cookie = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL, now=t0))
    assert not _look(db, ops_users, ops_cookie, t0 + ops_users.SEEN_GRANULARITY - SECOND)[1]
    assert _look(db, ops_users, ops_cookie, t0 + ops_users.SEEN_GRANULARITY)[1]
    assert not _look(db, login, member_cookie, t0 + login.LAST_SEEN_GRANULARITY - SECOND)[1]
    assert _look(db, login, member_cookie, t0 + login.LAST_SEEN_GRANULARITY)[1]


def test_an_ops_session_ends_at_its_absolute_timeout_however_busy(db, user, t0):
    started, cookie = db.write(lambda s: ops_users.start(s, user, now=t0))
    last_request = t0 + ops_users.ABSOLUTE - SECOND
    db.write(lambda s: ops_users.seen(s, started.session_id, now=last_request))
    assert _look(db, ops_users, cookie, last_request) is not None
    assert _look(db, ops_users, cookie, t0 + ops_users.ABSOLUTE) is None


def test_a_member_session_has_no_idle_timeout_only_its_ttl(db, account, t0):
    started, cookie = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL, now=t0))
    assert _look(db, login, cookie, t0 + TTL - SECOND)[0] == started  # never seen since the login
    assert _look(db, login, cookie, t0 + TTL) is None
    with db.read() as session:
        assert login.load(session, started.session_id, now=t0 + TTL - SECOND) == started
        assert login.load(session, started.session_id, now=t0 + TTL) is None


def test_an_ended_ops_session_and_a_disabled_users_sessions_are_refused(db, user, t0):
    first, first_cookie = db.write(lambda s: ops_users.start(s, user, now=t0))
    second, second_cookie = db.write(lambda s: ops_users.start(s, user, now=t0))
    assert db.write(lambda s: ops_users.end(s, first.session_id, now=t0))
    assert not db.write(lambda s: ops_users.end(s, first.session_id, now=t0))  # idempotent
    assert _look(db, ops_users, first_cookie, t0) is None
    assert _look(db, ops_users, second_cookie, t0) is not None

    def disable_only(s):  # the user alone, its sessions left as they are: still refused
        s.get(OpsUser, user.id).disabled_at = t0
    db.write(disable_only)
    assert _look(db, ops_users, second_cookie, t0) is None


def test_a_cookie_of_one_kind_is_no_login_of_the_other(db, user, account, t0):
    ops_login, ops_cookie = db.write(lambda s: ops_users.start(s, user, now=t0))
    member_login, member_cookie = db.write(lambda s: login.start(s, account, ("pwd",), ttl=TTL, now=t0))
    assert _look(db, login, ops_cookie, t0) is None
    assert _look(db, ops_users, member_cookie, t0) is None
    with db.read() as session:
        assert login.load(session, ops_login.session_id, now=t0) is None
    assert not db.write(lambda s: login.end(s, ops_login.session_id, now=t0))
    assert not db.write(lambda s: ops_users.end(s, member_login.session_id, now=t0))
    assert _look(db, ops_users, ops_cookie, t0) is not None and _look(db, login, member_cookie, t0) is not None
