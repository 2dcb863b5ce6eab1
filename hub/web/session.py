"""The login session and CSRF protection of the pages (the Flask side of hub/identity/login.py).

Cookies, all HttpOnly, SameSite=Lax, Path=/, and Secure (named with the `__Host-` prefix, which
browsers refuse to let another site or subdomain set) unless the hub runs on plain http on
this machine (HUB_COOKIE_SECURE, settings.login_cookie_secure):
- hub_login: the login session's random secret (its hash is in login_sessions);
- hub_csrf: a random value that CSRF tokens are bound to, for forms shown before a login;
- hub_mfa: a signed, 5-minute note that a password was right and a second factor is due.

A form's CSRF token is an HMAC of the hub_csrf value and the login session's id, so a token is
worth nothing on another browser, nor after a login or logout on this one.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, abort, g, request, url_for

from hub.identity import login, ratelimit, signout
from hub.identity.login import Login
from hub.web.state import state

LOGIN_COOKIE = "hub_login"
CSRF_COOKIE = "hub_csrf"
CSRF_FIELD = "csrf_token"
HOME = "/account/"  # the dashboard (hub/web/dashboard.py)


def cookie_name(base: str) -> str:
    return f"__Host-{base}" if state().cookie_secure else base


def set_cookie(response, base: str, value: str, max_age: int | None = None, samesite: str = "Lax") -> None:
    response.set_cookie(cookie_name(base), value, max_age=max_age, path="/", secure=state().cookie_secure,
                        httponly=True, samesite=samesite)


def clear_cookie(response, base: str, samesite: str = "Lax") -> None:
    response.delete_cookie(cookie_name(base), path="/", secure=state().cookie_secure, httponly=True,
                           samesite=samesite)


def cookie_login(key: str, cookie: str, store):
    """The login of this request's `cookie` in `store` (anything with a session store's
    from_cookie and seen: hub.identity.login, hub.identity.ops_users), looked up once per
    request and kept in g.<key>; its last_seen_at written when due."""
    if key not in g:
        token = request.cookies.get(cookie_name(cookie))
        found = None
        if token:
            with state().hub.db.read() as session:
                found = store.from_cookie(session, token)
        setattr(g, key, found[0] if found else None)
        if found and found[1]:
            state().hub.db.write(lambda s: store.seen(s, found[0].session_id))
    return g.get(key)


def current_login() -> Login | None:
    """The member's login of this request's cookie."""
    return cookie_login("hub_login", LOGIN_COOKIE, login)


def begin(logged_in: Login, cookie: str) -> None:
    """This request logged the browser in: its cookie is set on the response."""
    g.hub_login = logged_in
    g.hub_login_cookie = cookie


def logout_current() -> None:
    """End the login session (telling the brands signed in during it) and clear the cookie."""
    current = current_login()
    if current is not None:
        state().hub.db.write(lambda s: signout.end(s, current.session_id))
    g.hub_login = None
    g.hub_login_cookie = ""


def safe_next(next_url: str | None) -> str:
    """`next_url` if it is a path on the hub, else the account page: the open-redirect guard.
    Refused: absolute and scheme-relative URLs (//evil, /\\evil, which browsers read as
    //evil), and control characters (which browsers strip)."""
    if not next_url or not next_url.startswith("/") or "\\" in next_url:
        return HOME
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in next_url):
        return HOME
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or next_url.startswith("//"):
        return HOME
    return next_url


def login_url(next_url: str, *, force: bool = False, login_hint: str | None = None,
              ui_locales: str | None = None) -> str:
    """The login page; after it (and the second factor), the browser goes to `next_url` (a
    path on the hub). force: show the form even when logged in, for a fresh auth_time."""
    return url_for("accounts.login", next=safe_next(next_url), force="1" if force else None,
                   login_hint=login_hint or None, ui_locales=ui_locales or None)


def client_ip() -> str:
    """The client's address as every per-IP rate limit counts it (ratelimit.ip_subject: IPv6
    by /64). The peer's address: behind a reverse proxy, run the hub with its real client
    address (uvicorn --proxy-headers with --forwarded-allow-ips); a header is never trusted here."""
    return ratelimit.ip_subject(request.remote_addr)


# --- CSRF ------------------------------------------------------------------------------

def _csrf_binding() -> str:
    if "hub_csrf" not in g:
        value = request.cookies.get(cookie_name(CSRF_COOKIE), "")
        if len(value) < 32:
            value = secrets.token_urlsafe(32)
            g.hub_csrf_new = value
        g.hub_csrf = value
    return g.hub_csrf


def _session_binding() -> str:
    """The login a token is bound to: the one a blueprint named (`g.csrf_session`: the ops
    console's, hub/web/ops), else the member's."""
    if "csrf_session" in g:
        return g.csrf_session
    current = current_login()
    return str(current.session_id) if current else ""


def csrf_token() -> str:
    """The hidden field's value for a form on this page."""
    message = f"{_csrf_binding()}|{_session_binding()}".encode()
    key = hmac.new(state().hub.settings.secret_key.encode(), b"hub:csrf", hashlib.sha256).digest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_csrf() -> None:
    """Refuse a form POST whose token is missing or not this browser's and session's."""
    sent = request.form.get(CSRF_FIELD, "")
    has_cookie = cookie_name(CSRF_COOKIE) in request.cookies
    if not has_cookie or not hmac.compare_digest(sent.encode(), csrf_token().encode()):
        abort(400, description="csrf")


def template_globals() -> dict:
    return {"csrf_token": csrf_token, "csrf_field_name": CSRF_FIELD, "current_login": current_login}


def _apply_cookies(response):
    new_csrf = g.get("hub_csrf_new")
    if new_csrf:
        set_cookie(response, CSRF_COOKIE, new_csrf)
    cookie = g.get("hub_login_cookie")
    if cookie:
        set_cookie(response, LOGIN_COOKIE, cookie, max_age=state().hub.settings.login_session_ttl)
    elif cookie == "":
        clear_cookie(response, LOGIN_COOKIE)
    return response


def init_app(flask_app: Flask) -> None:
    flask_app.after_request(_apply_cookies)
