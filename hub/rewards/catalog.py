"""The rewards catalog: in-house rewards, provider catalogs synced in, and point prices."""
from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from hub import money, pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import run, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.programs.earning import parse_time
from hub.programs.models import Program
from hub.programs.service import code_cursor, refuse_hosted
from hub.rewards.models import IN_HOUSE_KINDS, Reward
from hub.rewards.providers import CatalogItem
from hub.rules import tiers

MAX_POINTS = 10**12


# --- prices ------------------------------------------------------------------------------

def units_for(rates: Mapping[str, Decimal], currency: str, amount_minor: int) -> Decimal:
    """Coalition units a face value is worth."""
    if currency not in rates:
        raise Invalid(f"no coalition unit rate for {currency}", slug="unpriced-currency")
    return Decimal(amount_minor).scaleb(-money.exponent(currency)) * rates[currency]


def points_for_units(units: Decimal, program: Program) -> int:
    """Points of `program` that pay `units`, rounded up: the member never underpays."""
    return math.ceil(units / program.point_value)


def price_in_units(reward: Reward, rates: Mapping[str, Decimal], amount_minor: int | None) -> Decimal:
    """The price of a reward payable from any program (not one priced in a program's
    points): its units, or its face value's."""
    if reward.price_units is not None:
        return reward.price_units
    return units_for(rates, reward.currency, amount_minor)


def price(reward: Reward, program: Program, rates: Mapping[str, Decimal], amount_minor: int | None) -> int:
    if reward.program_id is not None:
        return reward.price_points
    return points_for_units(price_in_units(reward, rates, amount_minor), program)


def check_denomination(reward: Reward, amount: str | None) -> int | None:
    """The face value an order asks for, if the reward offers it (provider rewards only)."""
    if reward.provider is None:
        if amount is not None:
            raise Invalid("this reward has a fixed price; do not send an amount", slug="amount-not-allowed")
        return None
    if amount is None:
        raise Invalid(f"{reward.code} needs an amount in {reward.currency}", slug="denomination-required")
    minor = money.to_minor(amount, reward.currency)
    offered = reward.denominations or []
    in_range = reward.min_minor is not None and reward.min_minor <= minor <= (reward.max_minor or minor)
    if minor not in offered and not in_range:
        raise Invalid(f"{reward.code} does not offer {amount} {reward.currency}", slug="denomination-not-offered")
    return minor


# --- reading -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RewardView:
    reward: Reward
    program_code: str | None          # the program a points price is in
    quote_program: Program | None     # the program the caller asked prices in
    quotes: list[tuple[int | None, int]]  # (face value minor or None, points in quote_program)


def available_now(reward: Reward, now: datetime) -> bool:
    return (
        reward.active
        and (reward.available_from is None or reward.available_from <= now)
        and (reward.available_until is None or now < reward.available_until)
        and (reward.stock is None or reward.stock > 0)
    )


# Partners see their own programs' rewards and the coalition's (unit-priced) ones; members
# and ops see every reward (a member's spending is checked by program). One rule for listing
# and for redeeming: the partner is the bound parameter "partner".
_PARTNER_SEES = or_(
    Reward.program_id.is_(None),
    Reward.program_id.in_(select(Program.id).where(Program.partner_id == bindparam("partner"))),
)


def _sees_all(actor: Actor) -> bool:
    return actor.member_id is not None or "ops:read" in actor.scopes


def list_rewards(
    session: Session,
    actor: Actor,
    rates: Mapping[str, Decimal],
    *,
    kind: str | None = None,
    program_code: str | None = None,
    provider: str | None = None,
    available: bool = True,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[RewardView], str | None]:
    after = code_cursor(cursor)
    q = select(Reward, Program.code).outerjoin(Program, Program.id == Reward.program_id)
    if not _sees_all(actor):
        q = q.where(_PARTNER_SEES)
    quote_program = None
    if program_code is not None:
        quote_program = _caller_program(session, actor, program_code)
        q = q.where(or_(Reward.program_id.is_(None), Reward.program_id == quote_program.id))
    if kind is not None:
        q = q.where(Reward.kind == kind)
    if provider is not None:
        q = q.where(Reward.provider == provider)
    if after is not None:
        q = q.where(Reward.code > after)
    now = utcnow()
    if available:
        q = q.where(
            Reward.active.is_(True),
            or_(Reward.available_from.is_(None), Reward.available_from <= now),
            or_(Reward.available_until.is_(None), Reward.available_until > now),
            or_(Reward.stock.is_(None), Reward.stock > 0),
        )
    rows = session.execute(q.order_by(Reward.code).limit(limit + 1), {"partner": actor.partner_id}).all()
    more = len(rows) > limit
    views = [_view(r, code, quote_program, rates) for r, code in rows[:limit]]
    return views, pagination.encode(views[-1].reward.code) if more else None


def _caller_program(session: Session, actor: Actor, code: str) -> Program:
    q = select(Program).where(Program.code == code)
    if "ops:read" not in actor.scopes:
        q = q.where(Program.partner_id == actor.partner_id)
    program = session.scalar(q)
    if program is None:
        raise NotFound(f"no program {code}", slug="program-not-found")
    return program


def _view(reward: Reward, program_code: str | None, quote_program: Program | None, rates) -> RewardView:
    quotes: list[tuple[int | None, int]] = []
    if quote_program is not None:
        faces = list(reward.denominations or []) if reward.provider else [None]
        for face in faces:
            try:
                quotes.append((face, price(reward, quote_program, rates, face)))
            except Invalid:
                pass  # a currency with no unit rate: shown, but not priced
    return RewardView(reward, program_code, quote_program, quotes)


_rewards = Reward.__table__
REWARD_COLUMNS = tuple(_rewards.c.keys())  # the columns of `reward_query`'s rows, in order
_REWARD_BY_CODE = select(_rewards).where(_rewards.c.code == bindparam("code"))
_PARTNER_REWARD_BY_CODE = _REWARD_BY_CODE.where(_PARTNER_SEES)
REWARD_READS = (_REWARD_BY_CODE, _PARTNER_REWARD_BY_CODE)  # what `reward_query` may give


def reward_by_code(session: Session, actor: Actor, code: str) -> SimpleNamespace:
    """The reward as a plain namespace of its columns (Core, straight to the driver)."""
    statement, params = reward_query(actor, code)
    rows, _ = run(session.connection(), statement, params)
    return reward_from_row(code, rows[0] if rows else None)


def reward_query(actor: Actor, code: str) -> tuple[Select, dict]:
    """The statement that reads the reward `code` as `actor` may see it, and its parameters."""
    if _sees_all(actor):
        return _REWARD_BY_CODE, {"code": code}
    return _PARTNER_REWARD_BY_CODE, {"code": code, "partner": actor.partner_id}


def reward_from_row(code: str, row: Sequence | None) -> SimpleNamespace:
    """The reward of a row of `reward_query`'s statement (its columns first, in order); None,
    or a row without an id (an outer join that found none): 404 reward-not-found."""
    if row is None or row[0] is None:
        raise NotFound(f"no reward {code}", slug="reward-not-found")
    reward = SimpleNamespace(**dict(zip(REWARD_COLUMNS, row)))
    # `run` may leave a FixedDecimal as its string.
    reward.price_units = None if reward.price_units is None else Decimal(reward.price_units)
    return reward


# --- writing -----------------------------------------------------------------------------

def create_reward(session: Session, actor: Actor, body: dict) -> tuple[Reward, str | None]:
    """An in-house reward. A partner prices it in one of its programs' points (not a
    partner-hosted program's: the hub cannot spend those); ops may instead price a coalition
    reward in units, payable from any program."""
    kind = body["kind"]
    if kind not in IN_HOUSE_KINDS:
        raise Invalid(f"{kind} rewards come from provider catalogs", slug="invalid-reward")
    code = body["code"]
    if session.scalar(select(Reward.id).where(Reward.code == code)):
        raise Conflict(f"reward {code} already exists", slug="reward-exists")
    program = None
    if "program" in body:
        program = _caller_program(session, actor, body["program"])
        refuse_hosted(program)
        if "points" not in body or "units" in body:
            raise Invalid("a program's reward has a price in points", slug="invalid-price")
    elif "ops:write" not in actor.scopes or "units" not in body or "points" in body:
        raise Invalid("give a program and a price in points (coalition rewards: units, ops only)",
                      slug="invalid-price")
    units = Decimal(body["units"]) if "units" in body else None
    if units is not None and not (units.is_finite() and units > 0):
        raise Invalid("units must be a number greater than zero", slug="invalid-price")
    if kind == "tier_upgrade" and not body.get("tier"):
        raise Invalid("a tier upgrade names its tier", slug="invalid-reward")
    tiers.check_min_tier(session, program.id if program else None, body.get("min_tier"), kind, body.get("tier"))
    window = tuple(parse_time(body[k], k, past_only=False) if body.get(k) else None for k in ("available_from", "available_until"))
    if all(window) and window[0] >= window[1]:
        raise Invalid("available_until must be after available_from", slug="invalid-window")
    reward = Reward(
        code=code,
        kind=kind,
        name=body["name"],
        description=body.get("description", ""),
        partner_id=program.partner_id if program else None,
        program_id=program.id if program else None,
        price_points=body.get("points"),
        price_units=units,
        tier=body.get("tier"),
        min_tier=body.get("min_tier"),
        stock=body.get("stock"),
        per_member_limit=body.get("per_member_limit"),
        available_from=window[0],
        available_until=window[1],
    )
    session.add(reward)
    session.flush()
    trail.record(session, actor=trail.who(actor), action="reward.create", target=f"reward:{code}",
                 after={"id": str(reward.id), "kind": kind, "program": program.code if program else None,
                        "points": reward.price_points, "units": body.get("units"), "stock": reward.stock})
    return reward, program.code if program else None


def take_stock(session: Session, reward: Reward) -> None:
    """One unit off a limited stock, atomically (a conditional UPDATE, no read-then-write)."""
    if reward.stock is None:
        return
    taken = session.execute(
        update(Reward).where(Reward.id == reward.id, Reward.stock > 0).values(stock=Reward.stock - 1)
    ).rowcount
    if not taken:
        raise Conflict(f"{reward.code} is out of stock", slug="out-of-stock")


def return_stock(session: Session, reward_id: uuid.UUID) -> None:
    session.execute(
        update(Reward).where(Reward.id == reward_id, Reward.stock.is_not(None)).values(stock=Reward.stock + 1)
    )


def sync_provider(session: Session, provider: str, kind: str, items: Iterable[CatalogItem]) -> dict[str, int]:
    """Upsert a provider's catalog; products it no longer lists are deactivated."""
    now = utcnow()
    existing = {r.product: r for r in session.scalars(select(Reward).where(Reward.provider == provider))}
    counts = {"added": 0, "updated": 0, "removed": 0}
    seen = set()
    for item in items:
        seen.add(item.product)
        reward = existing.get(item.product)
        if reward is None:
            reward = Reward(code=_provider_code(provider, item.product), provider=provider, product=item.product)
            session.add(reward)
            counts["added"] += 1
        else:
            counts["updated"] += 1
        reward.kind = kind
        reward.name = item.name
        reward.description = item.description
        reward.currency = item.currency
        reward.denominations = list(item.denominations)
        reward.min_minor, reward.max_minor = item.min_minor, item.max_minor
        reward.active = True
        reward.synced_at = now
    for product, reward in existing.items():
        if product not in seen and reward.active:
            reward.active = False
            counts["removed"] += 1
    session.flush()
    return counts


def _provider_code(provider: str, product: str) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in product.upper())
    return f"{provider.upper()}-{safe}"[:64]


# --- a member's rewards within reach -----------------------------------------------------

@dataclass(frozen=True)
class Offer:
    """A reward the member can pay now: from `program_code`, `points` of it (for a provider
    reward, at the face value `amount_minor`, the smallest it offers that they can pay)."""

    reward: Reward
    program_code: str
    points: int
    amount_minor: int | None


def within_reach(
    session: Session,
    actor: Actor,
    rates: Mapping[str, Decimal],
    available: list[tuple[Program, int]],
    *,
    limit: int = 10,
    scan: int = 500,
) -> list[Offer]:
    """Rewards available now that the member (actor.member_id) can pay in one of their
    programs, given each program's available points, in the order of `available`; at most
    `limit`, looking through at most `scan` rewards of the catalog."""
    offers: list[Offer] = []
    cursor, seen = None, 0
    while len(offers) < limit and seen < scan:
        views, cursor = list_rewards(session, actor, rates, available=True, cursor=cursor,
                                     limit=min(100, scan - seen))
        seen += len(views)
        for view in views:
            offer = _first_affordable(view.reward, rates, available)
            if offer is not None:
                offers.append(offer)
                if len(offers) == limit:
                    break
        if cursor is None:
            break
    return offers


def _first_affordable(reward: Reward, rates, available: list[tuple[Program, int]]) -> Offer | None:
    faces = sorted(reward.denominations or []) if reward.provider else [None]
    for program, points_available in available:
        if reward.program_id is not None and reward.program_id != program.id:
            continue
        for face in faces:
            try:
                points = price(reward, program, rates, face)
            except Invalid:
                break  # a currency with no unit rate: not priced
            if 0 < points <= min(points_available, MAX_POINTS):
                return Offer(reward, program.code, points, face)
    return None
