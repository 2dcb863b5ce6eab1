"""The member account pages under /account (the dashboard at /account/ itself is
hub/web/dashboard.py): login (and its second-factor step), sign-up,
email verification, password reset, security settings (TOTP, recovery codes), logout.

Thin: each POST checks the rate limits, runs one domain call of hub/identity/accounts.py in
one transaction, and renders the outcome. A refused input (`Invalid`) rolls that transaction
back and is shown next to its field.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from hub.errors import Invalid
from hub.identity import accounts, mail, ratelimit, signout
from hub.identity import login as login_sessions
from hub.identity.account_models import MemberAccount
from hub.web import common
from hub.web import session as web_session
from hub.web.i18n import locale, t
from hub.web.session import client_ip, current_login, login_url, safe_next
from hub.web.state import state

blueprint = Blueprint("accounts", __name__, url_prefix="/account", template_folder="templates",
                      static_folder="static", static_url_path="/static")

MFA_COOKIE = "hub_mfa"
MFA_MAX_AGE = 300  # seconds between a right password and its second factor


common.guard(blueprint)


def _secret_key() -> str:
    return state().hub.settings.secret_key


# --- login -----------------------------------------------------------------------------

def _mfa_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret_key(), salt="hub-login-second-factor")


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    force = request.values.get("force") == "1"
    current = current_login()
    if request.method == "GET":
        if current is not None and not force:
            return redirect(next_url)
        hint = request.args.get("login_hint") or (current.email if current else "")
        return render_template("login.html", email=hint, next=next_url, force=force, errors={})

    email, password = request.form.get("email", ""), request.form.get("password", "")
    tries = common.password_attempt(common.email_subject(email), ratelimit.LOGIN_IP)
    passwords = state().passwords
    with common.db().read() as session:
        account = accounts.authenticate(session, passwords, email, password)
    if account is None:  # counted
        errors = {"form": t("error.login-wrong")}
        return render_template("login.html", email=email, next=next_url, force=force, errors=errors), 400
    tries.succeeded()
    if passwords.needs_rehash(account.password_hash):
        new_hash = passwords.hash(password)
        common.db().write(lambda s: accounts.rehash(s, account, new_hash))
    if accounts.totp_enabled(account):
        pending = _mfa_signer().dumps({"a": str(account.id), "p": account.password_changed_at.isoformat()})
        response = redirect(url_for(".second_factor", next=next_url))
        web_session.set_cookie(response, MFA_COOKIE, pending, max_age=MFA_MAX_AGE)
        return response
    return _logged_in(account, ("pwd",), next_url)


def _logged_in(account: MemberAccount, amr: tuple[str, ...], next_url: str):
    current = current_login()
    ttl = state().hub.settings.login_session_ttl

    def work(s):
        # Another account's session on this browser ends (its brands are told); the same
        # account's is renewed in place, keeping its sid.
        if current is not None and current.account_id != account.id:
            signout.end(s, current.session_id)
        return login_sessions.start(s, account, amr, ttl=timedelta(seconds=ttl),
                                    replacing=current.session_id if current else None)

    started, cookie = common.db().write(work)
    web_session.begin(started, cookie)
    return redirect(next_url)


def _pending_second_factor() -> MemberAccount | None:
    """The account whose password was just right, from the signed cookie (if still fresh and
    the password has not changed since)."""
    raw = request.cookies.get(web_session.cookie_name(MFA_COOKIE))
    if not raw:
        return None
    try:
        pending = _mfa_signer().loads(raw, max_age=MFA_MAX_AGE)
    except BadSignature:
        return None
    with common.db().read() as session:
        account = session.get(MemberAccount, uuid.UUID(pending["a"]))
    if account is None or account.password_changed_at.isoformat() != pending["p"]:
        return None
    return account


@blueprint.route("/login/code", methods=["GET", "POST"])
def second_factor():
    next_url = safe_next(request.values.get("next"))
    account = _pending_second_factor()
    if account is None:
        return redirect(login_url(next_url))
    if request.method == "GET":
        return render_template("code.html", next=next_url, errors={})

    # Counted before the code is checked (taken back if right): parallel guesses cannot pass the limit.
    tries = accounts.second_factor_attempt(state().limiter, account, client_ip())
    code = request.form.get("code", "")

    def check(s):
        if accounts.check_second_factor(s, s.get(MemberAccount, account.id), code):
            return True
        accounts.second_factor_failed(s, account, tries, lambda: common.code_notice(account))
        return False

    if not common.db().write(check):
        return render_template("code.html", next=next_url, errors={"code": t("error.code-wrong")}), 400
    tries.succeeded()
    response = _logged_in(account, ("pwd", "otp"), next_url)
    web_session.clear_cookie(response, MFA_COOKIE)
    return response


@blueprint.post("/logout")
def logout():
    web_session.logout_current()
    return redirect(url_for(".login", next=safe_next(request.form.get("next"))))


# --- sign-up and verification ----------------------------------------------------------

@blueprint.route("/signup", methods=["GET", "POST"])
def signup():
    next_url = safe_next(request.values.get("next"))
    form = {k: request.form.get(k, "") for k in ("email", "given_name", "family_name")}
    if request.method == "GET":
        return _signup_form(form, next_url, {})
    limiter = state().limiter
    limiter.attempt(ratelimit.SIGNUP_IP, client_ip())

    def work(s):
        done = accounts.sign_up(s, email=form["email"], password_hash=password_hash, given_name=form["given_name"],
                                family_name=form["family_name"], locale=locale())
        if done.verify_token is not None:
            link = common.absolute_url("accounts.verify", token=done.verify_token, next=next_url)
            _send(s, done.email, "mail.verify_subject", "mail.verify_body", link=link)
        else:
            _send(s, done.email, "mail.exists_subject", "mail.exists_body",
                  link=common.absolute_url("accounts.reset"), login=common.absolute_url("accounts.login"))
        return done

    try:
        # Counted per address too: each sign-up mails it, and it may not be the sender's.
        limiter.attempt(ratelimit.SIGNUP_EMAIL, accounts.normalise_email(form["email"]))
        password_hash = accounts.new_password_hash(state().passwords, request.form.get("password", ""))
        done = common.db().write(work)
    except Invalid as exc:
        return _signup_form(form, next_url, common.errors(exc), status=400)
    # The same answer whether the email was new or not (no account enumeration).
    return common.message("signup_sent_title", t("signup_sent_text", email=done.email),
                    link=url_for(".login", next=next_url), link_key="login_link")


def _signup_form(form: dict, next_url: str, errors: dict, status: int = 200):
    return render_template("signup.html", form=form, next=next_url, errors=errors,
                           password_min=accounts.PASSWORD_MIN), status


def _send(session, to: str, subject_key: str, body_key: str, **values) -> None:
    mail.send(session, to=to, subject=t(subject_key), body=t(body_key, **values))


@blueprint.route("/verify", methods=["GET", "POST"])
def verify():
    # The link only shows a button: mail scanners that fetch links must not spend the token.
    next_url = safe_next(request.values.get("next"))
    token = request.values.get("token", "")
    if request.method == "GET":
        return render_template("verify.html", token=token, next=next_url)
    state().limiter.attempt(ratelimit.VERIFY_IP, client_ip())
    try:
        common.db().write(lambda s: accounts.verify_email(s, token))
    except Invalid:
        return common.message("verify_failed_title", t("error.token-invalid"), status=400)
    link = next_url if current_login() else url_for(".login", next=next_url)
    return common.message("verified_title", t("verified_text"), link=link, link_key="continue")


# --- password reset --------------------------------------------------------------------

@blueprint.route("/reset", methods=["GET", "POST"])
def reset():
    email = request.form.get("email", "")
    if request.method == "GET":
        return render_template("reset.html", email="", errors={})
    limiter = state().limiter
    limiter.attempt(ratelimit.RESET_IP, client_ip())

    def work(s):
        token = accounts.request_reset(s, email)
        if token is not None:
            _send(s, accounts.normalise_email(email), "mail.reset_subject", "mail.reset_body",
                  link=common.absolute_url("accounts.reset_new", token=token))

    try:
        # Counted per address whether it has an account or not: the limit tells nothing.
        limiter.attempt(ratelimit.RESET_ACCOUNT, accounts.normalise_email(email))
        common.db().write(work)
    except Invalid as exc:
        return render_template("reset.html", email=email, errors=common.errors(exc)), 400
    return common.message("reset_sent_title", t("reset_sent_text"))


@blueprint.route("/reset/new", methods=["GET", "POST"])
def reset_new():
    token = request.values.get("token", "")
    if request.method == "GET":
        return _reset_form(token, {})
    state().limiter.attempt(ratelimit.RESET_CONFIRM_IP, client_ip())
    password = request.form.get("password", "")
    if password != request.form.get("confirm", ""):
        return _reset_form(token, {"confirm": t("error.password-mismatch")}, status=400)
    try:
        password_hash = accounts.new_password_hash(state().passwords, password)
        common.db().write(lambda s: accounts.reset_password(s, token, password_hash))
    except Invalid as exc:
        if exc.slug == "token-invalid":
            return common.message("reset_failed_title", t("error.token-invalid"), link=url_for(".reset"),
                            link_key="reset_again", status=400)
        return _reset_form(token, common.errors(exc), status=400)
    # Every session of the account has ended, this browser's too.
    web_session.logout_current()
    return common.message("reset_done_title", t("reset_done_text"), link=url_for(".login"), link_key="login_link")


def _reset_form(token: str, errors: dict, status: int = 200):
    return render_template("reset_new.html", token=token, errors=errors,
                           password_min=accounts.PASSWORD_MIN), status


# --- security settings -----------------------------------------------------------------

@blueprint.get("/security")
def security():
    account = common.current_account()
    if account is None:
        return redirect(login_url(url_for(".security")))
    notice = t(f"notice.{request.args['done']}") if request.args.get("done") in ("totp-off",) else None
    return _security_page(account, {}, notice=notice)


def _security_page(account: MemberAccount, errors: dict, *, notice: str | None = None, status: int = 200):
    with common.db().read() as session:
        codes_left = accounts.recovery_codes_left(session, account)
    pending_uri = accounts.pending_totp_uri(account)
    pending_secret = None
    if pending_uri is not None:
        secret = parse_qs(urlsplit(pending_uri).query)["secret"][0]
        pending_secret = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template(
        "security.html", account=account, totp_on=accounts.totp_enabled(account), codes_left=codes_left,
        pending_uri=pending_uri, pending_secret=pending_secret, errors=errors, notice=notice,
    ), status


def _with_code(action, done):
    """Run a security action that takes a current code (login required, rate-limited like the
    login's second factor), then render `done(result)`; a refusal is shown on the page."""
    account = common.current_account()
    if account is None:
        return redirect(login_url(url_for(".security")))
    tries = accounts.second_factor_attempt(state().limiter, account)
    code = request.form.get("code", "")
    try:
        result = common.db().write(lambda s: action(s, s.get(MemberAccount, account.id), code))
    except Invalid as exc:
        if exc.slug != "code-wrong":  # only wrong codes count
            tries.succeeded()
        else:  # (the action's transaction was rolled back: the notice has its own)
            common.second_factor_failed(account, tries)
        return _security_page(account, common.errors(exc), status=400)
    tries.succeeded()
    return done(result)


@blueprint.post("/security/totp")
def totp_begin():
    account = common.current_account()
    if account is None:
        return redirect(login_url(url_for(".security")))
    # The current password, counted like a login's (a logged-in browser may guess it too).
    tries = common.password_attempt(account.email)
    try:
        proof = accounts.confirm_password(state().passwords, account, request.form.get("password", ""))
        tries.succeeded()
        common.db().write(lambda s: accounts.begin_totp(s, s.get(MemberAccount, account.id), proof))
    except Invalid as exc:
        return _security_page(account, common.errors(exc), status=400)
    return redirect(url_for(".security"))


def _show_codes(codes: list[str]):
    return render_template("recovery_codes.html", codes=codes)


@blueprint.post("/security/totp/confirm")
def totp_confirm():
    return _with_code(accounts.confirm_totp, _show_codes)


@blueprint.post("/security/totp/disable")
def totp_disable():
    return _with_code(accounts.disable_totp, lambda _: redirect(url_for(".security", done="totp-off")))


@blueprint.post("/security/recovery-codes")
def recovery_codes():
    return _with_code(accounts.regenerate_recovery_codes, _show_codes)
