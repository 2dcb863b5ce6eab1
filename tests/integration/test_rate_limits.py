"""Every auth and enrolment endpoint is rate-limited (issue 7, item 6): the pages' forms, the
OAuth endpoints clients POST to, and partner enrolment. Each case sets its rule to 0 (the first
request is one too many) on the app's own counters (Redis under HUB_TEST_REDIS_URL) and checks
the endpoint refuses with 429 and Retry-After: a friendly page for pages, problem+json for the
API. How the rules count (failures only, per account and IP, windows) is tested with the login
and second factor (test_account_pages.py, tests/unit/test_accounts_ratelimit.py)."""
from __future__ import annotations

import secrets
import uuid

import pytest

from hub.api import runtime
from hub.identity import ratelimit
from hub.identity.ratelimit import Limiter
from tests.conftest import assert_problem
from tests.integration.test_account_pages import (  # noqa: F401  (fixtures)
    PASSWORD,
    Browser,
    _email,
    _sign_up,
    _signed_up_and_verified,
    _totp_from,
    flask_app,
)


@pytest.fixture
def refuse(flask_app):
    """refuse(rule, ...): those rules now allow nothing (on the app's own counters)."""
    hub, web = runtime.current(), flask_app.extensions["hub_web"]
    saved = hub.limiter

    def set_rules(*rules):
        hub.limiter = web.limiter = Limiter(saved.counters, overrides={r.name: (0, 3600) for r in rules})

    yield set_rules
    hub.limiter = web.limiter = saved


def _logged_in(flask_app, db, settings) -> tuple[Browser, str]:
    browser = Browser(flask_app)
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    return browser, email


def _at_code_step(flask_app, db, settings) -> Browser:
    """A browser whose password was right for an account with TOTP: the code step is due."""
    browser, email = _logged_in(flask_app, db, settings)
    browser.submit("/account/security", "/account/security/totp", password=PASSWORD)
    browser.get("/account/security")
    browser.post("/account/security/totp/confirm", {"code": _totp_from(browser.text()).now()})
    browser.submit("/account/security", "/account/logout")
    assert browser.login(email).headers["Location"].startswith("/account/login/code")
    return browser


# (endpoint, rule, how a browser sends it, what it needs: "anon", "login" or "code-step")
PAGES = [
    ("/account/login", ratelimit.LOGIN_ACCOUNT, "anon",
     lambda b: b.submit("/account/login", "/account/login", email=_email(), password="wrong password 1")),
    ("/account/login/code", ratelimit.SECOND_FACTOR_ACCOUNT, "code-step",
     lambda b: b.submit("/account/login/code", "/account/login/code", code="000000")),
    ("/account/signup", ratelimit.SIGNUP_IP, "anon", lambda b: _sign_up(b, _email())),
    ("/account/verify", ratelimit.VERIFY_IP, "anon",
     lambda b: b.submit("/account/verify?token=x", "/account/verify", token="x")),
    ("/account/reset", ratelimit.RESET_IP, "anon",
     lambda b: b.submit("/account/reset", "/account/reset", email=_email())),
    ("/account/reset/new", ratelimit.RESET_CONFIRM_IP, "anon",
     lambda b: b.submit("/account/reset/new?token=x", "/account/reset/new", token="x",
                        password="a new long password", confirm="a new long password")),
    ("/account/security/totp", ratelimit.LOGIN_ACCOUNT, "login",
     lambda b: b.submit("/account/security", "/account/security/totp", password="wrong password 1")),
    ("/account/security/totp/confirm", ratelimit.SECOND_FACTOR_ACCOUNT, "login",
     lambda b: b.submit("/account/security", "/account/security/totp/confirm", code="000000")),
    ("/account/security/totp/disable", ratelimit.SECOND_FACTOR_ACCOUNT, "login",
     lambda b: b.submit("/account/security", "/account/security/totp/disable", code="000000")),
    ("/account/security/recovery-codes", ratelimit.SECOND_FACTOR_ACCOUNT, "login",
     lambda b: b.submit("/account/security", "/account/security/recovery-codes", code="000000")),
    ("/account/delete", ratelimit.LOGIN_ACCOUNT, "login",
     lambda b: b.submit("/account/delete", "/account/delete", password="wrong password 1")),
    ("/account/link", ratelimit.LINK_START_ACCOUNT, "login",
     lambda b: b.submit("/account/link", "/account/link", program="GNONE", identifier="1234")),
    ("/account/link/code", ratelimit.LINK_CODE_ACCOUNT, "login",
     lambda b: b.submit("/account/link", "/account/link/code", request=str(uuid.uuid4()), code="000000")),
    # The ops console's login (its code step too: tests/integration/test_ops_console.py).
    ("/ops/login", ratelimit.LOGIN_ACCOUNT, "anon",
     lambda b: b.submit("/ops/login", "/ops/login", email=_email(), password="wrong password 1", code="000000")),
]
OAUTH = ["/oauth/token", "/oauth/introspect", "/oauth/revoke"]
# POSTs that are not authentication or enrolment, and why no limit applies.
NOT_AUTH = {
    "/account/logout": "ends this browser's own session",
    "/account/redeem": "a logged-in member spending their points (idempotent, ledger-checked)",
    "/account/convert/quote": "a read for a logged-in member",
    "/account/convert": "a logged-in member's conversion (idempotent)",
    "/account/consents/revoke": "a logged-in member revoking a brand's access",
    "/account/sharing/": "a logged-in member granting or withdrawing what a partner may see",
    "/oauth/authorize": "shows consent or redirects; needs a logged-in member to issue a code",
    "/oauth/consent": "a logged-in member's decision (CSRF-checked)",
    "/oauth/logout": "ends this browser's own session",
    "/oauth/userinfo": "a bearer token's read",
    "/ops/logout": "ends this browser's own ops session",
    "/ops/redemptions/retry": "an ops_admin's audited action (logged in with TOTP, CSRF-checked)",
    "/ops/redemptions/refund": "an ops_admin's audited action (logged in with TOTP, CSRF-checked)",
    "/ops/redemptions/fulfil": "an ops_admin's audited action (logged in with TOTP, CSRF-checked)",
    "/ops/webhooks/replay": "an ops_admin's audited action (logged in with TOTP, CSRF-checked)",
    "/ops/reconciliation/resolve": "an ops_admin's audited action (logged in with TOTP, CSRF-checked)",
}


def test_every_auth_post_of_the_pages_and_oauth_is_limited_or_listed_as_not_auth(flask_app):
    posts = {rule.rule for rule in flask_app.url_map.iter_rules()
             if "POST" in rule.methods and rule.rule.startswith(("/account", "/oauth", "/ops"))}
    limited = {path for path, *_ in PAGES} | set(OAUTH)
    assert posts == limited | set(NOT_AUTH), "a new POST route: rate-limit it, or say why not in NOT_AUTH"


@pytest.mark.parametrize("path,rule,needs,send", PAGES, ids=[p for p, *_ in PAGES])
def test_each_auth_page_answers_429_with_retry_after(flask_app, db, settings, refuse, path, rule, needs, send):
    if needs == "anon":
        browser = Browser(flask_app)
    elif needs == "login":
        browser, _ = _logged_in(flask_app, db, settings)
    else:
        browser = _at_code_step(flask_app, db, settings)
    refuse(rule)
    response = send(browser)
    assert response.status_code == 429, (path, response.status_code)
    assert int(response.headers["Retry-After"]) > 0
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("rule", [ratelimit.OAUTH_CLIENT, ratelimit.OAUTH_IP], ids=lambda r: r.name)
@pytest.mark.parametrize("path", OAUTH)
def test_oauth_endpoints_are_limited_per_client_and_per_ip(http, partner, refuse, path, rule):
    data = {"grant_type": "client_credentials"} if path == "/oauth/token" else {"token": "x"}
    assert http.post(path, data=data, auth=(partner.client_id, partner.secret)).status_code != 429
    refuse(rule)
    response = http.post(path, data=data, auth=(partner.client_id, partner.secret))
    assert_problem(response, 429, "rate-limited")
    assert int(response.headers["Retry-After"]) > 0


def test_a_client_id_in_the_form_is_counted_too(http, refuse):
    refuse(ratelimit.OAUTH_CLIENT)
    response = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "cli_nobody",
                                                "client_secret": "x"})
    assert_problem(response, 429, "rate-limited")


def test_enrolment_is_limited_per_client(partner, other_partner, refuse):
    refuse(ratelimit.ENROL_CLIENT)
    body = {"program": partner.program, "external_id": f"m-{secrets.token_hex(6)}"}
    response = partner.api.post("/v1/members", body)
    assert_problem(response, 429, "rate-limited")
    assert int(response.headers["Retry-After"]) > 0
    assert partner.api.get("/v1/members", external_id=body["external_id"]).json()["items"] == []


def test_the_limits_of_settings_replace_the_rules_and_unknown_names_are_refused():
    limiter = ratelimit.limiter_for("", {"oauth-ip": (5, 10)})
    assert limiter.rule(ratelimit.OAUTH_IP) == ratelimit.Rule("oauth-ip", 5, 10)
    assert limiter.rule(ratelimit.OAUTH_CLIENT) is ratelimit.OAUTH_CLIENT
    with pytest.raises(ValueError, match="no-such-rule"):
        ratelimit.limiter_for("", {"no-such-rule": (1, 1)})


def test_per_ip_rules_count_an_ipv6_client_by_its_slash_64(flask_app):
    """Each address of a /64 is free to its holder: they all count as one client."""
    hub, web = runtime.current(), flask_app.extensions["hub_web"]
    saved = hub.limiter
    hub.limiter = web.limiter = Limiter(saved.counters, overrides={ratelimit.SIGNUP_IP.name: (1, 3600)})
    try:
        prefix = f"2001:db8:{secrets.randbelow(0xffff):x}:{secrets.randbelow(0xffff):x}"
        assert _sign_up(Browser(flask_app, ip=f"{prefix}::1"), _email()).status_code != 429
        assert _sign_up(Browser(flask_app, ip=f"{prefix}:ffff::2"), _email()).status_code == 429
        assert _sign_up(Browser(flask_app, ip=f"{prefix[:-1]}{int(prefix[-1], 16) ^ 1:x}::1"), _email()).status_code != 429
    finally:
        hub.limiter = web.limiter = saved
