"""Settlement's tables: program prices, closed periods, statements and their lines.

Periods, statements and lines are written once, when a period closes, and never updated:
a closed period's figures are what was sent to partners (docs/settlement.md).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, FixedDecimal, JSONDoc, UTCDateTime, utcnow

PARTNER = "partner"
PROVIDER = "provider"


class ProgramPrice(Base):
    """What one point of a program is worth in money from `effective_from` on (until the
    program's next price), and the hub's fee on issued value."""

    __tablename__ = "program_prices"
    __table_args__ = (UniqueConstraint("program_id", "effective_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(String(3))
    # Minor units of `currency` per point (e.g. 10.5): exact, never a float.
    per_point_minor: Mapped[Decimal] = mapped_column(FixedDecimal)
    issuance_fee_bps: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SettlementPeriod(Base):
    """A closed calendar month (UTC). `through_id`: the highest transfer id committed when it
    closed; a transfer of this month with a higher id is late and falls in the next period."""

    __tablename__ = "settlement_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-11"
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    through_id: Mapped[int] = mapped_column(BigInteger)
    closed_by: Mapped[str] = mapped_column(String(120))
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Statement(Base):
    """What one partner or provider and the hub owe each other for a period, in one currency."""

    __tablename__ = "settlement_statements"
    __table_args__ = (UniqueConstraint("period", "party_kind", "party", "currency"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    period: Mapped[str] = mapped_column(ForeignKey("settlement_periods.period"), index=True)
    party_kind: Mapped[str] = mapped_column(String(16))  # partner | provider
    # The partner's id (as text) or the provider's name.
    party: Mapped[str] = mapped_column(String(64))
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"), default=None, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    # Positive: the party owes the hub; negative: the hub owes the party.
    net_due_minor: Mapped[int] = mapped_column(BigInteger)
    # sha256 of the canonical statement (hub.settlement.statements.canonical).
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StatementLine(Base):
    """One figure of a statement: a category of one program's movements (its points and
    money value), or a money line (fee, redemptions paid, provider orders, net due)."""

    __tablename__ = "settlement_lines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    statement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("settlement_statements.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    program_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("programs.id"), default=None)
    points: Mapped[int | None] = mapped_column(BigInteger, default=None)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    # What the figure was computed from (prices applied, fee rate), for the reader.
    detail: Mapped[dict | None] = mapped_column(JSONDoc, default=None)
