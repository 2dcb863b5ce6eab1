"""Tables of a member's standing in a program: tier qualification buckets, the tier history,
and the expiry notices already sent (issue 6, tiers and expiry)."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, UTCDateTime, utcnow


class TierBucket(Base):
    """What a membership's purchases of one calendar month count towards its tier: points
    earned and amount spent (minor units of the program's earn currency), net of returns.
    One atomic upsert per purchase keeps it, so qualification reads at most window_months
    rows instead of the member's history."""

    __tablename__ = "tier_buckets"

    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    # Months since year 0 (year * 12 + month - 1): a window is a range of integers.
    month: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class TierChange(Base):
    """Append-only history of a membership's tier: from, to, why (qualified, review, reward)."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_membership", "membership_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"))
    from_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    to_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str] = mapped_column(String(16))
    # The qualifying total (points, or minor units of spend) that decided it.
    qualifying: Mapped[int | None] = mapped_column(BigInteger, default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExpiryNotice(Base):
    """A member was told that points of this account expire at `expires_at`: once each."""

    __tablename__ = "expiry_notices"

    account_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
