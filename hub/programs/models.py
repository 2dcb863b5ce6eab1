"""Partners, programs, members, memberships and the purchases/returns that earn points."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, validates

from hub.db import Base, FixedDecimal, JSONDoc, UTCDateTime, utcnow
from hub.privacy import blind
from hub.privacy.sealed import Sealed

IDENTIFIER_KINDS = ("external_id", "card_number", "phone", "email")


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Program(Base):
    """A points currency. Its id is also its ledger id."""

    __tablename__ = "programs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), index=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Value of one point in coalition units (fixed point).
    point_value: Mapped[Decimal] = mapped_column(FixedDecimal)
    # Base earn rule: points per one major unit of earn_currency, rounded down.
    earn_currency: Mapped[str] = mapped_column(String(3))
    earn_rate: Mapped[Decimal] = mapped_column(FixedDecimal)
    issuance_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    # Where redeemed points go (a system account: no cached balance, never locked).
    redemption_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    # Conversions in and out pass through it (a system account too), so that settlement
    # sees what each program gave and received.
    clearing_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    # Where expired points go (hub.rules.expiry; a system account), recorded for settlement.
    breakage_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    # The connector of a partner-hosted program (hub.exchange.hosted): its balances live in
    # the partner's system, not in this ledger. None: the hub holds the balances.
    hosted_by: Mapped[str | None] = mapped_column(String(32), default=None)
    # Member-to-member transfers (family sharing): at most this many points per transfer
    # and per sender in 24 hours. None: transfers are closed in this program.
    transfer_max_points: Mapped[int | None] = mapped_column(BigInteger, default=None)
    transfer_daily_limit: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Member(Base):
    """One coalition identity (a person)."""

    __tablename__ = "members"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("member_id", "program_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)
    # The member's tier in this program (hub.rules); None: the program has no tiers, or the
    # member has not reached its first.
    tier: Mapped[str | None] = mapped_column(String(32), default=None)
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # When the tier is next reviewed (a downgrade can happen only then); None without a tier.
    tier_review_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MembershipIdentifier(Base):
    """How a partner knows a member in one program: external id, card, phone or email.

    The value is sealed; it is found (and kept unique) by its blind index, which setting
    `kind` and `value` keeps in step: compare `value_index` with `blind.index(kind, value)`."""

    __tablename__ = "membership_identifiers"
    __table_args__ = (
        UniqueConstraint("program_id", "kind", "value_index", name="uq_membership_identifiers_value_index"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), index=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(Sealed("membership_identifiers.value"))
    value_index: Mapped[str] = mapped_column(String(64))

    @validates("kind", "value")
    def _index_value(self, key: str, given: str) -> str:
        kind = given if key == "kind" else self.kind
        value = given if key == "value" else self.value
        if kind is not None and value is not None:
            self.value_index = blind.index(kind, value)
        return given


class PointTransaction(Base):
    """A purchase or a return posted by a partner, and the points it moved."""

    __tablename__ = "point_transactions"
    __table_args__ = (
        UniqueConstraint("program_id", "kind", "partner_txn_id"),
        Index("ix_point_transactions_membership", "membership_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))  # purchase | return
    # No foreign key: it would lock the program's row on every earn (migration 0003).
    program_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"))
    partner_txn_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    store_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Purchases only: online | in_store, and the lines ({category, amount_minor, sku,
    # quantity}) that category rules rate; either may be absent.
    channel: Mapped[str | None] = mapped_column(String(16), default=None)
    items: Mapped[list | None] = mapped_column(JSONDoc, default=None)
    points: Mapped[int] = mapped_column(BigInteger)
    # Purchases only: the rule version that rated it and why it earned `points` (the lines
    # of hub.rules' rating, which the member sees). None: rated by the base rate alone.
    rule_version: Mapped[int | None] = mapped_column(Integer, default=None)
    rating: Mapped[dict | None] = mapped_column(JSONDoc, default=None)
    # Returns only: the purchase, and points the member no longer held (not clawed back).
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("point_transactions.id"), default=None, index=True
    )
    points_shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    # Purchases only: running totals of what returns have taken back.
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    transfer_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transfers.id"), default=None
    )
    client_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
