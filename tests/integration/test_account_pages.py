"""The /account pages through Flask's test client, on the test database (SQLite or PostgreSQL)."""
from __future__ import annotations

import html
import re
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.cli import main as hub_cli
from hub.db import utcnow
from hub.identity import login as login_sessions
from hub.identity import accounts, mail, ratelimit
from hub.identity.account_models import LoginSession, MemberAccount, OutgoingMail
from hub.identity.ratelimit import Limiter, MemoryCounters, Rule
from hub.privacy import blind
from hub.web.i18n import MESSAGES
from tests.conftest import ISSUER, Api
from tests.integration import oidc_support as oidc
from tests.integration.test_oidc import register, sign_in

PASSWORD = "correct horse battery"


class Browser:
    """One browser (its own cookies and IP address) on the hub's Flask app."""

    def __init__(self, flask_app, ip: str | None = None):
        self.client = flask_app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = ip or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
        self.last = None
        self.token = ""

    def _seen(self, response):
        self.last = response
        found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def get(self, path: str, **kwargs):
        return self._seen(self.client.get(path, **kwargs))

    def csrf(self) -> str:
        """The CSRF token of the last page that had a form."""
        return self.token

    def post(self, path: str, data: dict, *, csrf: bool = True, **kwargs):
        data = {**data, "csrf_token": self.csrf()} if csrf else data
        return self._seen(self.client.post(path, data=data, **kwargs))

    def submit(self, form_page: str, action: str, **fields):
        """Open a form's page, then send the form (with that page's CSRF token)."""
        self.get(form_page)
        return self.post(action, fields)

    def text(self) -> str:
        return self.last.get_data(as_text=True)

    def login(self, email: str, password: str = PASSWORD, next_url: str = "/account/security"):
        return self.submit(f"/account/login?next={next_url}", "/account/login", email=email,
                           password=password, next=next_url)


@pytest.fixture
def flask_app(app, http):
    # `http` has started the connexion app, which sets the Flask app up on its startup
    # (Flask then refuses further set-up once it has served a request).
    return app.app


@pytest.fixture
def browser(flask_app) -> Browser:
    return Browser(flask_app)


@pytest.fixture
def web_state(flask_app):
    return flask_app.extensions["hub_web"]


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(web_state):
    """A fresh in-memory limiter on a clock the test moves."""
    clock, saved = Clock(), web_state.limiter
    web_state.limiter = Limiter(MemoryCounters(), clock=clock)
    yield clock
    web_state.limiter = saved


def _email() -> str:
    return f"member-{secrets.token_hex(5)}@example.com"


def _mail_link(db, settings, email: str) -> str:
    """The path of the link in the latest mail to `email`."""
    with db.read() as session:
        (message,) = mail.latest(session, to=email, limit=1)
    link = re.search(r"https?://\S+", message.body).group(0)
    assert link.startswith(ISSUER)
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def _mail_count(db, email: str) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(OutgoingMail).where(OutgoingMail.to_index == blind.index("email", email)))


def _sign_up(browser: Browser, email: str, password: str = PASSWORD, **extra):
    return browser.submit("/account/signup", "/account/signup", email=email, password=password, **extra)


def _signed_up_and_verified(browser, db, settings) -> str:
    email = _email()
    assert _sign_up(browser, email).status_code == 200
    browser.get(_mail_link(db, settings, email))
    assert browser.post("/account/verify", {"token": re.search(
        r'name="token" value="([^"]+)"', browser.text()).group(1), "next": "/account/security"}).status_code == 200
    return email


def _totp_from(page: str) -> pyotp.TOTP:
    return pyotp.parse_uri(html.unescape(re.search(r'href="(otpauth://[^"]+)"', page).group(1)))


def _codes_from(page: str) -> list[str]:
    return re.findall(r"<li><code>([a-z2-7-]+)</code></li>", page)


def _login_cookie(response) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.split("=", 1)[0].endswith("hub_login"):
            return header
    return None


# --- the whole journey -------------------------------------------------------------------

def test_sign_up_verify_login_totp_recovery_code_and_reset(flask_app, browser, db, settings):
    email = _email()
    signed_up = _sign_up(browser, email.upper(), given_name="Sari")
    assert signed_up.status_code == 200 and email in browser.text()

    # The mail's link shows a button; pressing it verifies the address.
    browser.get(_mail_link(db, settings, email))
    token = re.search(r'name="token" value="([^"]+)"', browser.text()).group(1)
    with db.read() as session:
        assert session.scalar(select(MemberAccount).where(MemberAccount.email_index == blind.index("email", email))).email_verified_at is None
    assert browser.post("/account/verify", {"token": token, "next": "/account/security"}).status_code == 200
    assert browser.post("/account/verify", {"token": token}).status_code == 400  # single use

    # Log in with the password: a session with amr pwd, then to `next`.
    response = browser.login(email, next_url="/account/security")
    assert response.status_code == 302 and response.headers["Location"] == "/account/security"
    page = browser.get("/account/security").get_data(as_text=True)
    assert email in page and MESSAGES["en"]["email_verified"] in page

    # Turn TOTP on: the otpauth URI, then one valid code, then ten recovery codes shown once.
    browser.post("/account/security/totp", {"password": PASSWORD})
    browser.get("/account/security")
    totp = _totp_from(browser.text())
    assert browser.post("/account/security/totp/confirm", {"code": "000000"}).status_code == 400
    confirmed = browser.post("/account/security/totp/confirm", {"code": totp.now()})
    codes = _codes_from(confirmed.get_data(as_text=True))
    # (never cached: tests/integration/test_security_headers.py, through the ASGI app)
    assert confirmed.status_code == 200 and len(codes) == 10

    # Log out, log in again: the password, then the code step.
    browser.get("/account/security")
    assert browser.post("/account/logout", {}).status_code == 302
    assert browser.get("/account/security").status_code == 302
    response = browser.login(email, next_url="/account/security?tab=1")
    assert response.headers["Location"].startswith("/account/login/code")
    assert _login_cookie(response) is None  # no session before the second factor
    browser.get(response.headers["Location"])
    assert browser.post("/account/login/code", {"code": "123456", "next": "/account/security?tab=1"}).status_code == 400
    next_step = totp.at(utcnow() + timedelta(seconds=30))  # the confirm code's step is spent
    done = browser.post("/account/login/code", {"code": next_step, "next": "/account/security?tab=1"})
    assert done.status_code == 302 and done.headers["Location"] == "/account/security?tab=1"
    with db.read() as session:
        sessions = session.scalars(select(LoginSession).join(MemberAccount).where(
            MemberAccount.email_index == blind.index("email", email), LoginSession.ended_at.is_(None))).all()
    assert [s.amr for s in sessions] == ["pwd otp"]

    # A recovery code works once, on another browser.
    other = Browser(flask_app)
    other.get(other.login(email).headers["Location"])
    assert other.post("/account/login/code", {"code": codes[0].upper(), "next": "/account/security"}).status_code == 302
    third = Browser(flask_app)
    third.get(third.login(email).headers["Location"])
    assert third.post("/account/login/code", {"code": codes[0], "next": "/account/security"}).status_code == 400

    # Reset by mail: the new password works, the old does not, every session has ended.
    reset = Browser(flask_app)
    reset.submit("/account/reset", "/account/reset", email=email)
    reset.get(_mail_link(db, settings, email))
    assert reset.post("/account/reset/new", {"token": re.search(r'name="token" value="([^"]+)"', reset.text()).group(1),
                                             "password": "a new long password", "confirm": "a new long password"}
                      ).status_code == 200
    assert browser.get("/account/security").status_code == 302  # logged out everywhere
    assert other.get("/account/security").status_code == 302
    assert Browser(flask_app).login(email).status_code == 400
    assert Browser(flask_app).login(email, "a new long password").headers["Location"].startswith("/account/login/code")


def test_turning_totp_on_needs_the_current_password(flask_app, browser, db, settings, clock):
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    page = browser.get("/account/security").get_data(as_text=True)
    assert 'id="password"' in page and 'autocomplete="current-password"' in page
    for password in ("", "wrong password 123"):
        refused = browser.post("/account/security/totp", {"password": password})
        assert refused.status_code == 400 and 'id="password-error"' in refused.get_data(as_text=True)
    with db.read() as session:
        assert session.scalar(select(MemberAccount).where(MemberAccount.email_index == blind.index("email", email))).totp_secret_sealed is None
    assert browser.post("/account/security/totp", {"password": PASSWORD}).status_code == 302
    assert 'href="otpauth://' in browser.get("/account/security").get_data(as_text=True)


def test_a_reset_of_an_unverified_account_removes_a_second_factor_set_up_before(flask_app, db, settings):
    """An impostor signs up with the member's address (never verified), logs in and turns
    on two-step verification; the member resets the password from the mail: the impostor's
    app and recovery codes no longer open the account."""
    email, impostor = _email(), Browser(flask_app)
    _sign_up(impostor, email)
    impostor.login(email)
    impostor.get("/account/security")
    impostor.post("/account/security/totp", {"password": PASSWORD})
    impostor.get("/account/security")
    totp = _totp_from(impostor.text())
    codes = _codes_from(impostor.post("/account/security/totp/confirm", {"code": totp.now()}).get_data(as_text=True))
    assert len(codes) == 10
    member = Browser(flask_app)
    member.submit("/account/reset", "/account/reset", email=email)
    member.get(_mail_link(db, settings, email))
    assert member.post("/account/reset/new", {"token": re.search(r'name="token" value="([^"]+)"', member.text()).group(1),
                                              "password": "the members own password",
                                              "confirm": "the members own password"}).status_code == 200
    assert impostor.get("/account/security").status_code == 302  # logged out
    assert member.login(email, "the members own password").headers["Location"] == "/account/security"  # no code step
    with db.read() as session:
        account = session.scalar(select(MemberAccount).where(MemberAccount.email_index == blind.index("email", email)))
        assert account.totp_secret_sealed is None and account.email_verified_at is not None
        assert accounts.recovery_codes_left(session, account) == 0


def test_a_password_reset_revokes_the_brands_tokens(app, ops, partner, http, db):
    """Tokens a brand got through the code flow stop working when the password is reset:
    the refresh token is refused (invalid_grant), the access token too (401)."""
    brand = register(ops, partner.code)
    rp = oidc.RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb")
    started, cookie = oidc.log_in(db)
    token = sign_in(oidc.Browser(app, cookie), rp)
    assert Api(http, token["access_token"]).get("/v1/me").status_code == 200
    with db.read() as session:
        email = session.get(MemberAccount, started.account_id).email
    token_link = db.write(lambda s: accounts.request_reset(s, email))
    elsewhere = oidc.Browser(app)
    page = elsewhere.get("/account/reset/new", params={"token": token_link})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert elsewhere.post("/account/reset/new", {"csrf_token": csrf, "token": token_link, "password": PASSWORD,
                                                 "confirm": PASSWORD}).status_code == 200
    refreshed = rp.session.post(f"{ISSUER}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.session.client_secret), withhold_token=True)
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert Api(http, token["access_token"]).get("/v1/me").status_code == 401


def test_regenerate_codes_and_turn_totp_off_need_a_current_code(flask_app, browser, db, settings):
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    browser.get("/account/security")
    browser.post("/account/security/totp", {"password": PASSWORD})
    browser.get("/account/security")
    totp = _totp_from(browser.text())
    old = _codes_from(browser.post("/account/security/totp/confirm", {"code": totp.now()}).get_data(as_text=True))
    browser.get("/account/security")
    assert "10" in browser.text()
    assert browser.post("/account/security/recovery-codes", {"code": "000000"}).status_code == 400
    new = _codes_from(browser.post("/account/security/recovery-codes",
                                   {"code": totp.at(utcnow() + timedelta(seconds=30))}).get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    browser.get("/account/security")
    response = browser.post("/account/security/totp/disable", {"code": new[0]})
    assert response.status_code == 302 and "done=totp-off" in response.headers["Location"]
    browser.get(response.headers["Location"])
    assert MESSAGES["en"]["notice.totp-off"] in browser.text()
    assert Browser(flask_app).login(email).headers["Location"] == "/account/security"  # no code step


# --- no account enumeration ----------------------------------------------------------

def _main(page: str) -> str:
    """The page's main content (the CSRF token differs per browser)."""
    return re.sub(r'name="csrf_token" value="[^"]+"', "", page.split('<main', 1)[1])


def test_login_reset_and_sign_up_answer_the_same_for_known_and_unknown_emails(flask_app, db, settings):
    known = _signed_up_and_verified(Browser(flask_app), db, settings)
    unknown = _email()
    wrong = Browser(flask_app).login(known, "wrong password 123")
    nobody = Browser(flask_app).login(unknown, "wrong password 123")
    assert wrong.status_code == nobody.status_code == 400
    assert _main(wrong.get_data(as_text=True)).replace(known, "X") == _main(nobody.get_data(as_text=True)).replace(unknown, "X")

    reset_known = Browser(flask_app).submit("/account/reset", "/account/reset", email=known)
    reset_unknown = Browser(flask_app).submit("/account/reset", "/account/reset", email=unknown)
    assert reset_known.status_code == reset_unknown.status_code == 200
    assert _main(reset_known.get_data(as_text=True)) == _main(reset_unknown.get_data(as_text=True))
    assert _mail_count(db, unknown) == 0

    mails = _mail_count(db, known)
    again = _sign_up(Browser(flask_app), known)
    fresh_email = _email()
    fresh = _sign_up(Browser(flask_app), fresh_email)
    assert again.status_code == fresh.status_code == 200
    assert _main(again.get_data(as_text=True)).replace(known, "X") == _main(fresh.get_data(as_text=True)).replace(fresh_email, "X")
    with db.read() as session:
        (told,) = mail.latest(session, to=known, limit=1)
    assert _mail_count(db, known) == mails + 1 and "already has one" in told.body


# --- bad input ------------------------------------------------------------------------

def test_bad_sign_up_input_is_shown_at_its_field_and_writes_nothing(browser, db):
    with db.read() as session:
        before = session.scalar(select(func.count()).select_from(MemberAccount))
    for fields, field in (({"email": "not-an-email", "password": PASSWORD}, "email"),
                          ({"email": _email(), "password": "short"}, "password"),
                          ({"email": _email(), "password": PASSWORD, "given_name": "x" * 101}, "given_name")):
        response = _sign_up(browser, **fields)
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert f'id="{field}-error"' in page and 'aria-invalid="true"' in page and f'href="#{field}"' in page
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(MemberAccount)) == before


def test_a_reset_with_different_passwords_or_a_bad_token_changes_nothing(browser, flask_app, db, settings):
    email = _signed_up_and_verified(browser, db, settings)
    browser.submit("/account/reset", "/account/reset", email=email)
    browser.get(_mail_link(db, settings, email))
    token = re.search(r'name="token" value="([^"]+)"', browser.text()).group(1)
    assert browser.post("/account/reset/new", {"token": token, "password": "a new long password",
                                               "confirm": "another long password"}).status_code == 400
    assert 'id="confirm-error"' in browser.text()
    assert browser.post("/account/reset/new", {"token": "forged", "password": "a new long password",
                                               "confirm": "a new long password"}).status_code == 400
    assert Browser(flask_app).login(email).status_code == 302  # the old password still works


# --- rate limits ---------------------------------------------------------------------

def test_failed_logins_are_limited_per_account_and_ip_with_a_clear_429(flask_app, db, settings, clock):
    email = _signed_up_and_verified(Browser(flask_app), db, settings)
    guesser = Browser(flask_app, ip="10.98.0.1")
    for _ in range(ratelimit.LOGIN_ACCOUNT.limit):
        assert guesser.login(email, "wrong password 123").status_code == 400
    limited = guesser.login(email)  # even the right password, from there
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert MESSAGES["en"]["too_many_title"] in limited.get_data(as_text=True)
    assert Browser(flask_app, ip="10.98.0.1").login(email.upper(), "x" * 12).status_code == 429  # the same account
    clock.now += ratelimit.LOGIN_ACCOUNT.window
    assert guesser.login(email).status_code == 302


def test_a_stranger_failing_logins_does_not_lock_the_member_out(flask_app, db, settings, clock):
    email = _signed_up_and_verified(Browser(flask_app), db, settings)
    stranger = Browser(flask_app, ip="10.97.0.1")
    for _ in range(ratelimit.LOGIN_ACCOUNT.limit):
        assert stranger.login(email, "wrong password 123").status_code == 400
    assert stranger.login(email, "wrong password 123").status_code == 429
    assert Browser(flask_app, ip="10.97.0.2").login(email).status_code == 302  # the member, elsewhere


def test_failed_logins_from_many_ips_reach_a_per_account_ceiling(flask_app, db, settings, clock, monkeypatch):
    monkeypatch.setattr(ratelimit, "LOGIN_EMAIL", Rule("login-email", 4, 900))
    email = _signed_up_and_verified(Browser(flask_app), db, settings)
    for _ in range(4):
        assert Browser(flask_app).login(email, "wrong password 123").status_code == 400
    assert Browser(flask_app).login(email).status_code == 429
    clock.now += 900
    assert Browser(flask_app).login(email).status_code == 302


def test_failed_logins_are_limited_per_ip(flask_app, clock, monkeypatch):
    monkeypatch.setattr(ratelimit, "LOGIN_IP", Rule("login-ip", 3, 900))
    attacker = Browser(flask_app, ip="10.99.0.1")
    for _ in range(3):
        assert attacker.login(_email(), "wrong password 123").status_code == 400
    assert attacker.login(_email(), "wrong password 123").status_code == 429
    assert Browser(flask_app, ip="10.99.0.2").login(_email(), "wrong password 123").status_code == 400


def test_second_factor_guesses_are_limited(flask_app, db, settings, clock):
    browser = Browser(flask_app)
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    browser.get("/account/security")
    browser.post("/account/security/totp", {"password": PASSWORD})
    browser.get("/account/security")
    totp = _totp_from(browser.text())
    browser.post("/account/security/totp/confirm", {"code": totp.now()})
    guesser = Browser(flask_app)
    guesser.get(guesser.login(email).headers["Location"])
    for _ in range(ratelimit.SECOND_FACTOR_ACCOUNT.limit):
        assert guesser.post("/account/login/code", {"code": "000000"}).status_code == 400
    assert guesser.post("/account/login/code", {"code": totp.at(utcnow() + timedelta(seconds=30))}).status_code == 429


def test_a_days_wrong_codes_are_capped_and_the_member_is_mailed_in_their_language(flask_app, db, settings, clock):
    day, five_minutes = ratelimit.SECOND_FACTOR_DAY, ratelimit.SECOND_FACTOR_ACCOUNT
    browser = Browser(flask_app)
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    browser.get("/account/security")
    browser.post("/account/security/totp", {"password": PASSWORD})
    browser.get("/account/security")
    totp = _totp_from(browser.text())
    browser.post("/account/security/totp/confirm", {"code": totp.now()})
    db.write(lambda s: setattr(accounts.find(s, email), "locale", "id"))
    guesser = Browser(flask_app)  # has the password; its browser speaks English
    guesser.get(guesser.login(email).headers["Location"])
    subject = MESSAGES["id"]["mail.code_guesses_subject"]
    for _ in range(day.limit // five_minutes.limit):
        for _ in range(five_minutes.limit):
            assert guesser.post("/account/login/code", {"code": "000000"}).status_code == 400
        clock.now += five_minutes.window  # each 5-minute window's guesses, one after the other
    # A new 5-minute window, but the day's allowance is used up: even a right code is refused,
    # on the login step and on the member's own security page.
    refused = guesser.post("/account/login/code", {"code": totp.at(utcnow() + timedelta(seconds=30))})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > five_minutes.window
    assert browser.post("/account/security/recovery-codes", {"code": totp.now()}).status_code == 429
    with db.read() as session:
        sent = [m for m in mail.latest(session, to=email) if m.subject == subject]
    assert len(sent) == 1 and f"{ISSUER}/account/reset" in sent[0].body
    assert f" {day.limit} " in sent[0].body


def test_sign_ups_and_reset_mails_are_limited(flask_app, db, settings, clock):
    browser = Browser(flask_app)
    for _ in range(ratelimit.SIGNUP_IP.limit):
        assert _sign_up(browser, _email()).status_code == 200
    assert _sign_up(browser, _email()).status_code == 429
    target = _email()  # someone else's address, from many places: not mailed without end
    for _ in range(ratelimit.SIGNUP_EMAIL.limit):
        assert _sign_up(Browser(flask_app), target).status_code == 200
    assert _sign_up(Browser(flask_app), target.upper()).status_code == 429
    assert _mail_count(db, target) == ratelimit.SIGNUP_EMAIL.limit
    email = _signed_up_and_verified(Browser(flask_app), db, settings)
    for _ in range(ratelimit.RESET_ACCOUNT.limit):
        assert Browser(flask_app).submit("/account/reset", "/account/reset", email=email).status_code == 200
    assert Browser(flask_app).submit("/account/reset", "/account/reset", email=email.upper()).status_code == 429
    assert _mail_count(db, email) == 1 + ratelimit.RESET_ACCOUNT.limit


# --- CSRF, cookies, redirects --------------------------------------------------------

def test_a_form_post_without_this_browsers_token_is_refused_and_does_nothing(flask_app, browser, db, settings):
    email = _email()
    browser.get("/account/signup")
    no_token = browser.post("/account/signup", {"email": email, "password": PASSWORD}, csrf=False)
    assert no_token.status_code == 400 and MESSAGES["en"]["form_expired_title"] in no_token.get_data(as_text=True)
    stranger = Browser(flask_app)
    stranger.get("/account/signup")
    foreign = browser.post("/account/signup", {"email": email, "password": PASSWORD,
                                               "csrf_token": stranger.csrf()}, csrf=False)
    assert foreign.status_code == 400 and _mail_count(db, email) == 0
    # A token of the page before the login is worth nothing after it: tokens are per session.
    known = _signed_up_and_verified(browser, db, settings)
    browser.get("/account/security")
    before_login = browser.csrf()
    browser.login(known)
    assert browser.post("/account/security/totp", {"csrf_token": before_login}, csrf=False).status_code == 400
    assert browser.post("/account/logout", {"csrf_token": before_login}, csrf=False).status_code == 400
    assert browser.get("/account/security").status_code == 200  # still logged in


def test_cookies_are_httponly_samesite_lax_and_secure_unless_local(flask_app, browser, db, settings, web_state):
    email = _signed_up_and_verified(browser, db, settings)
    local = _login_cookie(browser.login(email))
    assert local.startswith("hub_login=") and "HttpOnly" in local and "SameSite=Lax" in local and "Path=/" in local
    assert "Secure" not in local  # the test issuer is http://127.0.0.1
    web_state.cookie_secure = True
    try:
        secure = Browser(flask_app)
        secure.get("/account/login", base_url="https://127.0.0.1")
        csrf_cookie = secure.last.headers.getlist("Set-Cookie")[0]
        response = secure.post("/account/login", {"email": email, "password": PASSWORD, "next": "/account/security"},
                               base_url="https://127.0.0.1")
        cookie = _login_cookie(response)
    finally:
        web_state.cookie_secure = False
    for header in (cookie, csrf_cookie):
        assert header.startswith("__Host-hub_") and "; Secure" in header and "HttpOnly" in header
        assert "SameSite=Lax" in header and "Path=/" in header and "Domain" not in header
    with db.read() as session:  # the database holds only the cookie's hash
        value = cookie.split(";")[0].split("=", 1)[1]
        assert session.scalar(select(func.count()).select_from(LoginSession).where(LoginSession.cookie_hash == value)) == 0


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example",
                                    "javascript:alert(1)", "/%0a/evil", "\t//evil.example", "evil.example"])
def test_next_never_leaves_the_hub(flask_app, browser, db, settings, target):
    email = _signed_up_and_verified(browser, db, settings)
    browser.submit("/account/login", "/account/login", email=email, password=PASSWORD, next=target)
    location = browser.last.headers["Location"]
    assert location == "/account/security" or (location.startswith("/") and not location.startswith("//")
                                               and "\\" not in location)
    assert urlsplit(location).netloc == ""


def test_logged_in_login_redirects_unless_forced_which_renews_auth_time(flask_app, browser, db, settings):
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    assert browser.get("/account/login?next=/account/security%3Fx%3D1").headers["Location"] == "/account/security?x=1"
    with db.read() as session:
        (first,) = session.scalars(select(LoginSession).join(MemberAccount).where(MemberAccount.email_index == blind.index("email", email))).all()
    forced = browser.get(f"/account/login?next=/account/security&force=1&login_hint={email}")
    assert forced.status_code == 200 and f'value="{email}"' in forced.get_data(as_text=True)
    browser.post("/account/login", {"email": email, "password": PASSWORD, "next": "/account/security", "force": "1"})
    with db.read() as session:
        (again,) = session.scalars(select(LoginSession).join(MemberAccount).where(MemberAccount.email_index == blind.index("email", email))).all()
        assert login_sessions.load(session, first.id).auth_time >= first.auth_time
    assert again.id == first.id and again.cookie_hash != first.cookie_hash  # same sid, new cookie


# --- languages -----------------------------------------------------------------------

def test_pages_speak_english_or_bahasa_indonesia(flask_app):
    browser = Browser(flask_app)
    page = browser.get("/account/login", headers={"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="id">' in page and MESSAGES["id"]["login_title"] in page
    page = browser.get("/account/login?ui_locales=fr%20en", headers={"Accept-Language": "id"}).get_data(as_text=True)
    assert '<html lang="en">' in page and MESSAGES["en"]["forgot_password"] in page
    page = browser.get("/account/signup", headers={"Accept-Language": "id"}).get_data(as_text=True)
    assert '<html lang="en">' in page  # ui_locales was remembered
    page = browser.get("/account/signup?ui_locales=id").get_data(as_text=True)
    assert MESSAGES["id"]["signup_title"] in page and 'href="/account/signup?ui_locales=en"' in page


# --- the mail command ------------------------------------------------------------------

def test_hub_accounts_mail_prints_the_verification_link(flask_app, settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    email = _email()
    _sign_up(Browser(flask_app), email)
    result = CliRunner().invoke(hub_cli, ["accounts", "mail", "--to", email.upper()], catch_exceptions=False)
    assert result.exit_code == 0 and f"to {email}" in result.output and "/account/verify?token=" in result.output
    bad = CliRunner().invoke(hub_cli, ["accounts", "mail", "--to", "nope"])
    assert bad.exit_code == 1 and "not an email" in bad.output
