"""Ending login sessions: the one way the hub ends them (logout on the account pages,
RP-initiated logout at /oauth/logout, a password reset, another account logging in on the
same browser), so that every brand the member signed in to during an ended session is told.

Each function ends the session(s) and, in the caller's transaction, queues the OpenID
back-channel logout notices (hub.identity.oidc.logout.notify_clients): the notices go out
only if the logout commits, and a session that had already ended queues nothing again.

hub.identity.login stays the low-level record of sessions (OIDC builds on it, so it cannot
import OIDC back); end sessions through this module, not login.end / login.end_all.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from hub.identity import login
from hub.identity.oidc import logout as oidc_logout


def end(session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> bool:
    """Log out of one session (idempotent): whether it was live until now."""
    ended = login.end(session, session_id, now=now)
    if ended:
        oidc_logout.notify_clients(session, session_id)
    return ended


def end_all(session: Session, account_id: uuid.UUID, *, now: datetime | None = None) -> list[uuid.UUID]:
    """End every session of the account (after a password reset): the ids it ended."""
    ended = login.end_all(session, account_id, now=now)
    for session_id in ended:
        oidc_logout.notify_clients(session, session_id)
    return ended
