"""The people who run the coalition in the ops console (hub/web/ops) and their sessions.

Stored like member accounts (hub/identity/account_models.py): the email sealed and found by
its blind index, the password as an argon2 hash, the TOTP secret sealed (hub.crypto), the
session cookie only as its SHA-256.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, validates

from hub.db import Base, UTCDateTime, utcnow
from hub.privacy import blind
from hub.privacy.sealed import Sealed


class OpsUser(Base):
    """One ops console login with its role (hub.identity.roles). TOTP is required: the
    secret is made with the user (`hub ops users add` prints its otpauth URI once)."""

    __tablename__ = "ops_users"
    __table_args__ = (
        UniqueConstraint("email_index", name="uq_ops_users_email_index"),
        # A partner_admin reaches exactly one partner; the ops roles reach every partner.
        CheckConstraint("(role = 'partner_admin') = (partner_id IS NOT NULL)", name="partner_of_partner_admin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(Sealed("ops_users.email"))
    email_index: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    totp_secret_sealed: Mapped[str] = mapped_column(Text)
    # The last accepted TOTP time step (a code is accepted once: hub.identity.accounts).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    role: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    @validates("email")
    def _index_email(self, _key, email: str) -> str:
        self.email_index = blind.index("email", email)
        return email

    @property
    def totp_enabled_at(self) -> datetime:
        """The second factor is on from creation (what hub.identity.accounts' limits read)."""
        return self.created_at


class OpsSession(Base):
    """A browser's ops login: idle and absolute timeouts, ended at logout or when its user is
    disabled. Separate from member login sessions (another cookie, another table)."""

    __tablename__ = "ops_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ops_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the absolute timeout
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
