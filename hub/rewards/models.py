"""Rewards (the catalog), redemptions, and the provider events already handled."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, FixedDecimal, JSONDoc, UTCDateTime, utcnow

IN_HOUSE_KINDS = ("discount", "free_product", "experience", "tier_upgrade")
PROVIDER_KINDS = ("gift_card", "donation")
KINDS = IN_HOUSE_KINDS + PROVIDER_KINDS

# Redemption states: pending -> fulfilled | failed (points returned) | needs_review.
PENDING = "pending"
FULFILLED = "fulfilled"
FAILED = "failed"
NEEDS_REVIEW = "needs_review"


class Reward(Base):
    """Something points buy. Priced in one program's points, or in coalition units payable
    from any program (provider rewards are priced from their face value)."""

    __tablename__ = "rewards"
    __table_args__ = (UniqueConstraint("provider", "product"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # The partner offering an in-house reward; None for the coalition's own and providers'.
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"), default=None, index=True)
    # Price: either points of one program, or coalition units (any program pays).
    program_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("programs.id"), default=None)
    price_points: Mapped[int | None] = mapped_column(BigInteger, default=None)
    price_units: Mapped[Decimal | None] = mapped_column(FixedDecimal, default=None)
    # Provider rewards: which provider and product, and the face values it offers.
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    product: Mapped[str | None] = mapped_column(String(100), default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    denominations: Mapped[list | None] = mapped_column(JSONDoc, default=None)  # minor units
    min_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    max_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Tier upgrades: the tier granted.
    tier: Mapped[str | None] = mapped_column(String(32), default=None)
    # Exclusive rewards: only members at this tier of the reward's program or above.
    min_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    # Limits: remaining stock (None: unlimited), per-member limit, availability window.
    stock: Mapped[int | None] = mapped_column(BigInteger, default=None)
    per_member_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    available_from: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    available_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    active: Mapped[bool] = mapped_column(default=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Redemption(Base):
    """An order spending a member's points on a reward.

    Paid from one program, its `program_id`, `points` and `transfer_id` say it all. Pooled
    (paid from several programs), it has a RedemptionLeg for every leg, the first included,
    and those three columns repeat its first leg (the lowest transfer id), so that they stay
    non-null and code that knows nothing of pooling still finds a real program, points and
    transfer there; only the legs hold the whole payment."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_member_reward", "member_id", "reward_id"),
        Index("ix_redemptions_program", "program_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    # Face value ordered from a provider (gift card or donation amount).
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    state: Mapped[str] = mapped_column(String(16))
    # The pending transfer (relayed rewards) or the posted one (in-house rewards).
    transfer_id: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    provider_order_id: Mapped[str | None] = mapped_column(String(100), default=None)
    # Encrypted at rest (hub.crypto): who receives the card, and what was delivered.
    recipient_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    delivery_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    # A donation receipt: not secret, kept for the member and for settlement.
    receipt: Mapped[dict | None] = mapped_column(JSONDoc, default=None)
    failure: Mapped[str | None] = mapped_column(String(500), default=None)
    # Relay bookkeeping: provider calls begun so far, and a lease so that two deliveries of
    # the same task do not call the provider concurrently.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Sticky (hub/rewards/relay.py): some attempt placed the order and got no definitive "not
    # placed" (an answer other than RETRY or FAILED), or ran past its lease without an
    # outcome, or ops requeued it. While false, nothing reached the provider: the relay places
    # without a lookup first, and voids the order when it gives up. Once true, never cleared:
    # it looks up first, and giving up leaves the order for review.
    maybe_placed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    relay_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    caused_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RedemptionLeg(Base):
    """A pooled redemption's share paid from one program (one pending or posted transfer
    each). A redemption paid from one program has no legs: its own columns say it all. The
    legs' transfers come from one ledger call, so their ids give the order they were paid in."""

    __tablename__ = "redemption_legs"

    redemption_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("redemptions.id"), primary_key=True)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[int] = mapped_column(BigInteger)


class ProviderEvent(Base):
    """Webhook events already handled, so that a replayed event id is ignored."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
