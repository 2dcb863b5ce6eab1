"""Tiers: a member's status level in a program (the `tiers` section of its rules).

Qualification is what the member's purchases earned (points, net of returns) or spent
(amount, net of returns) within a rolling window of calendar months. A purchase that
qualifies the member for a higher level moves them up at once (purchases_posted, a handler
of hub.rules.effects). Nothing moves a member down except a review, at their review date
(review_due, a daily job): a return never changes a tier on its own.

Qualification is kept cheap on the earn path: per membership and calendar month, one
tier_buckets row holds the month's qualifying points and spend, kept by one atomic upsert
per purchase (programs with tiers only). A window is at most window_months rows.

Concurrent purchases of one member are serialised by the ledger's lock on the member's
account (taken before this handler runs), so each sees the other's bucket once committed.
Tier changes are compare-and-set on memberships.tier, so a review, a reward and a purchase
racing on one member never record a change from a tier the member no longer had.
"""
from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub import money
from hub.actor import Actor
from hub.db import utcnow
from hub.errors import Conflict, Forbidden, Invalid, NotFound
from hub.notify import webhooks
from hub.programs.models import Membership, Program
from hub.rules import months, versions
from hub.rules.document import Finding
from hub.rules.standing_models import TierBucket, TierChange

QUALIFIED = "qualified"
REVIEW = "review"
REWARD = "reward"
EVENT = "tier.changed"
# A calendar anchor counts from the 1st of its month in a year long past.
_CALENDAR_EPOCH_YEAR = 2000

_buckets = TierBucket.__table__
_memberships = Membership.__table__
_programs = Program.__table__


# --- the section ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    code: str
    name: str
    threshold: int  # points, or minor units of the earn currency (basis spend)
    rank: int
    exclusive: bool


@dataclass(frozen=True)
class Tiers:
    basis: str  # points_earned | spend
    currency: str  # the program's earn currency (what spend thresholds are in)
    window_months: int
    review: dict
    levels: tuple[Level, ...]

    def level(self, code: str | None) -> Level | None:
        return next((lv for lv in self.levels if lv.code == code), None)

    def rank(self, code: str | None) -> int:
        """-1 for no tier (or one the rules no longer have)."""
        found = self.level(code)
        return found.rank if found else -1

    def qualifying_level(self, total: int) -> Level | None:
        reached = [lv for lv in self.levels if lv.threshold <= total]
        return reached[-1] if reached else None

    def next_level(self, total: int) -> Level | None:
        return next((lv for lv in self.levels if lv.threshold > total), None)

    def window(self, at: datetime) -> tuple[int, int]:
        """The months (first, last) that count at `at`: window_months up to its month."""
        last = months.index(at)
        return last - self.window_months + 1, last

    def next_review(self, joined: datetime, tier_since: datetime, after: datetime) -> datetime:
        every = self.review["every_months"]
        anchor = {
            "calendar": datetime(_CALENDAR_EPOCH_YEAR, self.review.get("month", 1), 1, tzinfo=timezone.utc),
            "membership": joined,
            "tier": tier_since,
        }[self.review["anchor"]]
        return months.next_on_schedule(anchor, every, after)

    def amount(self, value: int) -> str:
        """A qualifying figure as the API shows it: points, or an amount in the currency."""
        return str(value) if self.basis == "points_earned" else money.to_major(value, self.currency)

    def unit(self) -> str:
        return "points" if self.basis == "points_earned" else self.currency


def _threshold(value, basis: str, currency: str) -> int:
    if basis == "points_earned":
        return int(value)
    # Rounded up: a threshold finer than the currency's minor unit is reached by the next one.
    return math.ceil(Decimal(str(value)).scaleb(money.exponent(currency)))


def parse(rules: versions.RuleSet | None, currency: str) -> Tiers | None:
    """The program's tiers under `rules`, or None when it has none."""
    section = rules.section("tiers") if rules is not None else None
    if not section:
        return None
    basis = section["basis"]
    levels = tuple(
        Level(lv["code"], lv["name"], _threshold(lv["threshold"], basis, currency), rank, lv.get("exclusive", False))
        for rank, lv in enumerate(section["levels"])
    )
    return Tiers(basis, currency, section["window_months"], section["review"], levels)


def lint(document: dict) -> list[Finding]:
    """What the schema cannot say about the tiers section."""
    section = document.get("tiers")
    if not section:
        return []
    found: list[Finding] = []
    seen: set[str] = set()
    previous: Decimal | None = None
    for i, lv in enumerate(section["levels"]):
        path = f"/tiers/levels/{i}"
        if lv["code"] in seen:
            found.append(Finding(f"{path}/code", f"level {lv['code']} is defined twice"))
        seen.add(lv["code"])
        threshold = lv["threshold"]
        if section["basis"] == "points_earned" and not isinstance(threshold, int):
            found.append(Finding(f"{path}/threshold", "with basis points_earned, a threshold is a number of points"))
            continue
        if section["basis"] == "spend" and not isinstance(threshold, str):
            found.append(Finding(f"{path}/threshold", "with basis spend, a threshold is an amount (a decimal string)"))
            continue
        value = Decimal(str(threshold))
        if previous is not None and value <= previous:
            found.append(Finding(f"{path}/threshold", "thresholds must increase strictly from one level to the next"))
        previous = value
        if "earn_multiplier" in lv and Decimal(lv["earn_multiplier"]) < 1:
            found.append(Finding(f"{path}/earn_multiplier", "a tier's earn multiplier is at least 1"))
    review = section["review"]
    if review["anchor"] == "calendar" and 12 % review["every_months"]:
        found.append(Finding("/tiers/review/every_months", "calendar reviews need every_months dividing 12 (1, 2, 3, 4, 6, 12)"))
    if "month" in review and review["anchor"] != "calendar":
        found.append(Finding("/tiers/review/month", "month applies to calendar reviews only"))
    return found


# --- a membership's standing ------------------------------------------------------------

@dataclass(frozen=True)
class Standing:
    membership_id: uuid.UUID
    member_id: uuid.UUID
    tier: str | None
    tier_since: datetime | None
    tier_review_at: datetime | None
    joined: datetime
    points: int  # qualifying totals within the window asked for
    spend_minor: int

    def total(self, tiers: Tiers) -> int:
        return self.points if tiers.basis == "points_earned" else self.spend_minor


def _standings(session: Session, where, first: int, last: int) -> list[Standing]:
    m, b = _memberships, _buckets
    rows = session.execute(
        select(m.c.id, m.c.member_id, m.c.tier, m.c.tier_since, m.c.tier_review_at, m.c.created_at,
               func.coalesce(func.sum(b.c.points), 0), func.coalesce(func.sum(b.c.spend_minor), 0))
        .select_from(m.outerjoin(b, and_(b.c.membership_id == m.c.id, b.c.month.between(first, last))))
        .where(where)
        .group_by(m.c.id, m.c.member_id, m.c.tier, m.c.tier_since, m.c.tier_review_at, m.c.created_at)
    ).all()
    return [Standing(*row[:6], int(row[6]), int(row[7])) for row in rows]


@dataclass(frozen=True)
class ProgramRef:
    id: uuid.UUID
    code: str
    partner_id: uuid.UUID
    currency: str


def _tier_is(tier: str | None):
    return _memberships.c.tier.is_(None) if tier is None else _memberships.c.tier == tier


def set_tier(session: Session, program: ProgramRef, tiers: Tiers | None, standing: Standing, to: Level | None,
             reason: str, at: datetime, qualifying: int | None) -> bool:
    """Move the member from standing.tier to `to`: the membership (compare-and-set), the
    history, the partner's tier.changed event. False if the tier changed meanwhile."""
    m = _memberships
    review_at = tiers.next_review(standing.joined, at, at) if to is not None and tiers is not None else None
    changed = session.execute(
        update(m).where(m.c.id == standing.membership_id, _tier_is(standing.tier))
        .values(tier=to.code if to else None, tier_since=at if to else None, tier_review_at=review_at)
    ).rowcount
    if not changed:
        return False
    session.execute(TierChange.__table__.insert().values(
        membership_id=standing.membership_id, from_tier=standing.tier, to_tier=to.code if to else None,
        reason=reason, qualifying=qualifying, at=at))
    webhooks.emit(session, program.partner_id, EVENT, {
        "member_id": str(standing.member_id), "program": program.code, "from": standing.tier,
        "to": to.code if to else None, "reason": reason, "at": at.isoformat(),
    })
    return True


# --- the earn path ------------------------------------------------------------------------

def _upsert():
    def build(dialect_insert):
        stmt = dialect_insert(_buckets)
        return stmt.on_conflict_do_update(
            index_elements=["membership_id", "month"],
            set_={"points": _buckets.c.points + stmt.excluded.points,
                  "spend_minor": _buckets.c.spend_minor + stmt.excluded.spend_minor},
        )
    return {"postgresql": build(postgresql.insert), "sqlite": build(sqlite.insert)}


_UPSERT = _upsert()


def purchases_posted(session: Session, actor: Actor, purchases: Sequence) -> None:
    """Count each purchase of a program with tiers in its month's bucket, then move its
    member up if they now qualify for a higher level. Nothing (no query) for other programs."""
    tiered = [p for p in purchases if p.rules is not None and p.rules.section("tiers")]
    if not tiered:
        return
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for p in tiered:
        bucket = sums[(p.membership_id, months.index(p.occurred_at))]
        bucket[0] += p.points
        bucket[1] += p.amount_minor
    conn = session.connection()
    # In key order: two batches touching the same members lock their buckets in one order.
    conn.execute(_UPSERT[conn.dialect.name], [
        {"membership_id": k[0], "month": k[1], "points": v[0], "spend_minor": v[1]} for k, v in sorted(sums.items())
    ])
    now = utcnow()
    by_program: dict[uuid.UUID, dict] = defaultdict(dict)
    for p in tiered:
        by_program[p.program_id][p.membership_id] = p
    for program_id, members in by_program.items():
        sample = next(iter(members.values()))
        # The levels in force now decide, as at a review: a batch may hold purchases rated
        # under several versions, and a member's standing is one, whatever they bought under.
        tiers = parse(versions.in_force(session, program_id, now), sample.currency)
        if tiers is None:  # the program has dropped its tiers since these purchases
            continue
        program = ProgramRef(program_id, sample.program_code, actor.partner_id, sample.currency)
        first, last = tiers.window(now)
        for standing in _standings(session, _memberships.c.id.in_(list(members)), first, last):
            _move_up(session, program, tiers, standing, now)


def _move_up(session: Session, program: ProgramRef, tiers: Tiers, standing: Standing, now: datetime) -> None:
    total = standing.total(tiers)
    target = tiers.qualifying_level(total)
    if target is not None and target.rank > tiers.rank(standing.tier):
        set_tier(session, program, tiers, standing, target, QUALIFIED, now, total)


def purchase_returned(session: Session, actor: Actor, returned) -> None:
    """A return takes its points (those it reversed, or would have) and amount out of its
    purchase's month (a handler of hub.rules.effects.purchase_returned). It never moves a
    tier: a downgrade waits for the review."""
    if returned.rules is None or not returned.rules.section("tiers"):
        return
    b = _buckets
    session.execute(
        update(b).where(b.c.membership_id == returned.membership_id, b.c.month == months.index(returned.occurred_at))
        .values(points=b.c.points - returned.points_reversed, spend_minor=b.c.spend_minor - returned.amount_minor)
    )


# --- reviews ------------------------------------------------------------------------------

def review_due(db, now: datetime | None = None, batch: int = 200) -> dict:
    """Review every membership whose review date has come: it moves to the level its window
    up to the review date qualifies it for (down, or up if the rules changed), and gets its
    next review date. Each batch is one transaction; running again at the same `now` finds
    nothing due."""
    now = now or utcnow()
    counts = {"reviewed": 0, "changed": 0}
    while True:
        done, changed = db.write(lambda s: _review_batch(s, now, batch))
        counts["reviewed"] += done
        counts["changed"] += changed
        if done < batch:
            return counts


def _review_batch(session: Session, now: datetime, batch: int) -> tuple[int, int]:
    m, p = _memberships, _programs
    due = session.execute(
        select(m.c.id, m.c.tier_review_at, p.c.id, p.c.code, p.c.partner_id, p.c.earn_currency)
        .join(p, p.c.id == m.c.program_id)
        .where(m.c.tier_review_at <= now)
        .order_by(m.c.tier_review_at, m.c.id)
        .limit(batch)
    ).all()
    changed = 0
    for membership_id, review_at, *program in due:
        program = ProgramRef(*program)
        tiers = parse(versions.in_force(session, program.id, now), program.currency)
        window = tiers.window(months.before(review_at)) if tiers else (0, -1)
        (standing,) = _standings(session, m.c.id == membership_id, *window)
        if standing.tier_review_at != review_at:
            continue  # moved since listed (an upgrade, a reward): reviewed at its new date
        if tiers is None:  # the program dropped its tiers
            changed += set_tier(session, program, None, standing, None, REVIEW, review_at, None)
            continue
        total = standing.total(tiers)
        target = tiers.qualifying_level(total)
        if (target.code if target else None) != standing.tier:
            changed += set_tier(session, program, tiers, standing, target, REVIEW, review_at, total)
        else:
            next_at = tiers.next_review(standing.joined, standing.tier_since or review_at, now)
            # Compare-and-set like set_tier: an upgrade or reward since the read set its own
            # tier and review date, which this must not overwrite.
            session.execute(update(m).where(m.c.id == membership_id, _tier_is(standing.tier),
                                            m.c.tier_review_at == review_at).values(tier_review_at=next_at))
    return len(due), changed


# --- rewards ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TierGrant:
    """A tier upgrade bought as a reward, checked before its points are spent."""

    program: ProgramRef
    tiers: Tiers
    standing: Standing
    level: Level


def _member_in(session: Session, program_id: uuid.UUID, member_id: uuid.UUID) -> tuple[ProgramRef, Tiers | None, Standing]:
    p = _programs
    program = ProgramRef(*session.execute(
        select(p.c.id, p.c.code, p.c.partner_id, p.c.earn_currency).where(p.c.id == program_id)).one())
    now = utcnow()
    tiers = parse(versions.in_force(session, program_id, now), program.currency)
    window = tiers.window(now) if tiers else (0, -1)
    m = _memberships
    found = _standings(session, and_(m.c.program_id == program_id, m.c.member_id == member_id), *window)
    if not found:
        raise Invalid(f"the member has no membership in {program.code}", slug="not-a-member")
    return program, tiers, found[0]


def check_reward(session: Session, reward, member_id: uuid.UUID) -> TierGrant | None:
    """Refuse an exclusive reward to a member below its min_tier (403 tier-required), and a
    tier upgrade the member already has or exceeds (409 tier-already-held). A tier upgrade
    in a program with tiers comes back as the grant to apply once paid. No query for other
    rewards."""
    if reward.min_tier is None and reward.kind != "tier_upgrade":
        return None
    program, tiers, standing = _member_in(session, reward.program_id, member_id)
    if reward.min_tier is not None:
        needed = tiers.level(reward.min_tier) if tiers else None
        if needed is None or tiers.rank(standing.tier) < needed.rank:
            name = needed.name if needed else reward.min_tier
            raise Forbidden(f"{reward.code} is for {name} members and above", slug="tier-required")
    if reward.kind != "tier_upgrade" or tiers is None:
        return None  # without a tiers section, the partner keeps tiers itself: a voucher naming it
    level = tiers.level(reward.tier)
    if level is None:
        raise Conflict(f"{program.code} has no tier {reward.tier} now", slug="unknown-tier")
    if tiers.rank(standing.tier) >= level.rank:
        raise Conflict(f"the member's tier is already {standing.tier}", slug="tier-already-held")
    return TierGrant(program, tiers, standing, level)


def apply_reward(session: Session, grant: TierGrant) -> None:
    """The member's tier becomes the reward's until their next review, where the usual rule
    applies. A tier changed since the check (a concurrent upgrade) is a conflict: the
    transaction, its payment included, rolls back."""
    if not set_tier(session, grant.program, grant.tiers, grant.standing, grant.level, REWARD, utcnow(), None):
        raise Conflict("the member's tier changed meanwhile; try again", slug="tier-changed")


def check_min_tier(session: Session, program_id: uuid.UUID | None, min_tier: str | None, kind: str,
                   tier: str | None) -> None:
    """A reward's tier fields, when it is created: min_tier names an exclusive level of its
    program's tiers; a tier upgrade names a level, if the program has tiers (one without
    keeps tiers in the partner's own system: its upgrade is a voucher naming the tier)."""
    if min_tier is None and kind != "tier_upgrade":
        return
    if program_id is None:
        if min_tier is not None:
            raise Invalid("only a program's reward can require one of its tiers", slug="invalid-reward")
        return
    currency = session.scalar(select(_programs.c.earn_currency).where(_programs.c.id == program_id))
    tiers = parse(versions.in_force(session, program_id, utcnow()), currency)
    if min_tier is not None:
        level = tiers.level(min_tier) if tiers else None
        if level is None or not level.exclusive:
            raise Invalid(f"min_tier {min_tier} is not an exclusive tier of the program", slug="invalid-reward")
    if kind == "tier_upgrade" and tiers is not None and tiers.level(tier) is None:
        raise Invalid(f"tier {tier} is not a tier of the program", slug="invalid-reward")


# --- what a member sees -------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    program: str
    tiers: Tiers
    standing: Standing
    window_from: datetime
    window_to: datetime  # exclusive
    next_level: Level | None
    missing: int | None


def progress(session: Session, program: ProgramRef, standing_of, now: datetime) -> Progress | None:
    """A member's tier and the way to the next one, or None if the program has no tiers.
    `standing_of(first, last)`: the membership's standing in that window of months. The
    next level is the first above both the member's tier and what they qualify for."""
    tiers = parse(versions.in_force(session, program.id, now), program.currency)
    if tiers is None:
        return None
    first, last = tiers.window(now)
    standing = standing_of(first, last)
    total = standing.total(tiers)
    held = tiers.level(standing.tier)
    nxt = tiers.next_level(max(total, held.threshold) if held else total)
    return Progress(program.code, tiers, standing, months.start(first), months.start(last + 1), nxt,
                    nxt.threshold - total if nxt else None)


def member_progress(session: Session, actor: Actor, member_id: uuid.UUID, program_code: str) -> Progress:
    """A partner's view of its member's tier in one of its programs."""
    p, m = _programs, _memberships
    row = session.execute(
        select(p.c.id, p.c.code, p.c.partner_id, p.c.earn_currency)
        .join(m, and_(m.c.program_id == p.c.id, m.c.member_id == member_id))
        .where(p.c.code == program_code, p.c.partner_id == actor.partner_id)
    ).first()
    if row is None:
        raise NotFound(f"no member of {program_code} with that id", slug="member-not-found")
    found = progress(session, ProgramRef(*row), _standing_fn(session, row.id, member_id), utcnow())
    if found is None:
        raise NotFound(f"{program_code} has no tiers", slug="no-tiers")
    return found


def own_progress(session: Session, member_id: uuid.UUID) -> list[Progress]:
    """The member's tier in each of their programs that has tiers."""
    p, m = _programs, _memberships
    rows = session.execute(
        select(p.c.id, p.c.code, p.c.partner_id, p.c.earn_currency)
        .join(m, m.c.program_id == p.c.id).where(m.c.member_id == member_id).order_by(p.c.code)
    ).all()
    now = utcnow()
    found = (progress(session, ProgramRef(*row), _standing_fn(session, row.id, member_id), now) for row in rows)
    return [f for f in found if f is not None]


def _standing_fn(session: Session, program_id: uuid.UUID, member_id: uuid.UUID):
    m = _memberships
    where = and_(m.c.program_id == program_id, m.c.member_id == member_id)
    return lambda first, last: _standings(session, where, first, last)[0]
