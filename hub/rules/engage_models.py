"""Tables of engagement (issue 6, points 8 and 9): coalition challenges and the badges they
give, and what members choose to tell partners for personalised offers (their attributes;
whether partners may use them is a consent of hub/privacy/sharing.py). Segments' own tables
are in hub/rules/models.py."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONDoc, UTCDateTime, utcnow


class Challenge(Base):
    """A coalition-wide challenge set by ops: a goal reached by purchases made between
    starts_at (inclusive) and ends_at (exclusive), a badge, and a bonus paid by one program.
    Immutable once created (the earn path caches the active ones)."""

    __tablename__ = "challenges"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # {kind: distinct_partners | purchases | spend, target, programs?, min_amount?, currency?}
    goal: Mapped[dict] = mapped_column(JSONDoc)
    badge_code: Mapped[str] = mapped_column(String(32))
    badge_name: Mapped[str] = mapped_column(String(200))
    bonus_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    bonus_points: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChallengeEntrant(Base):
    """A member who made a purchase counting toward a challenge. The row is what concurrent
    purchases of one member serialise on (an upsert locks it) before counting progress, so
    the last of two simultaneous purchases always sees the other's."""

    __tablename__ = "challenge_entrants"

    challenge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("challenges.id"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True, index=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberBadge(Base):
    """A completed challenge: its badge, given once per member, and what became of the bonus
    (the award, or why none was paid)."""

    __tablename__ = "member_badges"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    challenge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("challenges.id"), primary_key=True)
    badge_code: Mapped[str] = mapped_column(String(32))
    badge_name: Mapped[str] = mapped_column(String(200))
    award_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    bonus_points: Mapped[int] = mapped_column(BigInteger, default=0)
    # Why no bonus was paid (e.g. no membership in the paying program); None when it was.
    note: Mapped[str | None] = mapped_column(String(300), default=None)
    awarded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberAttribute(Base):
    """One value a member told the hub about themselves (a list attribute has one row per
    value), so segments match attributes with plain indexed SQL on both dialects."""

    __tablename__ = "member_attributes"
    __table_args__ = (Index("ix_member_attributes_value", "name", "value"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(100), primary_key=True)

