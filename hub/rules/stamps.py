"""Stamp cards and streaks: what a member's purchases add up to over time.

Both follow a posted purchase (hub.rules.effects) and keep one progress row per membership
and rule id, changed only by a single INSERT ... ON CONFLICT DO UPDATE ... RETURNING: the
database takes the row's lock and computes the new count in one statement, so two purchases
of one member at once each see the other's stamp, and exactly one of them completes a card.
The grant itself is an award keyed by the completion's number (or the streak's period), so a
repeat of the same cause pays nothing.

Returns do not take a stamp or a streak day back: both count visits, and the return path
(hub.programs.earning.reverse) reverses the purchase's points only. See
docs/loyalty/frequency-referrals-engagement.md.
"""
from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import Boolean, Integer, bindparam, case, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub import money
from hub.actor import Actor
from hub.db import utcnow
from hub.rewards.models import IN_HOUSE_KINDS, Reward
from hub.rules import periods
from hub.rules.awards import Recipient, award
from hub.rules.document import Finding
from hub.rules.effects import PostedPurchase
from hub.rules.frequency_models import RewardVoucher, StampProgress, StreakProgress
from hub.rules.versions import RuleSet

STAMP = "stamp"
STREAK = "streak"
_stamps = StampProgress.__table__
_streaks = StreakProgress.__table__
_VOUCHER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read out at a till


def min_amount_met(purchase: PostedPurchase, min_amount: str | None) -> bool:
    """The purchase reaches `min_amount` (major units of its currency; a fraction finer than
    the currency's minor unit rounds up, so a threshold is never lowered)."""
    if min_amount is None:
        return True
    minor = Decimal(min_amount).scaleb(money.exponent(purchase.currency))
    return purchase.amount_minor >= int(minor.to_integral_value(rounding=ROUND_CEILING))


def _qualifies(purchase: PostedPurchase, when: dict) -> bool:
    if "channel" in when and purchase.channel != when["channel"]:
        return False
    if "stores" in when and purchase.store_id not in when["stores"]:
        return False
    if "categories" in when and not any(i.category in when["categories"] for i in purchase.items):
        return False
    return min_amount_met(purchase, when.get("min_amount"))


def _recipient(p: PostedPurchase) -> Recipient:
    return Recipient(p.program_id, p.issuance_account_id, p.membership_id, p.account_id)


# --- stamp cards ------------------------------------------------------------------------

@functools.cache
def _stamp_statement(dialect: str):
    """Add a stamp; a card that reaches `n` stamps completes (stamps back to 0, one more
    completion). A card that does not repeat takes no stamp after its first completion (no
    row comes back)."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = insert(_stamps).values(
        membership_id=bindparam("membership_id"), card_id=bindparam("card_id"), stamps=1, completions=0,
        updated_at=bindparam("now"))
    full = _stamps.c.stamps + 1 >= bindparam("n", type_=Integer)
    return stmt.on_conflict_do_update(
        index_elements=[_stamps.c.membership_id, _stamps.c.card_id],
        set_={
            "stamps": case((full, 0), else_=_stamps.c.stamps + 1),
            "completions": _stamps.c.completions + case((full, 1), else_=0),
            "updated_at": stmt.excluded.updated_at,
        },
        where=or_(bindparam("repeat", type_=Boolean), _stamps.c.completions == 0),
    ).returning(_stamps.c.stamps, _stamps.c.completions)


def stamp_cards_followed(session: Session, actor: Actor, purchases: Sequence[PostedPurchase]) -> None:
    for purchase in purchases:
        cards = purchase.rules.section("stamp_cards") if purchase.rules else None
        for card in cards or ():
            if _qualifies(purchase, card.get("when", {})):
                _stamp(session, actor, purchase, card)


def _stamp(session: Session, actor: Actor, purchase: PostedPurchase, card: dict) -> None:
    conn = session.connection()
    row = conn.execute(_stamp_statement(conn.dialect.name), {
        "membership_id": purchase.membership_id, "card_id": card["id"], "now": utcnow(),
        "n": card["stamps"], "repeat": card.get("repeat", True),
    }).first()
    if row is None or row.stamps != 0:
        return
    key = f"{purchase.membership_id}:{card['id']}:{row.completions}"
    reward = card["reward"]
    if "bonus_points" in reward:
        award(session, _recipient(purchase), kind=STAMP, key=key, points=reward["bonus_points"],
              reason=f"Stamp card completed: {card['name']}", caused_by=actor.ref)
        return
    _issue_voucher(session, actor, purchase, card, key)


def _issue_voucher(session: Session, actor: Actor, purchase: PostedPurchase, card: dict, key: str) -> None:
    """The card's in-house reward, free: an award of 0 points that names it, and a voucher.
    A reward the program no longer offers is recorded on the award (for ops to make good),
    never silently dropped and never a failed purchase."""
    code = card["reward"]["reward_code"]
    reward = session.execute(select(Reward.id, Reward.name).where(
        Reward.code == code, Reward.program_id == purchase.program_id, Reward.kind.in_(IN_HOUSE_KINDS),
        Reward.active.is_(True))).first()
    reason = (f"Stamp card completed: {card['name']}: free {reward.name}" if reward
              else f"Stamp card completed: {card['name']}: reward {code} is not offered; ask the partner")
    granted, award_id = award(session, _recipient(purchase), kind=STAMP, key=key, points=0,
                              reason=reason, caused_by=actor.ref)
    if granted and reward:
        session.add(RewardVoucher(program_id=purchase.program_id, membership_id=purchase.membership_id,
                                  reward_id=reward.id, award_id=award_id, code=voucher_code()))
        session.flush()


def voucher_code() -> str:
    return "-".join("".join(secrets.choice(_VOUCHER_ALPHABET) for _ in range(4)) for _ in range(3))


# --- streaks ----------------------------------------------------------------------------

@functools.cache
def _streak_statement(dialect: str):
    """Record a qualifying purchase in period `p`: the next period extends the run, the same
    one leaves it, a later one starts a new run of 1. A purchase posted late, for a period
    before the last one counted, changes nothing (the run already moved on)."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    p = bindparam("period", type_=Integer)
    stmt = insert(_streaks).values(
        membership_id=bindparam("membership_id"), streak_id=bindparam("streak_id"), last_period=p, run=1,
        updated_at=bindparam("now"))
    last = _streaks.c.last_period
    return stmt.on_conflict_do_update(
        index_elements=[_streaks.c.membership_id, _streaks.c.streak_id],
        set_={
            "run": case((last >= p, _streaks.c.run), (last == p - 1, _streaks.c.run + 1), else_=1),
            "last_period": case((last > p, last), else_=p),
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(_streaks.c.run, _streaks.c.last_period)


def streaks_followed(session: Session, actor: Actor, purchases: Sequence[PostedPurchase]) -> None:
    for purchase in purchases:
        streaks = purchase.rules.section("streaks") if purchase.rules else None
        for streak in streaks or ():
            if min_amount_met(purchase, streak.get("min_amount")):
                _extend(session, actor, purchase, streak)


def _extend(session: Session, actor: Actor, purchase: PostedPurchase, streak: dict) -> None:
    period = periods.index(purchase.occurred_at, streak["period"], purchase.rules)
    conn = session.connection()
    row = conn.execute(_streak_statement(conn.dialect.name), {
        "membership_id": purchase.membership_id, "streak_id": streak["id"], "period": period, "now": utcnow(),
    }).first()
    length = streak["length"]
    if row.last_period != period:
        return
    if streak.get("repeat", True):
        if row.run % length:
            return
        key = f"{purchase.membership_id}:{streak['id']}:{period}"
    elif row.run == length:
        key = f"{purchase.membership_id}:{streak['id']}"
    else:
        return
    award(session, _recipient(purchase), kind=STREAK, key=key, points=streak["bonus_points"],
          reason=f"Streak: {length} {streak['period']}s in a row" + (f" ({streak['name']})" if "name" in streak else ""),
          caused_by=actor.ref)


# --- progress ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CardProgress:
    id: str
    name: str
    stamps: int
    of: int
    completed: int


@dataclass(frozen=True)
class StreakRun:
    id: str
    period: str
    run: int
    length: int
    completed: bool  # a streak that does not repeat, already earned


def progress(session: Session, membership_id: uuid.UUID, rules: RuleSet | None) -> tuple[list[CardProgress], list[StreakRun]]:
    """The membership's stamp cards and streaks under `rules` (a run broken by a missed
    period shows 0)."""
    cards = (rules.section("stamp_cards") if rules else None) or []
    streaks = (rules.section("streaks") if rules else None) or []
    stamped = {r.card_id: r for r in session.scalars(select(StampProgress).where(
        StampProgress.membership_id == membership_id)).all()} if cards else {}
    runs = {r.streak_id: r for r in session.scalars(select(StreakProgress).where(
        StreakProgress.membership_id == membership_id)).all()} if streaks else {}
    now = utcnow()
    card_views = [
        CardProgress(c["id"], c["name"], min(getattr(stamped.get(c["id"]), "stamps", 0), c["stamps"]), c["stamps"],
                     getattr(stamped.get(c["id"]), "completions", 0))
        for c in cards
    ]
    streak_views = []
    for s in streaks:
        row, length, repeat = runs.get(s["id"]), s["length"], s.get("repeat", True)
        alive = row is not None and row.last_period >= periods.index(now, s["period"], rules) - 1
        run = row.run if alive else 0
        done = not repeat and row is not None and row.run >= length  # once earned, stays earned
        shown = length if done else (run % length if repeat else min(run, length))
        streak_views.append(StreakRun(s["id"], s["period"], shown, length, done))
    return card_views, streak_views


# --- linting ----------------------------------------------------------------------------

def _duplicate_ids(rules: list[dict], section: str) -> list[Finding]:
    seen, found = set(), []
    for i, rule in enumerate(rules):
        if rule["id"] in seen:
            found.append(Finding(f"/{section}/{i}/id", f"duplicate id {rule['id']!r}"))
        seen.add(rule["id"])
    return found


def lint(document: dict) -> list[Finding]:
    found: list[Finding] = []
    cards = document.get("stamp_cards", [])
    found += _duplicate_ids(cards, "stamp_cards")
    for i, card in enumerate(cards):
        if card["stamps"] < 2:
            found.append(Finding(f"/stamp_cards/{i}/stamps", "a card needs at least 2 stamps (1 is a bonus on every purchase)"))
        if card["reward"].get("bonus_points") == 0:
            found.append(Finding(f"/stamp_cards/{i}/reward/bonus_points", "a completed card must grant something"))
    streaks = document.get("streaks", [])
    found += _duplicate_ids(streaks, "streaks")
    for i, streak in enumerate(streaks):
        if streak["length"] < 2:
            found.append(Finding(f"/streaks/{i}/length", "a streak needs at least 2 periods"))
        if streak["bonus_points"] <= 0:
            found.append(Finding(f"/streaks/{i}/bonus_points", "a streak must grant points"))
    return found
