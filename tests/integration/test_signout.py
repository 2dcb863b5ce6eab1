"""Every way a login session ends tells the brands the member signed in to during it (OpenID
back-channel logout, through hub.identity.signout): the account pages' logout, a password
reset, another account logging in on the same browser. (/oauth/logout: test_oidc_tokens.py.)"""
from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace
from unittest.mock import patch

import pytest
import responses
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from hub import tasks
from hub.api import runtime
from hub.identity import accounts, login, signout
from hub.identity.account_models import MemberAccount
from hub.identity.oidc import issue, logout
from hub.identity.oidc.models import Grant
from hub.notify import outbox
from hub.notify.dispatcher import celery_publisher
from hub.notify.outbox import OutboxMessage
from tests.conftest import ISSUER
from tests.integration.oidc_support import Browser, RelyingParty, log_in
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)
from tests.integration.test_oidc import register, sign_in

BACKCHANNEL_URI = "https://brand.example/backchannel"
PASSWORD = "a new long password"


@pytest.fixture
def brand(ops, partner):
    return register(ops, partner.code, backchannel_logout_uri=BACKCHANNEL_URI)


@pytest.fixture
def quiet_rp(app, ops, partner):
    """A brand of the same partner without a back-channel logout URI: never notified."""
    created = register(ops, partner.code)
    return RelyingParty(app, created["client_id"], created["client_secret"], "https://brand.example/cb")


def _csrf(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _notices(db, sid) -> list[OutboxMessage]:
    with db.read() as s:
        return list(s.scalars(select(OutboxMessage).where(
            OutboxMessage.topic == logout.BACKCHANNEL_TOPIC, OutboxMessage.key.startswith(f"{sid}:"))))


@responses.activate
def _carry_notices(db, rp, *more_rps) -> dict[str, dict]:
    """Carry the queued notices the way production does (the dispatcher publishes the due
    outbox rows, the Celery task runs on what was published) to a mocked brand: the claims
    of each logout token POSTed, checked against the published keys, by their `sid`."""
    responses.add(responses.POST, BACKCHANNEL_URI, status=200)
    published: list[tuple[str, tuple]] = []
    broker = SimpleNamespace(send_task=lambda name, args, **options: published.append((name, args)))
    db.write(lambda s: outbox.dispatch_due(s, celery_publisher(broker, tasks.TOPICS), timedelta(minutes=5)))
    worker_services = (SimpleNamespace(issuer=ISSUER), db, {}, None)
    with patch.object(tasks, "_services", lambda: worker_services), \
            patch.object(tasks, "_signing_keys", lambda: runtime.current().keys):
        # Other tests' due rows share the database (an end-to-end test that stopped halfway
        # leaves notices to brands that no longer run): carry only these clients'.
        clients = {r.client_id for r in (rp, *more_rps)}
        ours = [p for name, (payloads,) in published if name == tasks.BACKCHANNEL_LOGOUT_TASK
                for p in payloads if p["client_id"] in clients]
        assert tasks.celery.tasks[tasks.BACKCHANNEL_LOGOUT_TASK].apply(args=(ours,)).get() == ["delivered"] * len(ours)
    keys = KeySet.import_key_set(rp.jwks())
    tokens = [dict(p.split("=", 1) for p in call.request.body.split("&"))["logout_token"] for call in responses.calls]
    claims = [jwt.decode(token, keys, algorithms=["RS256"]).claims for token in tokens]
    return {c["sid"]: c for c in claims}


def _wire_sid(db, rp, sid) -> str:
    """The sid this client's tokens name the login session by (its sector's, not the id)."""
    with db.read() as s:
        sector = s.scalar(select(Grant.sector).where(Grant.session_id == sid, Grant.client_id == rp.client_id))
    return issue.session_sid(runtime.current().settings.secret_key, sector, sid)


def _assert_told(db, rp, *sids) -> None:
    """Exactly one notice per session, to this client, whose token names them; delivered."""
    for sid in sids:
        (message,) = _notices(db, sid)
        assert message.key == f"{sid}:{rp.client_id}" and message.done_at is None
    delivered = _carry_notices(db, rp)
    assert {_wire_sid(db, rp, sid) for sid in sids} <= set(delivered)  # (with this client's earlier ones)
    for sid in sids:
        (message,) = _notices(db, sid)
        assert message.done_at is not None
        with db.read() as s:
            subject = s.scalar(select(Grant.subject).where(Grant.session_id == sid, Grant.client_id == rp.client_id))
        assert message.payload == {"session_id": str(sid), "client_id": rp.client_id, "subject": subject}
        claims = delivered[_wire_sid(db, rp, sid)]
        assert claims["iss"] == ISSUER and claims["aud"] == rp.client_id and claims["sub"] == subject
        assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}


def test_logout_on_the_account_pages_tells_the_brands(db, app, rp, browser, member):
    sign_in(browser, rp)
    sid = member[0].session_id
    assert _notices(db, sid) == []
    page = browser.get("/account/security")
    assert page.status_code == 200
    answer = browser.post("/account/logout", {"csrf_token": _csrf(page)})
    assert answer.status_code == 302
    with db.read() as s:
        assert login.load(s, sid) is None
    _assert_told(db, rp, sid)
    # The brand's next silent authorization request finds no login.
    assert "login_required" in browser.get(rp.authorize_url(prompt="none")).headers["location"]


def test_a_password_reset_tells_the_brands_of_every_session_it_ends(db, app, rp, quiet_rp, browser, member):
    sign_in(browser, rp)
    sign_in(browser, quiet_rp)
    first = member[0]
    with db.read() as s:
        account = s.get(MemberAccount, first.account_id)
    # A second browser of the same member, signed in to the brand too.
    second, second_cookie = db.write(lambda s: login.start(s, s.get(MemberAccount, account.id), ("pwd",),
                                                            ttl=timedelta(hours=1)))
    sign_in(Browser(app, second_cookie), rp)
    # Reset from a third browser, logged out, with the mailed token.
    token = db.write(lambda s: accounts.request_reset(s, account.email))
    elsewhere = Browser(app)
    page = elsewhere.get("/account/reset/new", params={"token": token})
    done = elsewhere.post("/account/reset/new", {"csrf_token": _csrf(page), "token": token,
                                                 "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 200, done.text
    with db.read() as s:
        assert login.load(s, first.session_id) is None and login.load(s, second.session_id) is None
    _assert_told(db, rp, first.session_id, second.session_id)


def test_another_account_logging_in_on_the_browser_tells_the_first_ones_brands(db, app, rp, browser, member):
    sign_in(browser, rp)
    sid = member[0].session_id
    passwords = app.app.extensions["hub_web"].passwords
    other = log_in(db)[0]
    email = db.write(lambda s: _set_password(s, other.account_id, passwords.hash(PASSWORD)))
    page = browser.get("/account/login", params={"force": "1", "next": "/account/security"})
    answer = browser.post("/account/login", {"csrf_token": _csrf(page), "email": email, "password": PASSWORD,
                                             "next": "/account/security", "force": "1"})
    assert answer.status_code == 302 and answer.headers["location"].endswith("/account/security")
    with db.read() as s:
        assert login.load(s, sid) is None
    _assert_told(db, rp, sid)


def test_logging_out_twice_queues_the_notices_once(db, app, rp, browser, member):
    sign_in(browser, rp)
    sid = member[0].session_id
    assert db.write(lambda s: signout.end(s, sid)) is True
    assert db.write(lambda s: signout.end(s, sid)) is False
    assert len(_notices(db, sid)) == 1


def test_each_partner_gets_its_own_sid_and_its_logout_token_carries_it(db, app, ops, rp, partner, other_partner,
                                                                       browser, member):
    """`sid` is pairwise like `sub`: two partners' brands signed in during the same login
    session cannot join on it (here brand B asks for `openid` alone, promised only a
    pseudonym); each brand's logout token names the session by the sid its ID token had."""
    other = register(ops, other_partner.code, backchannel_logout_uri=BACKCHANNEL_URI)
    plain = RelyingParty(app, other["client_id"], other["client_secret"], "https://brand.example/cb",
                         scope="openid")
    mine = rp.verify_id_token(sign_in(browser, rp)["id_token"], None)
    theirs = plain.verify_id_token(sign_in(browser, plain)["id_token"], None)
    session_id = member[0].session_id
    assert mine["sid"] != theirs["sid"]
    assert str(session_id) not in (mine["sid"], theirs["sid"])  # the hub's id never leaves it
    # Stable for a brand: a later sign-in during the same session carries the same sid, and so
    # does another client of the same partner (one sector, like `sub`).
    assert rp.verify_id_token(sign_in(browser, rp)["id_token"], None)["sid"] == mine["sid"]
    sibling = register(ops, partner.code)
    sibling_rp = RelyingParty(app, sibling["client_id"], sibling["client_secret"], "https://brand.example/cb")
    assert sibling_rp.verify_id_token(sign_in(browser, sibling_rp)["id_token"], None)["sid"] == mine["sid"]

    assert db.write(lambda s: signout.end(s, session_id)) is True
    delivered = _carry_notices(db, rp, plain)
    for brand, id_token in ((rp, mine), (plain, theirs)):
        claims = delivered[id_token["sid"]]
        assert claims["aud"] == brand.client_id and claims["sub"] == id_token["sub"]


def _set_password(session, account_id, password_hash) -> str:
    account = session.get(MemberAccount, account_id)
    account.password_hash = password_hash
    return account.email
