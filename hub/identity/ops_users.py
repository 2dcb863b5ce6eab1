"""Ops console users and their login sessions (no Flask here; the pages are hub/web/ops).

A user is made by `hub ops users add` with a random password and a TOTP secret, both shown
once by the command (the password's hash and the sealed secret are all the hub keeps): the
second factor is required from the first login, with no enrolment step a stolen password
could finish. Sessions end after IDLE without a request or ABSOLUTE after the login,
whichever comes first, at logout, and when the user is disabled (hub.identity.session_store,
which keeps members' login sessions too).
"""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actor import OPS_USER, Actor
from hub.audit import trail
from hub.crypto import seal
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.identity import accounts, roles
from hub.identity.accounts import Passwords
from hub.identity.ops_user_models import OpsSession, OpsUser
from hub.identity.session_store import SessionStore
from hub.privacy import blind
from hub.programs.models import Partner

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
# How stale last_seen_at may get before a request writes it again (bounds the idle timeout's
# error, and spares a write per page view).
SEEN_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True)
class OpsLogin:
    session_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    role: str
    partner_id: uuid.UUID | None  # partner_admin only

    @property
    def scopes(self) -> frozenset[str]:
        return roles.SCOPES[self.role]

    @property
    def can_write(self) -> bool:
        return "ops:write" in self.scopes

    @property
    def audit_actor(self) -> str:
        """How the audit trail names this user (an id: no email in the trail)."""
        return f"{OPS_USER}{self.user_id}"

    @property
    def actor(self) -> Actor:
        """The user in services that take an Actor (its partner's reach, its role's scopes)."""
        return Actor(client_id=self.audit_actor, partner_id=self.partner_id, scopes=self.scopes)


def new_password() -> str:
    """The initial password `hub ops users add` prints once (120 random bits)."""
    return secrets.token_urlsafe(15)


def find(session: Session, email: str) -> OpsUser | None:
    return session.scalar(select(OpsUser).where(OpsUser.email_index == blind.index("email", email)))


def add(session: Session, *, email: str, role: str, partner_code: str | None, password_hash: str,
        actor: str) -> tuple[OpsUser, str]:
    """A new user (audited as `actor`) and the otpauth URI of its TOTP secret."""
    email = accounts.normalise_email(email)
    if role not in roles.ROLES:
        raise Invalid(f"role is one of {', '.join(roles.ROLES)}", slug="invalid-role", field="role")
    partner_id = None
    if roles.needs_partner(role) != (partner_code is not None):
        raise Invalid("a partner_admin needs --partner; the ops roles take none", slug="partner-required")
    if partner_code is not None:
        partner_id = session.scalar(select(Partner.id).where(Partner.code == partner_code))
        if partner_id is None:
            raise NotFound(f"no partner {partner_code}", slug="partner-not-found")
    if find(session, email) is not None:
        raise Conflict("an ops user has that email", slug="ops-user-exists")
    secret = pyotp.random_base32()
    user = OpsUser(id=uuid.uuid4(), email=email, password_hash=password_hash, role=role, partner_id=partner_id,
                   totp_secret_sealed=seal(accounts.TOTP_PURPOSE, secret.encode()), created_at=utcnow())
    session.add(user)
    session.flush()
    trail.record(session, actor=actor, action="ops_user.add", target=f"ops_user:{user.id}",
                 after={"role": role, "partner": partner_code})
    uri = pyotp.TOTP(secret, interval=accounts.TOTP_STEP).provisioning_uri(
        name=email, issuer_name=f"{accounts.TOTP_ISSUER} ops")
    return user, uri


def list_users(session: Session) -> list[tuple[OpsUser, str | None]]:
    """Every user with its partner's code, oldest first."""
    return [(user, code) for user, code in session.execute(
        select(OpsUser, Partner.code).outerjoin(Partner, Partner.id == OpsUser.partner_id)
        .order_by(OpsUser.created_at, OpsUser.id))]


def disable(session: Session, email: str, *, actor: str) -> OpsUser:
    """No more logins for the user; its sessions end now."""
    user = find(session, accounts.normalise_email(email))
    if user is None:
        raise NotFound("no ops user has that email", slug="ops-user-not-found")
    if user.disabled_at is not None:
        raise Conflict("that ops user is already disabled", slug="ops-user-disabled")
    now = utcnow()
    user.disabled_at = now
    SESSIONS.end_all(session, user.id, now=now)
    trail.record(session, actor=actor, action="ops_user.disable", target=f"ops_user:{user.id}",
                 before={"disabled": False}, after={"disabled": True})
    return user


def authenticate(session: Session, passwords: Passwords, email: str, password: str) -> OpsUser | None:
    """The enabled user if the password is right, else None (the same argon2 work either way)."""
    return accounts.authenticate(session, passwords, email, password, lookup=_enabled)


def _enabled(session: Session, email: str) -> OpsUser | None:
    user = find(session, email)
    return user if user is not None and user.disabled_at is None else None


def check_code(session: Session, user: OpsUser, code: str, *, now: datetime | None = None) -> bool:
    """The user's current TOTP code, each accepted once."""
    return accounts.accept_code(session, user, code, now or utcnow())


# --- sessions --------------------------------------------------------------------------

def _as_login(row: OpsSession, user: OpsUser) -> OpsLogin:
    return OpsLogin(session_id=row.id, user_id=user.id, email=user.email, role=user.role, partner_id=user.partner_id)


SESSIONS = SessionStore(OpsSession, OpsUser, owner_key=OpsSession.user_id, token_column=OpsSession.token_hash,
                        as_login=_as_login, seen_every=SEEN_GRANULARITY, idle=IDLE,
                        owner_live=OpsUser.disabled_at.is_(None))


def start(session: Session, user: OpsUser, *, now: datetime | None = None) -> tuple[OpsLogin, str]:
    """A new session (and its cookie value: always new, so a planted cookie is worth nothing)."""
    return SESSIONS.start(session, user, lifetime=ABSOLUTE, now=now)


from_cookie = SESSIONS.from_cookie
seen = SESSIONS.seen
end = SESSIONS.end  # logout
