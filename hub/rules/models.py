"""Tables every loyalty feature shares: a program's versioned rule documents, and awards
(bonus points granted outside a purchase's rating: welcome, referral, engagement, stamp
cards, streaks, challenges, surprise rewards)."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, JSONDoc, UTCDateTime, utcnow


class RuleVersion(Base):
    """One version of a program's rule document. A purchase is rated by the version in force
    at its occurred_at: the one with the latest effective_from at or before it."""

    __tablename__ = "program_rule_versions"
    __table_args__ = (
        UniqueConstraint("program_id", "version"),
        Index("ix_program_rule_versions_effective", "program_id", "effective_from"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    document: Mapped[dict] = mapped_column(JSONDoc)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Award(Base):
    """Bonus points granted to a member once per (program, kind, key): the key names what
    earned them (an engagement event id, a referral, the 3rd completion of a stamp card), so
    a repeat of the same cause grants nothing more."""

    __tablename__ = "point_awards"
    __table_args__ = (
        UniqueConstraint("program_id", "kind", "key"),
        Index("ix_point_awards_membership", "membership_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(300))
    # None when the award granted no points (a badge, a stamp card's free product).
    transfer_id: Mapped[int | None] = mapped_column(BigId, default=None)
    caused_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Segment(Base):
    """A partner's rule-based group of members (tier, spend, recency, programs held,
    consented attributes). Who is in it is materialised in segment_members, refreshed by a
    job and when a member's facts change, so promotions can target it at earn time."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("partner_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict] = mapped_column(JSONDoc)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True, index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
