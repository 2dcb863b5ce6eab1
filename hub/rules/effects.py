"""What runs after purchases are posted or returned, in the same database transaction.

The earn path rates a purchase (its points) and posts it; the features that follow from a
purchase (stamp cards, streaks, tier qualification, a referral's first purchase,
challenges) are handlers here. Each gets only the purchases just created (never a
duplicate), in the order they were posted, and must be idempotent per purchase: a retried
transaction runs them again from scratch, so a handler writes nothing outside it.

A handler that has nothing to do for a program must cost no query: check the program's
rules (cached) before touching the database. The earn benchmark holds that line.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.rules.versions import RuleSet


@dataclass(frozen=True)
class Item:
    """A line of a purchase: what category of product, for how much (minor units)."""

    category: str
    amount_minor: int
    sku: str | None = None
    quantity: int = 1


@dataclass(frozen=True)
class PostedPurchase:
    txn_id: uuid.UUID  # the hub's point_transactions id
    partner_txn_id: str
    program_id: uuid.UUID
    program_code: str
    issuance_account_id: int
    membership_id: uuid.UUID
    member_id: uuid.UUID
    account_id: int
    amount_minor: int
    currency: str
    occurred_at: datetime
    store_id: str | None
    channel: str | None
    items: tuple[Item, ...]
    points: int
    rules: RuleSet | None  # the program's rules in force at occurred_at (None: base rate only)


Handler = Callable[[Session, Actor, Sequence[PostedPurchase]], None]


def _handlers() -> tuple[Handler, ...]:
    """In the order they run. Imported here, not at module level: the features import the
    earn path's neighbours, and the earn path imports this module."""
    from hub.rules import challenges, referrals, stamps, tiers

    return (stamps.stamp_cards_followed, stamps.streaks_followed, referrals.referrals_followed,
            tiers.purchases_posted, challenges.on_purchases)


def purchases_posted(session: Session, actor: Actor, purchases: Sequence[PostedPurchase]) -> None:
    if not purchases:
        return
    for handler in _handlers():
        handler(session, actor, purchases)


@dataclass(frozen=True)
class ReturnedPurchase:
    """A return just posted against a purchase (hub.programs.earning.reverse)."""

    txn_id: uuid.UUID  # the purchase's point_transactions id
    program_id: uuid.UUID
    issuance_account_id: int
    membership_id: uuid.UUID
    occurred_at: datetime  # the purchase's
    points_reversed: int  # the purchase's points this return reversed (or would have: shortfall included)
    amount_minor: int  # the amount this return gave back
    fully_returned: bool  # nothing of the purchase is left unreturned now
    rules: RuleSet | None  # the program's rules in force at the purchase's occurred_at


ReturnHandler = Callable[[Session, Actor, ReturnedPurchase], None]


def _return_handlers() -> tuple[ReturnHandler, ...]:
    from hub.rules import referrals, tiers

    return (tiers.purchase_returned, referrals.purchase_returned)


def purchase_returned(session: Session, actor: Actor, returned: ReturnedPurchase) -> None:
    """After a return is posted. Like the purchase handlers, each must cost no query for a
    program whose rules (`returned.rules`) do not use its feature, and be idempotent: a
    purchase can be returned in several parts, and a retried transaction runs it again."""
    for handler in _return_handlers():
        handler(session, actor, returned)
