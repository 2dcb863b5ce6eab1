"""What every member page blueprint shares (accounts, dashboard, sharing, privacy): the same
guards (CSRF on every POST, the same pages for a refused form and for too many attempts), the
message page, a refusal shown next to its field, the logged-in account, and the login and
second-factor limits a page that asks for the password or a code again counts against.
"""
from __future__ import annotations

import uuid

from flask import Blueprint, make_response, render_template, request, url_for

from hub.actor import Actor
from hub.errors import Invalid
from hub.identity import accounts, ratelimit
from hub.identity.account_models import MemberAccount
from hub.web.i18n import MESSAGES, locale, t
from hub.web.session import check_csrf, client_ip, current_login
from hub.web.state import state

WEB_CLIENT = "hub-web"  # who the pages act as in the domain's Actor (never an OAuth client)


def db():
    return state().hub.db


def absolute_url(endpoint: str, **values) -> str:
    """A link to the hub for a mail (the issuer's origin)."""
    return state().hub.settings.issuer.rstrip("/") + url_for(endpoint, **values)


def guard(blueprint: Blueprint) -> None:
    """CSRF on every POST of the blueprint; its refusals and rate limits as friendly pages."""
    blueprint.before_request(_check_csrf_on_post)
    blueprint.register_error_handler(ratelimit.Limited, too_many)
    blueprint.register_error_handler(400, bad_request)


def _check_csrf_on_post():
    if request.method == "POST":
        check_csrf()


def too_many(exc: ratelimit.Limited):
    minutes = max(1, -(-exc.retry_after // 60))
    response = make_response(message("too_many_title", t("too_many_text", minutes=minutes), status=429))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def bad_request(exc):
    # check_csrf's refusal: a form from another site, or one shown before a login or logout.
    return message("form_expired_title", t("form_expired_text"), link=request.path,
                   link_key="try_again", status=400)


def message(title_key: str, text: str, *, link: str | None = None, link_key: str | None = None,
            status: int = 200, alert: bool = False):
    return render_template("message.html", title=t(title_key), text=text, link=link,
                           link_text=t(link_key) if link_key else None, alert=alert or status >= 400), status


def errors(exc: Invalid) -> dict[str, str]:
    """A refusal, keyed by the form field it is shown next to."""
    text = t(f"error.{exc.slug}", min=accounts.PASSWORD_MIN, max=accounts.PASSWORD_MAX,
             name_max=accounts.NAME_MAX)
    return {exc.extra.get("field", "form"): text}


def current_account() -> MemberAccount | None:
    current = current_login()
    if current is None:
        return None
    with db().read() as session:
        return session.get(MemberAccount, current.account_id)


def web_actor(member_id: uuid.UUID) -> Actor:
    """The member acting on their own pages."""
    return Actor(client_id=WEB_CLIENT, partner_id=None, scopes=frozenset(), member_id=member_id)


def email_subject(raw: str) -> str:
    """Whom a per-account limit counts: the account's email however it is typed."""
    try:
        return accounts.normalise_email(raw)
    except Invalid:
        return raw.strip().lower()


def password_attempt(email: str, *also: ratelimit.Rule) -> ratelimit.Attempt:
    """Count a password about to be checked against the login limits (per account from this
    IP, per account from anywhere, and `also` per IP); the caller takes it back if right."""
    ip = client_ip()
    return state().limiter.attempt(ratelimit.LOGIN_ACCOUNT, ratelimit.login_subject(email, ip),
                                   (ratelimit.LOGIN_EMAIL, email), *((rule, ip) for rule in also))


def second_factor_failed(account: MemberAccount, tries: ratelimit.Attempt) -> None:
    """After a wrong code whose transaction was rolled back: mail the member, in a transaction
    of its own, if it used up the day's allowance (hub.identity.accounts.second_factor_failed)."""
    db().write(lambda s: accounts.second_factor_failed(s, account, tries, lambda: code_notice(account)))


def code_notice(account: MemberAccount) -> tuple[str, str]:
    """The mail telling a member that someone used up the day's wrong codes: in the member's
    own language (the request is likely someone else's)."""
    texts = MESSAGES.get(account.locale or "") or MESSAGES[locale()]
    day = state().limiter.rule(ratelimit.SECOND_FACTOR_DAY)
    return (texts["mail.code_guesses_subject"],
            texts["mail.code_guesses_body"].format(count=day.limit, link=absolute_url("accounts.reset")))
