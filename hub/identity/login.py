"""Login sessions: who is logged in on a browser, since when and how (no Flask here).

A session has two identifiers. Its `id` is public: OIDC puts it in ID tokens and logout
tokens as `sid`. The browser's cookie carries a separate 256-bit random secret, of which only
the SHA-256 is stored, so neither a leaked ID token nor a copy of the database lets anyone
pose as the browser. (A signed cookie would need no lookup, but the session must be looked
up anyway to honour logout and expiry, and signing would tie every login to HUB_SECRET_KEY.)
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.identity.account_models import LoginSession, MemberAccount

# How long after its last use a session's last_seen_at is written again: a write per page
# view would buy nothing but load.
LAST_SEEN_GRANULARITY = timedelta(minutes=5)


@dataclass(frozen=True)
class Login:
    session_id: uuid.UUID  # the login session; OIDC's `sid`
    account_id: uuid.UUID
    member_id: uuid.UUID  # the coalition Member (hub.programs.models.Member)
    auth_time: datetime  # UTC, when the password (and second factor) were last checked
    amr: tuple[str, ...]  # ("pwd",) or ("pwd", "otp")
    email: str
    email_verified: bool


def _cookie_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


def _live(session: Session, condition, now: datetime) -> tuple[LoginSession, MemberAccount] | None:
    found = session.execute(
        select(LoginSession, MemberAccount)
        .join(MemberAccount, MemberAccount.id == LoginSession.account_id)
        .where(condition, LoginSession.ended_at.is_(None), LoginSession.expires_at > now)
    ).first()
    return None if found is None else (found[0], found[1])


def load(session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> Login | None:
    """The login of this session, or None if it is unknown, expired or ended."""
    found = _live(session, LoginSession.id == session_id, now or utcnow())
    return None if found is None else _as_login(*found)


def from_cookie(session: Session, token: str, *, now: datetime | None = None) -> tuple[Login, bool] | None:
    """The login the browser's cookie stands for, and whether its last_seen_at is due to be
    written (`seen`); None if there is none. Only reads, so a page view needs no write."""
    now = now or utcnow()
    found = _live(session, LoginSession.cookie_hash == _cookie_hash(token), now)
    if found is None:
        return None
    row, account = found
    return _as_login(row, account), now - row.last_seen_at >= LAST_SEEN_GRANULARITY


def seen(session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> None:
    session.execute(update(LoginSession).where(LoginSession.id == session_id).values(last_seen_at=now or utcnow()))


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
    token = secrets.token_urlsafe(32)
    row = None
    if replacing is not None:
        found = _live(session, LoginSession.id == replacing, now)
        if found is not None and found[0].account_id != account.id:
            raise ValueError("another account's session: end it with hub.identity.signout.end first")
        row = found[0] if found is not None else None
    if row is None:
        row = LoginSession(id=uuid.uuid4(), account_id=account.id, created_at=now)
        session.add(row)
    row.cookie_hash = _cookie_hash(token)
    row.auth_time = now
    row.amr = " ".join(amr)
    row.last_seen_at = now
    row.expires_at = now + ttl
    session.flush()
    return _as_login(row, account), token


def end(session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> bool:
    """Mark a session ended (idempotent): whether this call ended it. To log out, use
    hub.identity.signout.end, which also tells the brands."""
    return session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.ended_at.is_(None))
        .values(ended_at=now or utcnow())
    ).rowcount == 1


def end_all(session: Session, account_id: uuid.UUID, *, now: datetime | None = None) -> list[uuid.UUID]:
    """Mark every session of the account ended: the ids of those that were not yet (expired
    ones included: a brand may still hold a session for them). Through hub.identity.signout."""
    return list(session.scalars(
        update(LoginSession)
        .where(LoginSession.account_id == account_id, LoginSession.ended_at.is_(None))
        .values(ended_at=now or utcnow())
        .returning(LoginSession.id)
    ))


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
