"""Member accounts (how a person logs in) and their login sessions.

Every secret a member or the hub hands out is stored so that a copy of the database alone
cannot be used: passwords as argon2 hashes, one-time tokens, recovery codes and login cookies
as SHA-256 hashes (they are 80-256 random bits, so a slow hash adds nothing), the TOTP secret
(which the hub must read back) and outgoing mail sealed (hub.crypto), and the email, names
and mail addresses in sealed columns (hub.privacy.sealed) found by their blind indexes.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, validates

from hub.db import Base, BigId, UTCDateTime, utcnow
from hub.privacy import blind
from hub.privacy.sealed import Sealed


class MemberAccount(Base):
    """The login of one coalition Member: one account per member, one per email."""

    __tablename__ = "member_accounts"
    __table_args__ = (UniqueConstraint("email_index", name="uq_member_accounts_email_index"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), unique=True)
    # Normalised (trimmed, lower case), sealed; found (and kept unique) by its blind index,
    # which setting `email` keeps in step.
    email: Mapped[str] = mapped_column(Sealed("member_accounts.email"))
    email_index: Mapped[str] = mapped_column(String(64))
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    password_hash: Mapped[str] = mapped_column(String(200))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    given_name: Mapped[str | None] = mapped_column(Sealed("member_accounts.given_name"), default=None)
    family_name: Mapped[str | None] = mapped_column(Sealed("member_accounts.family_name"), default=None)
    locale: Mapped[str | None] = mapped_column(String(10), default=None)
    # The TOTP secret, sealed (hub.crypto). Set while enrolling; the second factor is on only
    # once totp_enabled_at is set (the member proved their app has the secret).
    totp_secret_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The last 30-second time step whose code was accepted: a code of that step or an
    # earlier one is refused, so an observed code cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("email")
    def _index_email(self, _key, email: str) -> str:
        self.email_index = blind.index("email", email)
        return email


class AccountToken(Base):
    """A single-use, expiring token mailed to the member (email verification, password reset)."""

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member_accounts.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # verify_email | reset_password
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecoveryCode(Base):
    """One of the member's single-use second-factor recovery codes."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_account", "account_id", "code_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member_accounts.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginSession(Base):
    """A browser's login. `id` stays in the hub (clients get a `sid` derived from it per
    partner: hub.identity.oidc.issue.session_sid); the cookie is a separate random secret of
    which only the hash is kept."""

    __tablename__ = "login_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member_accounts.id"), index=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # When the password (and second factor) were last checked; a silent login keeps it.
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[str] = mapped_column(String(32))  # space-separated RFC 8176 values
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class OutgoingMail(Base):
    """A message for a member. There is no mail server in development: `hub accounts mail`
    prints these. The body holds live links, so it is sealed like the other secrets."""

    __tablename__ = "outgoing_mail"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    to_address: Mapped[str] = mapped_column(Sealed("outgoing_mail.to_address"))
    to_index: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    body_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("to_address")
    def _index_address(self, _key, to: str) -> str:
        self.to_index = blind.index("email", to)
        return to


class LinkRequest(Base):
    """A member's request to link a program membership (by card number or partner member
    id) to their account, and the one-time code mailed to the membership's email on file.

    A request is recorded whether or not the card was found (membership_id and code_hash are
    then empty), so the pages answer the same either way and tell nothing about the card."""

    __tablename__ = "link_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member_accounts.id"), index=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    membership_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("memberships.id"), default=None)
    # The Member the membership belonged to when the code was sent: linking moves it only
    # from that member (a concurrent link or enrolment makes the code worthless).
    from_member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # HMAC-SHA256 of the code, keyed from HUB_SECRET_KEY and bound to this request's id: a
    # 6-digit code's plain hash would be reversed by trying a million values.
    code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
