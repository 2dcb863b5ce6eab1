"""The rating engine: what a purchase earns under a program's rules, and why.

Pure: no database, no clock. The earn path gives it the facts (the purchase, the member's
tier and segments, what the member's capped counters and the promotions' budgets still
allow) and stores the Rating it returns on the purchase; the preview operation shows one.

A rule document is compiled once per version (`compile_rules`): conditions become sets and
minute ranges, so rating a purchase walks no JSON. The order of evaluation, and why, is in
docs/loyalty/rating.md:

    base per line -> multipliers and bonuses -> caps -> tier benefit -> round once
    -> promotions (whole points, from their budgets)
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from hub import money
from hub.errors import Invalid
from hub.rules.versions import RuleSet

# Generous, but far below what a BIGINT holds: a bigger figure is a bug upstream.
MAX_POINTS = 10**12
BASE = "base"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ROUNDING = {"floor": ROUND_FLOOR, "nearest": ROUND_HALF_UP, "ceil": ROUND_CEILING}
# Every figure is a product of decimal strings and integers: exact at this precision.
_EXACT = Context(prec=60)
_ZERO = Decimal(0)
_ONE = Decimal(1)

CAP = "cap"  # a per-member period counter of a rule
BUDGET = "budget"  # a promotion's budget


# --- facts in, rating out ---------------------------------------------------------------

@dataclass(frozen=True)
class PurchaseFacts:
    amount_minor: int
    occurred_at: datetime  # aware
    store_id: str | None = None
    channel: str | None = None
    items: tuple[tuple[str, int], ...] = ()  # (category, amount_minor); may cover less than the amount


@dataclass(frozen=True)
class MemberFacts:
    tier: str | None = None
    segments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Claim:
    """Points a rating takes from a counter: a rule's per-member cap for a period
    (counter CAP, key the rule id, period e.g. "2026-11", "2026-W47") or a promotion's budget
    (counter BUDGET, key the promotion id, period "")."""

    counter: str
    key: str
    period: str
    limit: int
    points: int


@dataclass(frozen=True)
class Usage:
    """What each counter still allows, by (counter, key, period): for a rule's cap, the points left
    in its period for this member; for a promotion, its budget left. Absent: untouched
    (the whole limit)."""

    remaining: Mapping[tuple[str, str, str], int] = field(default_factory=dict)

    def left(self, counter: str, key: str, period: str, limit: int) -> int:
        return max(0, min(limit, self.remaining.get((counter, key, period), limit)))


NO_USAGE = Usage()


class RatingLine(NamedTuple):  # a tuple: a rating makes several per purchase, on the earn path
    rule: str  # a rule or promotion id, "base", "tier" or "rounding"
    kind: str
    points: Decimal  # exact; the lines add up to the rating's points
    detail: str

    def as_json(self) -> dict:
        return {"rule": self.rule, "kind": self.kind, "points": _text(self.points), "detail": self.detail}


@dataclass(frozen=True)
class Rating:
    points: int
    lines: tuple[RatingLine, ...]
    version: int | None
    claims: tuple[Claim, ...] = ()

    def as_json(self) -> dict:
        return {"points": self.points, "version": self.version, "lines": [line.as_json() for line in self.lines]}


def _text(d: Decimal) -> str:
    return format(d.normalize(_EXACT), "f") if d else "0"


# --- compiled rules ---------------------------------------------------------------------

@dataclass(frozen=True)
class Conditions:
    categories: frozenset[str] | None = None
    stores: frozenset[str] | None = None
    channel: str | None = None
    days: frozenset[int] | None = None
    minutes: tuple[int, int] | None = None  # [from, to) in minutes of the local day
    min_amount: Decimal | None = None

    @classmethod
    def of(cls, when: dict | None) -> Conditions:
        when = when or {}
        minutes = None
        if "time" in when:
            minutes = tuple(int(t[:2]) * 60 + int(t[3:]) for t in (when["time"]["from"], when["time"]["to"]))
        return cls(
            categories=frozenset(when["categories"]) if "categories" in when else None,
            stores=frozenset(when["stores"]) if "stores" in when else None,
            channel=when.get("channel"),
            days=frozenset(DAYS.index(d) for d in when["days"]) if "days" in when else None,
            minutes=minutes,
            min_amount=Decimal(when["min_amount"]) if "min_amount" in when else None,
        )

    def purchase_ok(self, p: PurchaseFacts, local: datetime, major: Decimal) -> bool:
        if self.stores is not None and p.store_id not in self.stores:
            return False
        if self.channel is not None and p.channel != self.channel:
            return False
        if self.days is not None and local.weekday() not in self.days:
            return False
        if self.minutes is not None:
            start, end = self.minutes
            now = local.hour * 60 + local.minute
            if not (start <= now < end if start < end else now >= start or now < end):
                return False
        return self.min_amount is None or major >= self.min_amount

    @property
    def on_purchase(self) -> bool:
        """Has it conditions on the purchase (not only on its lines)?"""
        return any(c is not None for c in (self.stores, self.channel, self.days, self.minutes, self.min_amount))

    def line_ok(self, category: str | None) -> bool:
        return self.categories is None or category in self.categories


@dataclass(frozen=True)
class Cap:
    per_transaction: int | None
    per_member: int | None
    period: str | None

    @classmethod
    def of(cls, cap: dict | None) -> Cap | None:
        if not cap:
            return None
        return cls(cap.get("per_transaction"), cap.get("per_member"), cap.get("period"))


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str  # multiplier | bonus | cap
    priority: int
    when: Conditions
    detail: str
    factor: Decimal = _ZERO  # multiplier - 1
    group: str | None = None
    bonus: int = 0
    cap: Cap | None = None


@dataclass(frozen=True)
class Promotion:
    id: str
    name: str
    priority: int
    starts_at: datetime
    ends_at: datetime
    when: Conditions
    factor: Decimal
    bonus: int
    tiers: frozenset[str]
    segments: frozenset[str]
    budget: int | None

    def targets(self, member: MemberFacts) -> bool:
        if not self.tiers and not self.segments:
            return True
        return member.tier in self.tiers or not self.segments.isdisjoint(member.segments)


@dataclass(frozen=True)
class Compiled:
    version: int | None
    rate: Decimal | None  # the section's points_per_unit, overriding the program's
    rounding: str
    zone: ZoneInfo
    awards: tuple[Rule, ...]  # multipliers and bonuses with conditions on the purchase
    unconditional: tuple[Rule, ...]  # those without: they apply to every purchase
    # The multipliers a line of a category may meet, in that order: those naming the
    # category and those naming none (`any_line`, also for categories no rule names).
    multipliers: Mapping[str | None, tuple[Rule, ...]]
    any_line: tuple[Rule, ...]
    caps: tuple[Rule, ...]  # cap rules, by ascending priority then id
    tiers: Mapping[str, Decimal]  # tier code -> earn multiplier - 1
    promotions: tuple[Promotion, ...]
    segment_promotions: tuple[Promotion, ...]  # those targeting segments
    stores: frozenset[str]  # the stores and channels the awards name
    channels: frozenset[str]
    # (store, channel) -> the awards a purchase there may meet, in `awards` order; a store or
    # channel no award names is None. Filled as purchases come (bounded by what rules name).
    _by_place: dict = field(default_factory=dict, compare=False, repr=False)

    def awards_at(self, store: str | None, channel: str | None) -> tuple[Rule, ...]:
        """The awards whose store and channel conditions a purchase at `store` by `channel`
        meets (the rest of their conditions still to check): fewer to test per purchase."""
        place = (store if store in self.stores else None, channel if channel in self.channels else None)
        found = self._by_place.get(place)
        if found is None:
            found = self._by_place[place] = tuple(
                r for r in self.awards
                if (r.when.stores is None or place[0] in r.when.stores)
                and (r.when.channel is None or r.when.channel == place[1]))
        return found

    def targets_segments(self, at: datetime) -> bool:
        """Does a promotion in force at `at` target segments (so rating needs the member's)?"""
        return any(p.starts_at <= at < p.ends_at for p in self.segment_promotions)


def _describe(rule: dict) -> str:
    if "description" in rule:
        return rule["description"]
    if rule["kind"] == "multiplier":
        return f"x{rule['multiplier']} ({rule['id']})"
    if rule["kind"] == "bonus":
        return f"+{rule['bonus']} bonus ({rule['id']})"
    return f"cap ({rule['id']})"


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def _compile(document: dict, version: int | None) -> Compiled:
    earning = document.get("earning") or {}
    rules = []
    for r in earning.get("rules", ()):
        rules.append(Rule(
            id=r["id"], kind=r["kind"], priority=r.get("priority", 0), when=Conditions.of(r.get("when")),
            detail=_describe(r), factor=Decimal(r.get("multiplier", "1")) - _ONE, group=r.get("group"),
            bonus=r.get("bonus", 0), cap=Cap.of(r.get("cap")),
        ))
    promotions = tuple(sorted((
        Promotion(
            id=p["id"], name=p["name"], priority=p.get("priority", 0), starts_at=_moment(p["starts_at"]),
            ends_at=_moment(p["ends_at"]), when=Conditions.of(p.get("when")),
            factor=Decimal(p.get("multiplier", "1")) - _ONE, bonus=p.get("bonus", 0),
            tiers=frozenset((p.get("target") or {}).get("tiers", ())),
            segments=frozenset((p.get("target") or {}).get("segments", ())),
            budget=p.get("budget_points"),
        ) for p in document.get("promotions") or ()
    ), key=lambda p: (-p.priority, p.id)))
    tiers = {}
    for level in ((document.get("tiers") or {}).get("levels") or ()):
        if isinstance(level, dict) and "code" in level and level.get("earn_multiplier") is not None:
            tiers[level["code"]] = Decimal(str(level["earn_multiplier"])) - _ONE
    by_priority = sorted(rules, key=lambda r: (r.priority, r.id))
    awards = tuple(r for r in reversed(by_priority) if r.kind != "cap")
    multipliers = [r for r in awards if r.kind == "multiplier"]
    categories = {c for r in multipliers for c in (r.when.categories or ())}
    return Compiled(
        version=version,
        rate=Decimal(earning["points_per_unit"]) if "points_per_unit" in earning else None,
        rounding=earning.get("rounding", "floor"),
        zone=ZoneInfo(earning.get("timezone", "UTC")),
        awards=tuple(r for r in awards if r.when.on_purchase),
        unconditional=tuple(r for r in awards if not r.when.on_purchase),
        multipliers={c: tuple(r for r in multipliers if r.when.line_ok(c)) for c in categories},
        any_line=tuple(r for r in multipliers if r.when.categories is None),
        caps=tuple(r for r in by_priority if r.kind == "cap"),
        tiers=tiers,
        promotions=promotions,
        segment_promotions=tuple(p for p in promotions if p.segments),
        stores=frozenset(store for r in awards for store in (r.when.stores or ())),
        channels=frozenset(r.when.channel for r in awards if r.when.channel is not None),
    )


_lock = threading.Lock()
# (program id, version) -> (the document compiled, the result): a version number reused
# after a rolled-back publish comes with another document object, and is compiled anew.
_compiled: dict[tuple[uuid.UUID, int], tuple[dict, Compiled]] = {}


def compile_rules(rules: RuleSet | None) -> Compiled | None:
    if rules is None:
        return None
    key = (rules.program_id, rules.version)
    hit = _compiled.get(key)
    if hit is not None and hit[0] is rules.document:
        return hit[1]
    compiled = _compile(rules.document, rules.version)
    with _lock:
        _compiled[key] = (rules.document, compiled)
    return compiled


# --- rating -----------------------------------------------------------------------------

def period_of(period: str, local: datetime) -> str:
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


def _ceil(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_CEILING))


def _base_exact(base_rate: Decimal, currency: str, amount_minor: int) -> tuple[Decimal, Decimal, int]:
    """(amount in major units, its exact base points, those rounded down)."""
    major = _EXACT.scaleb(Decimal(amount_minor), -money.exponent(currency))
    exact = _EXACT.multiply(major, base_rate)
    points = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    _check(points)
    return major, exact, points


def base_points(base_rate: Decimal, currency: str, amount_minor: int) -> int:
    """The base rule alone: floor(amount in major units x points per unit)."""
    return _base_exact(base_rate, currency, amount_minor)[2]


def _base_only(base_rate: Decimal, currency: str, purchase: PurchaseFacts) -> Rating:
    major, exact, points = _base_exact(base_rate, currency, purchase.amount_minor)
    line = RatingLine(BASE, BASE, exact, f"{_text(major)} {currency} x {_text(base_rate)} points per unit")
    lines = (line,) if points == exact else (line, RatingLine("rounding", "rounding", points - exact, "rounded down"))
    return Rating(points, lines, None)


def _check(points: int) -> None:
    if points > MAX_POINTS:
        raise Invalid(f"a purchase may earn at most {MAX_POINTS} points", slug="invalid-amount")


def rate(base_rate: Decimal, currency: str, rules: RuleSet | Compiled | None, purchase: PurchaseFacts,
         member: MemberFacts, usage: Usage = NO_USAGE) -> Rating:
    """What `purchase` earns `member` under `rules` (None: the base rate alone), given what
    the counters still allow (`usage`). Its claims say what it takes from them."""
    compiled = rules if isinstance(rules, Compiled) or rules is None else compile_rules(rules)
    if compiled is None:
        return _base_only(base_rate, currency, purchase)
    rate_ = compiled.rate if compiled.rate is not None else base_rate
    exponent = money.exponent(currency)
    local = purchase.occurred_at.astimezone(compiled.zone)
    major_total = _EXACT.scaleb(Decimal(purchase.amount_minor), -exponent)

    # Lines: the items, then what they leave uncovered as a line of no category.
    lines_in: list[tuple[str | None, Decimal]] = []
    covered = 0
    for category, amount_minor in purchase.items:
        lines_in.append((category, _EXACT.multiply(_EXACT.scaleb(Decimal(amount_minor), -exponent), rate_)))
        covered += amount_minor
    if purchase.amount_minor > covered:
        rest = _EXACT.scaleb(Decimal(purchase.amount_minor - covered), -exponent)
        lines_in.append((None, _EXACT.multiply(rest, rate_)))
    base = sum((b for _, b in lines_in), _ZERO)
    out = [RatingLine(BASE, BASE, base, f"{_text(major_total)} {currency} x {_text(rate_)} points per unit")]

    # Multipliers and bonuses. Per line, an exclusive group's best rule applies; rules
    # outside groups stack: each adds (multiplier - 1) x the line's base.
    applies = [*compiled.unconditional,
               *(r for r in compiled.awards_at(purchase.store_id, purchase.channel)
                 if r.when.purchase_ok(purchase, local, major_total))]
    applying = {r.id for r in applies}
    award: dict[str, Decimal] = {}
    for category, line_base in lines_in:
        # the line's candidates, by descending priority: a group's first match is its best...
        candidates = [r for r in compiled.multipliers.get(category, compiled.any_line) if r.id in applying]
        taken: set[str] = set()
        for r in candidates:
            if r.group is not None:
                if r.group in taken:
                    continue
                taken.add(r.group)  # ...and of equal priority, the highest multiplier wins
                r = max((o for o in candidates if o.group == r.group and o.priority == r.priority),
                        key=lambda o: (o.factor, o.id))
            award[r.id] = award.get(r.id, _ZERO) + _EXACT.multiply(r.factor, line_base)
    for r in applies:
        if r.kind == "bonus" and (r.when.categories is None or any(r.when.line_ok(c) for c, _ in lines_in)):
            award[r.id] = Decimal(r.bonus)

    claims: list[Claim] = []
    by_id = {r.id: r for r in applies}
    for rule_id, points in award.items():
        r = by_id[rule_id]
        line = RatingLine(r.id, r.kind, points, r.detail)
        if r.cap is not None and points > 0:
            capped = points
            if r.cap.per_transaction is not None:
                capped = min(capped, Decimal(r.cap.per_transaction))
            if r.cap.per_member is not None:
                period = period_of(r.cap.period, local)
                capped = min(capped, Decimal(usage.left(CAP, r.id, period, r.cap.per_member)))
                if capped > 0:
                    claims.append(Claim(CAP, r.id, period, r.cap.per_member, _ceil(capped)))
            if capped < points:
                line = RatingLine(r.id, r.kind, capped, f"{r.detail}, capped at {_text(capped)}")
        out.append(line)
    out[1:] = sorted(out[1:], key=lambda line: (-by_id[line.rule].priority, line.rule))
    total = sum((line.points for line in out), _ZERO)

    # Cap rules: each bounds the section's total for purchases it matches (min commutes,
    # so their order changes only the order of the lines).
    for r in compiled.caps:
        if not r.when.purchase_ok(purchase, local, major_total):
            continue
        bound = None
        if r.cap.per_transaction is not None:
            bound = Decimal(r.cap.per_transaction)
        period = None
        if r.cap.per_member is not None:
            period = period_of(r.cap.period, local)
            left = Decimal(usage.left(CAP, r.id, period, r.cap.per_member))
            bound = left if bound is None else min(bound, left)
        if total > bound:
            out.append(RatingLine(r.id, "cap", bound - total, f"{r.detail}: at most {_text(bound)}"))
            total = bound
        if period is not None and total > 0:
            claims.append(Claim(CAP, r.id, period, r.cap.per_member, _ceil(total)))

    tier_factor = compiled.tiers.get(member.tier) if member.tier is not None else None
    if tier_factor and total > 0:
        extra = _EXACT.multiply(tier_factor, total)
        out.append(RatingLine("tier", "tier", extra, f"tier {member.tier}: x{_text(tier_factor + _ONE)}"))
        total += extra

    rounded = max(0, int(total.to_integral_value(rounding=_ROUNDING[compiled.rounding])))
    if rounded != total:
        out.append(RatingLine("rounding", "rounding", rounded - total, f"rounded ({compiled.rounding})"))
    points = rounded

    # Promotions: whole points each (they are paid from a budget of whole points).
    for p in compiled.promotions:
        if not (p.starts_at <= purchase.occurred_at < p.ends_at) or not p.targets(member):
            continue
        if not p.when.purchase_ok(purchase, local, major_total):
            continue
        if p.bonus:
            if p.when.categories is not None and not any(p.when.line_ok(c) for c, _ in lines_in):
                continue
            extra = Decimal(p.bonus)
        else:
            extra = sum((_EXACT.multiply(p.factor, b) for c, b in lines_in if p.when.line_ok(c)), _ZERO)
        whole = max(0, int(extra.to_integral_value(rounding=_ROUNDING[compiled.rounding])))
        detail = p.name
        if p.budget is not None:
            left = usage.left(BUDGET, p.id, "", p.budget)
            if whole > left:
                whole, detail = left, f"{p.name} (budget nearly spent: {left} left)"
            if whole:
                claims.append(Claim(BUDGET, p.id, "", p.budget, whole))
        if whole:
            out.append(RatingLine(p.id, "promotion", Decimal(whole), detail))
            points += whole
    _check(points)
    return Rating(points, tuple(out), compiled.version, tuple(claims))
