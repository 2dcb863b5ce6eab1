"""Findings of the security review of the OpenID provider: the return-trip marker of a forced
login cannot be forged, an unverified account cannot authorize a brand, userinfo follows the
access token's (narrowed) scope, and only ID tokens serve as id_token_hint."""
from __future__ import annotations

import time
import uuid
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from tests.conftest import ISSUER
from tests.integration.oidc_support import Browser, log_in, log_in_again, query
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)
from tests.integration.test_oidc import brand, sign_in  # noqa: F401  (fixtures)


def _with(url: str, **extra) -> str:
    return url + "&" + urlencode(extra)


@pytest.mark.parametrize("forcing", [{"prompt": "login"}, {"max_age": "0"}])
# The hour-old marker has a fixed id: pytest-xdist workers must collect the same test ids.
@pytest.mark.parametrize("marker", ["0", pytest.param(str(int(time.time()) - 3600), id="an-hour-ago"),
                                    "0.deadbeef", "0."])
def test_forged_auth_after_does_not_skip_a_forced_login(rp, browser, forcing, marker):
    sign_in(browser, rp)  # consent on record: otherwise a consent page would hide the result
    time.sleep(1.1)
    answer = browser.get(_with(rp.authorize_url(**forcing), auth_after=marker))
    target = answer.headers["location"]
    assert target.startswith("/account/login?") and query(target)["force"] == "1"


def test_genuine_return_trip_after_a_forced_login_issues_a_code(app, db, rp, browser, member):
    sign_in(browser, rp)
    time.sleep(1.1)
    target = browser.get(rp.authorize_url(prompt="login")).headers["location"]
    back = query(target)["next"]
    marker = query(back)["auth_after"]
    # The member logs in again on this browser (its session renewed, with a new auth_time).
    fresh, cookie = log_in_again(db, member[0])
    browser = Browser(app, cookie)
    # The marker is bound to its request: on another prompt=login request it does not count.
    first = rp.verifier, rp.nonce, rp.state
    elsewhere = browser.get(_with(rp.authorize_url(prompt="login"), auth_after=marker))
    assert elsewhere.headers["location"].startswith("/account/login?")
    rp.verifier, rp.nonce, rp.state = first
    answer = browser.get(back)
    assert answer.status_code == 302 and answer.headers["location"].startswith(rp.redirect_uri + "?")
    claims = rp.verify_id_token(rp.exchange(answer.headers["location"])["id_token"], None)
    assert claims["auth_time"] == int(fresh.auth_time.timestamp()) > int(member[0].auth_time.timestamp())


def test_marker_keeps_the_id_token_hint_check(app, db, rp, browser):
    other = Browser(app, log_in(db)[1])
    hint = sign_in(other, rp)["id_token"]
    sign_in(browser, rp)
    time.sleep(1.1)
    target = browser.get(rp.authorize_url(id_token_hint=hint, prompt="login")).headers["location"]
    back = query(target)["next"]
    time.sleep(1.1)
    # Whoever logs in next on this browser must be the hinted member, marker or not.
    stranger = Browser(app, log_in(db)[1])
    answer = stranger.get(back)
    assert answer.status_code == 302 and answer.headers["location"].startswith("/account/login?")


def test_unverified_account_cannot_authorize(app, db, rp):
    unverified = Browser(app, log_in(db, verified=False)[1])
    for extra in ({}, {"prompt": "none"}):
        answer = unverified.get(rp.authorize_url(**extra))
        assert answer.status_code == 302
        answer_query = query(answer.headers["location"])
        assert answer.headers["location"].startswith(rp.redirect_uri + "?")
        assert answer_query["error"] == "access_denied" and answer_query["state"] == rp.state
        assert "code" not in answer_query


def test_userinfo_follows_the_scope_narrowed_at_refresh(rp, browser):
    token = sign_in(browser, rp)
    sub = rp.verify_id_token(token["id_token"], None)["sub"]
    assert "email" in rp.session.get(f"{ISSUER}/oauth/userinfo").json()
    narrowed = rp.session.refresh_token(f"{ISSUER}/oauth/token", refresh_token=token["refresh_token"],
                                        scope="openid")
    assert narrowed["scope"] == "openid"
    assert rp.session.get(f"{ISSUER}/oauth/userinfo").json() == {"sub": sub}


def test_a_logout_token_is_no_id_token_hint(db, app, rp, browser, member):
    from hub.api import runtime
    from hub.identity.oidc import issue
    from hub.identity.oidc.models import Grant

    sign_in(browser, rp)
    sid = member[0].session_id
    with db.read() as s:
        grant = s.scalar(select(Grant).where(Grant.session_id == sid))
    hub = runtime.current()
    token = issue.logout_token(hub.keys, issuer=ISSUER, client_id=rp.client_id, sector=grant.sector,
                               subject=grant.subject, session_id=uuid.UUID(str(sid)),
                               secret_key=hub.settings.secret_key)
    answer = browser.get("/oauth/logout", params={"id_token_hint": token})
    assert answer.status_code in (200, 400) and "location" not in answer.headers
    # Still logged in: a silent authorization still gets a code.
    assert "code=" in browser.get(rp.authorize_url(prompt="none")).headers["location"]


def test_an_access_token_is_no_id_token_hint(rp, browser):
    token = sign_in(browser, rp)
    answer = browser.get(rp.authorize_url(id_token_hint=token["access_token"]))
    assert query(answer.headers["location"])["error"] == "invalid_request"
    logout = browser.get("/oauth/logout", params={"id_token_hint": token["access_token"]})
    assert logout.status_code == 400 and "location" not in logout.headers
