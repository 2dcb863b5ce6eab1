"""Login sessions: who is logged in on a browser, since when and how (no Flask here).

A session has two identifiers. Its `id` is public: OIDC puts it in ID tokens and logout
tokens as `sid`. The browser's cookie carries a separate 256-bit random secret, of which only
the SHA-256 is stored, so neither a leaked ID token nor a copy of the database lets anyone
pose as the browser. (A signed cookie would need no lookup, but the session must be looked
up anyway to honour logout and expiry, and signing would tie every login to HUB_SECRET_KEY.)
The sessions are kept by hub.identity.session_store, like the ops console's.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.identity.account_models import LoginSession, MemberAccount
from hub.identity.session_store import SessionStore


@dataclass(frozen=True)
class Login:
    session_id: uuid.UUID  # the login session; OIDC's `sid`
    account_id: uuid.UUID
    member_id: uuid.UUID  # the coalition Member (hub.programs.models.Member)
    auth_time: datetime  # UTC, when the password (and second factor) were last checked
    amr: tuple[str, ...]  # ("pwd",) or ("pwd", "otp")
    email: str
    email_verified: bool


def _as_login(row: LoginSession, account: MemberAccount) -> Login:
    return Login(
        session_id=row.id,
        account_id=account.id,
        member_id=account.member_id,
        auth_time=row.auth_time,
        amr=tuple(row.amr.split()),
        email=account.email,
        email_verified=account.email_verified_at is not None,
    )


# How long after its last use a session's last_seen_at is written again: a write per page
# view would buy nothing but load.
LAST_SEEN_GRANULARITY = timedelta(minutes=5)
# No idle timeout: a login lasts its whole ttl (HUB_LOGIN_SESSION_TTL) unless ended.
SESSIONS = SessionStore(LoginSession, MemberAccount, owner_key=LoginSession.account_id,
                        token_column=LoginSession.cookie_hash, as_login=_as_login,
                        seen_every=LAST_SEEN_GRANULARITY)

load = SESSIONS.load
from_cookie = SESSIONS.from_cookie
seen = SESSIONS.seen
# To log out, use hub.identity.signout.end / end_all, which also tell the brands: these only
# mark sessions ended (end: whether this call ended it; end_all: the ids it ended, expired
# ones included, since a brand may still hold a session for them).
end = SESSIONS.end
end_all = SESSIONS.end_all


def start(
    session: Session,
    account: MemberAccount,
    amr: tuple[str, ...],
    *,
    ttl: timedelta,
    replacing: uuid.UUID | None = None,
    now: datetime | None = None,
) -> tuple[Login, str]:
    """Record a completed login (password, and second factor if on): (login, cookie value).

    The cookie is always new, so a cookie planted before the login is worth nothing after it
    (session fixation). Logging in again on a browser whose session is the same account's
    (`replacing`, e.g. a forced re-authentication) renews that session in place: its `sid`
    stays, with a fresh auth_time. Another account's live session is refused (ValueError):
    the caller ends it first with hub.identity.signout.end, which tells its brands.
    """
    now = now or utcnow()
    return SESSIONS.start(session, account, lifetime=ttl, renewing=replacing, now=now,
                          auth_time=now, amr=" ".join(amr))


def account_claims(session: Session, account_id: uuid.UUID) -> dict:
    """The OIDC profile claims this account holds (only those it has a value for)."""
    account = session.get(MemberAccount, account_id)
    if account is None:
        return {}
    claims: dict = {"email": account.email, "email_verified": account.email_verified_at is not None}
    if account.given_name:
        claims["given_name"] = account.given_name
    if account.family_name:
        claims["family_name"] = account.family_name
    name = " ".join(part for part in (account.given_name, account.family_name) if part)
    if name:
        claims["name"] = name
    if account.locale:
        claims["locale"] = account.locale
    return claims
