"""Rates, conversion pairs, conversions and member-to-member transfers."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, FixedDecimal, UTCDateTime, utcnow
from hub.privacy.sealed import Sealed

# Conversion states. Local conversions complete at once; one with a partner-hosted side is
# pending until its remote leg settles: completed, failed (local leg compensated), or
# needs_review (no definitive answer before the deadline; the local leg stays reserved).
COMPLETED = "completed"
PENDING = "pending"
FAILED = "failed"
NEEDS_REVIEW = "needs_review"


class ProgramRate(Base):
    """A program's point value in coalition units from `valid_from` on (the rate history).
    The newest row is the current rate; programs.point_value mirrors it."""

    __tablename__ = "program_rates"
    __table_args__ = (Index("ix_program_rates_program", "program_id", "valid_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    point_value: Mapped[Decimal] = mapped_column(FixedDecimal)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    set_by: Mapped[str] = mapped_column(String(120))


class ConversionPair(Base):
    """The terms of converting from one program into another (one direction). No row, or
    `open` false: that direction is closed."""

    __tablename__ = "conversion_pairs"

    from_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    to_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    open: Mapped[bool] = mapped_column(default=True)
    fee_bps: Mapped[int] = mapped_column(Integer, default=0)
    # Points of the source program: at least `min_points`, in steps of `increment`.
    min_points: Mapped[int] = mapped_column(BigInteger, default=1)
    increment: Mapped[int] = mapped_column(BigInteger, default=1)
    updated_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Conversion(Base):
    """Points of one program turned into another's: a debit in the source program and a
    credit in the target, each through the program's clearing account (for settlement)."""

    __tablename__ = "conversions"
    __table_args__ = (
        Index("ix_conversions_member", "member_id", "created_at"),
        Index("ix_conversions_from", "from_program_id", "created_at"),
        Index("ix_conversions_to", "to_program_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # A quote executes at most once.
    quote_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    from_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    to_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    points_in: Mapped[int] = mapped_column(BigInteger)
    points_out: Mapped[int] = mapped_column(BigInteger)
    # The rates used (coalition units per point), the fee, and the value credited.
    from_value: Mapped[Decimal] = mapped_column(FixedDecimal)
    to_value: Mapped[Decimal] = mapped_column(FixedDecimal)
    fee_bps: Mapped[int] = mapped_column(Integer)
    fee_units: Mapped[Decimal] = mapped_column(FixedDecimal)
    units_out: Mapped[Decimal] = mapped_column(FixedDecimal)
    state: Mapped[str] = mapped_column(String(16))
    # The ledger legs: None for the side a partner hosts.
    debit_transfer_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    credit_transfer_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # A partner-hosted side ("from" or "to"), relayed as a saga (hub/exchange/saga.py).
    hosted_side: Mapped[str | None] = mapped_column(String(4), default=None)
    remote_member: Mapped[str | None] = mapped_column(String(100), default=None)
    remote_transaction_id: Mapped[str | None] = mapped_column(String(100), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Sticky (hub/exchange/saga.py): some attempt sent the debit or credit and got no
    # definitive "not applied" (an answer other than RETRY or FAILURE), or ran past its lease
    # without an outcome. While false, nothing reached the partner: the saga sends without
    # asking status() first, and compensates when it gives up. Once true, never cleared: it
    # asks first, and giving up leaves the conversion for review.
    remote_maybe_sent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    relay_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    failure: Mapped[str | None] = mapped_column(String(500), default=None)
    caused_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class MemberTransfer(Base):
    """Points given by one member to another inside one program (family sharing)."""

    __tablename__ = "member_transfers"
    __table_args__ = (
        Index("ix_member_transfers_sender", "program_id", "from_member_id", "created_at"),
        Index("ix_member_transfers_recipient", "to_member_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    from_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    to_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[int] = mapped_column(BigInteger)
    # Free text from the sender: kept here (erasure clears it), never in the immutable ledger.
    note: Mapped[str | None] = mapped_column(Sealed("member_transfers.note"), default=None)
    caused_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
