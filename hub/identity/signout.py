"""Ending login sessions: the one way the hub ends them (logout on the account pages,
RP-initiated logout at /oauth/logout, a password reset, another account logging in on the
same browser), so that every brand the member signed in to during an ended session is told.
After a password reset (`end_all`), the brands' tokens stop working too: every grant of the
account is revoked, so its refresh tokens and access tokens are refused.

Each function ends the session(s) and, in the caller's transaction, queues the OpenID
back-channel logout notices (hub.identity.oidc.logout.notify_clients): the notices go out
only if the logout commits, and a session that had already ended queues nothing again.

hub.identity.login stays the low-level record of sessions (OIDC builds on it, so it cannot
import OIDC back); end sessions through this module, not login.end / login.end_all.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.identity import login
from hub.identity.oidc import logout as oidc_logout
from hub.identity.oidc.models import Grant


def end(session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> bool:
    """Log out of one session (idempotent): whether it was live until now."""
    ended = login.end(session, session_id, now=now)
    if ended:
        oidc_logout.notify_clients(session, session_id)
    return ended


def end_all(session: Session, account_id: uuid.UUID, *, now: datetime | None = None) -> list[uuid.UUID]:
    """End every session of the account (after a password reset): the ids it ended. Every
    live OIDC grant of the account is revoked with them, in the same transaction: a reset
    is how a member takes back an account someone else got into, and the tokens that someone
    had a brand issue (refresh tokens live for weeks) must not outlive it."""
    ended = login.end_all(session, account_id, now=now)
    for session_id in ended:
        oidc_logout.notify_clients(session, session_id)
    revoke_grants(session, account_id, now=now)
    return ended


def revoke_grants(session: Session, account_id: uuid.UUID, *, now: datetime | None = None) -> int:
    """Revoke every live grant of the account (its codes, refresh and access tokens with
    them: hub.identity.oidc.grants): how many. (hub.identity.oidc.grants revokes one grant or
    one sector; this is the account-wide one.)"""
    return session.execute(
        update(Grant).where(Grant.account_id == account_id, Grant.revoked_at.is_(None))
        .values(revoked_at=now or utcnow()).execution_options(synchronize_session=False)
    ).rowcount
