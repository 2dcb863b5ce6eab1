"""Consent to share a member's data with a partner, per purpose (hub/privacy/sharing.py)."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, UTCDateTime, utcnow


class SharingConsent(Base):
    """A consent in force: the member lets the partner see what the purpose names. No row:
    nothing shared. Its primary key is the index every partner read's check uses; the second
    index finds who shares a purpose with a partner (segment refreshes)."""

    __tablename__ = "sharing_consents"
    __table_args__ = (Index("ix_sharing_consents_partner_purpose", "partner_id", "purpose"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SharingConsentEvent(Base):
    """The proof: every grant and revocation, append-only (rows are never updated or deleted).
    Holds no personal data beyond the member's id, which erasure keeps as a pseudonym."""

    __tablename__ = "sharing_consent_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(8))  # grant | revoke
    channel: Mapped[str] = mapped_column(String(16))  # dashboard | api | erasure | migration
    by: Mapped[str] = mapped_column(String(120))  # Actor.ref: member:<id>, client:<id>
    client_id: Mapped[str | None] = mapped_column(String(64), default=None)  # the app it came through
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
