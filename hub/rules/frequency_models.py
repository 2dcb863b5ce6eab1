"""Tables of the frequency features (issue 6, points 3-5): stamp-card and streak progress per
membership, stamp-card vouchers, referral codes and referrals, engagement events.

Progress rows are keyed by (membership, rule id) and only ever changed by one atomic upsert
each (hub/rules/stamps.py), so concurrent purchases of one member cannot lose or double a
stamp."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class StampProgress(Base):
    """A membership's current card of one stamp card rule: stamps so far, cards completed."""

    __tablename__ = "stamp_progress"

    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    card_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stamps: Mapped[int] = mapped_column(Integer)
    completions: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StreakProgress(Base):
    """A membership's run of one streak rule: the last period with a qualifying purchase (an
    index: days, weeks or months since 1970 in the program's time zone) and the run ending
    there."""

    __tablename__ = "streak_progress"

    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    streak_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_period: Mapped[int] = mapped_column(Integer)
    run: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RewardVoucher(Base):
    """An in-house reward issued free by a completed stamp card (no points spent, so no
    redemption): the code the member shows at the partner."""

    __tablename__ = "reward_vouchers"
    __table_args__ = (Index("ix_reward_vouchers_membership", "membership_id", "issued_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"))
    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"))
    award_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("point_awards.id"), unique=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReferralCode(Base):
    """A member's referral code in one program (one per membership)."""

    __tablename__ = "referral_codes"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Referral states: pending -> paid | refused (a fraud guard or cap: `reason`) | expired.
class Referral(Base):
    """One referee's referral (at most one per referee), recorded at enrolment."""

    __tablename__ = "referrals"
    __table_args__ = (Index("ix_referrals_referrer", "referrer_membership_id", "state", "paid_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    referrer_membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"))
    referee_membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), unique=True)
    code: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(300), default=None)
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class EngagementEvent(Base):
    """An engagement event a partner posted (survey, review, social share, app download),
    rewarded or not (`capped`, with the reason)."""

    __tablename__ = "engagement_events"
    __table_args__ = (
        UniqueConstraint("program_id", "event_id"),
        Index("ix_engagement_events_member_kind", "membership_id", "kind", "local_day"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"))
    event_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The day of occurred_at in the program's time zone (YYYY-MM-DD): what daily caps count.
    local_day: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(BigInteger)
    capped: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(300))
    award_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    client_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
