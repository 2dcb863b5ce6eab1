"""Ops login (email, password and TOTP code on one form) and logout.

Counted like the member login (hub/web/common.py): failed passwords per account and IP, per
account and per IP (the account subject prefixed `ops:`, so a member and an ops user with
the same email do not share a count), then codes per user and per IP. One answer for every
refusal: it does not tell which of the three was wrong.
"""
from __future__ import annotations

from flask import redirect, request, url_for

from hub.identity import accounts, ops_users, ratelimit
from hub.web import common
from hub.web.ops.console import blueprint, clear_login_cookie, current_ops, page, set_login_cookie
from hub.web.session import client_ip, safe_next
from hub.web.state import state

WRONG = "That email, password and code do not match an ops login."


def _next() -> str:
    wanted = request.values.get("next") or ""
    return wanted if wanted.startswith("/ops/") and safe_next(wanted) == wanted else url_for("ops.overview")


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    next_url = _next()
    if request.method == "GET":
        if current_ops() is not None:
            return redirect(next_url)
        return page("login.html", email="", next=next_url, error=None)
    email, password = request.form.get("email", ""), request.form.get("password", "")
    tries = common.password_attempt("ops:" + common.email_subject(email), ratelimit.LOGIN_IP)
    with common.db().read() as session:
        user = ops_users.authenticate(session, state().passwords, email, password)
    if user is None:  # counted
        return page("login.html", 400, email=email, next=next_url, error=WRONG)
    tries.succeeded()
    codes = accounts.second_factor_attempt(state().limiter, user, client_ip())
    code = request.form.get("code", "")

    def start(s):
        if not ops_users.check_code(s, user, code):
            return None
        current = current_ops()
        if current is not None:
            ops_users.end(s, current.session_id)
        return ops_users.start(s, user)

    started = common.db().write(start)
    if started is None:  # counted
        return page("login.html", 400, email=email, next=next_url, error=WRONG)
    codes.succeeded()
    response = redirect(next_url)
    set_login_cookie(response, started[1])
    return response


@blueprint.post("/logout")
def logout():
    current = current_ops()
    common.db().write(lambda s: ops_users.end(s, current.session_id))
    response = redirect(url_for("ops.login"))
    clear_login_cookie(response)
    return response
