"""Personalised offers (issue 6, point 9): for one member, what is worth their attention now,
ranked by relevance.

Candidates:

- rewards priced in the points of a program the member holds, affordable now or soon (the
  member holds at least SOON of the price); a tier upgrade to the tier they have is left out;
- promotions in force in those programs (the `promotions` section of the rules in force),
  with budget left, whose target takes in the member: no target, their tier, or one of the
  partner's segments they are in (segment_members, as at the last refresh);
- coalition challenges open now that the member has not completed (a partner's view: every
  open one, completed or not).

Relevance is an integer score (0..1000, the scoring functions below; docs/loyalty/
challenges-segments-offers.md has the table). Ties are broken by the soonest end, then kind,
then code, so the order is the same on every call.

A partner (`partner_id` given) sees only offers of its own programs, and coalition challenges
without the member's progress or completion: both count purchases at other partners.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import ledger
from hub.db import utcnow
from hub.programs.models import Membership, Program
from hub.rewards.catalog import available_now
from hub.rewards.models import IN_HOUSE_KINDS, Reward
from hub.rules import challenges, rating, versions
from hub.rules.counters import BudgetStripe
from hub.rules.segments import segments_of

SOON = Decimal("0.5")  # a reward is "soon" affordable from half its price held
ENDING = timedelta(days=3)  # an offer ending within this is more urgent
KIND_ORDER = {"promotion": 0, "challenge": 1, "reward": 2}


@dataclass(frozen=True)
class Offer:
    kind: str  # reward | promotion | challenge
    code: str
    name: str
    program: str | None  # the program it is in (a challenge: the one paying its bonus)
    score: int
    reason: str  # why it is offered: a stable word (see REASONS in the doc)
    ends_at: datetime | None = None
    points: int | None = None  # a reward's price; a challenge's bonus
    progress: int | None = None  # toward `target` (points held for a reward, challenge progress)
    target: int | None = None

    def sort_key(self):
        ends = self.ends_at.timestamp() if self.ends_at else float("inf")
        return (-self.score, ends, KIND_ORDER[self.kind], self.code)


# --- relevance ------------------------------------------------------------------------------

def _urgency(ends_at: datetime | None, now: datetime) -> int:
    return 100 if ends_at is not None and ends_at - now <= ENDING else 0


def reward_score(price: int, available: int) -> tuple[int, str] | None:
    """Affordable now: 800. Soon (at least SOON of the price held): 400..799 by how close.
    Further away: not offered."""
    if price <= available:
        return 800, "affordable"
    if available >= price * SOON:
        return 400 + int(Decimal(400) * (available - price * SOON) / (price * (1 - SOON))), "almost_affordable"
    return None


def promotion_score(reason: str, ends_at: datetime | None, now: datetime) -> int:
    """Aimed at the member's segment 700, tier 650, everyone 500; +100 when ending soon."""
    return {"segment": 700, "tier": 650, "everyone": 500}[reason] + _urgency(ends_at, now)


def challenge_score(progress: int | None, target: int, ends_at: datetime, now: datetime) -> int:
    """300, plus up to 500 by how close the member is to the goal (unknown: nothing), plus 100
    when ending soon."""
    closeness = 0 if progress is None else 500 * min(progress, target) // target
    return 300 + closeness + _urgency(ends_at, now)


def rank(offers: list[Offer]) -> list[Offer]:
    return sorted(offers, key=Offer.sort_key)


# --- promotions (as the rating engine compiles them) -----------------------------------------

def promotion_reason(promotion: rating.Promotion, tier: str | None, segments: set[str]) -> str | None:
    """Why the promotion is for this member (segment, tier or everyone), or None if it is not:
    whom it takes in is the rating engine's rule (Promotion.targets), the reason the narrowest
    that holds."""
    if not promotion.targets(rating.MemberFacts(tier, frozenset(segments))):
        return None
    if not promotion.tiers and not promotion.segments:
        return "everyone"
    return "segment" if not promotion.segments.isdisjoint(segments) else "tier"


def promotions_in_force(rules: versions.RuleSet | None, now: datetime) -> list[rating.Promotion]:
    """The rules' promotions running at `now` (starts_at inclusive, ends_at exclusive)."""
    compiled = rating.compile_rules(rules)
    return [p for p in compiled.promotions if p.starts_at <= now < p.ends_at] if compiled else []


# --- gathering -------------------------------------------------------------------------------

def for_member(session: Session, member_id: uuid.UUID, *, partner_id: uuid.UUID | None = None,
               now: datetime | None = None, limit: int = 50) -> list[Offer]:
    """The member's offers, best first (a partner's view with `partner_id`)."""
    now = now or utcnow()
    q = (select(Membership, Program).join(Program, Program.id == Membership.program_id)
         .where(Membership.member_id == member_id, Program.hosted_by.is_(None)))
    if partner_id is not None:
        q = q.where(Program.partner_id == partner_id)
    held = session.execute(q).all()
    offers = _rewards(session, held, now) + _targeted(session, member_id, held, now)
    offers += _challenges(session, member_id, partner_id is not None, now)
    return rank(offers)[:limit]


def _rewards(session: Session, held, now: datetime) -> list[Offer]:
    by_program = {program.id: (membership, program) for membership, program in held}
    if not by_program:
        return []
    rewards = session.scalars(select(Reward).where(
        Reward.program_id.in_(list(by_program)), Reward.price_points.is_not(None),
        Reward.kind.in_(IN_HOUSE_KINDS), Reward.active.is_(True)))
    available = {pid: ledger.balance(session, m.account_id).available for pid, (m, _) in by_program.items()}
    offers = []
    for reward in rewards:
        membership, program = by_program[reward.program_id]
        if not available_now(reward, now) or (reward.kind == "tier_upgrade" and reward.tier == membership.tier):
            continue
        scored = reward_score(reward.price_points, available[program.id])
        if scored is not None:
            offers.append(Offer("reward", reward.code, reward.name, program.code, scored[0], scored[1],
                                reward.available_until, reward.price_points,
                                min(available[program.id], reward.price_points), reward.price_points))
    return offers


def _spent(session: Session, program_id: uuid.UUID, promotions: list[rating.Promotion]) -> set[str]:
    """Ids of the promotions whose budget is used up (counters' stripes: none yet, none used)."""
    budgeted = [p.id for p in promotions if p.budget is not None]
    if not budgeted:
        return set()
    rows = session.execute(
        select(BudgetStripe.promotion_id, func.sum(BudgetStripe.remaining))
        .where(BudgetStripe.program_id == program_id, BudgetStripe.promotion_id.in_(budgeted))
        .group_by(BudgetStripe.promotion_id))
    return {promotion_id for promotion_id, left in rows if left <= 0}


def _targeted(session: Session, member_id: uuid.UUID, held, now: datetime) -> list[Offer]:
    in_force = []
    for membership, program in held:
        promos = promotions_in_force(versions.in_force(session, program.id, now), now)
        spent = _spent(session, program.id, promos)
        in_force.append((membership, program, [p for p in promos if p.id not in spent]))
    partners = {p.partner_id for _, p, promos in in_force if promos}
    segments = {pid: segments_of(session, pid, [member_id]).get(member_id, set()) for pid in partners}
    offers = []
    for membership, program, promos in in_force:
        for promotion in promos:
            reason = promotion_reason(promotion, membership.tier, segments[program.partner_id])
            if reason is not None:
                offers.append(Offer("promotion", promotion.id, promotion.name, program.code,
                                    promotion_score(reason, promotion.ends_at, now), reason, promotion.ends_at))
    return offers


def _challenges(session: Session, member_id: uuid.UUID, partner_view: bool, now: datetime) -> list[Offer]:
    open_, _ = challenges.of_member(session, member_id, now, with_progress=not partner_view)
    return [Offer("challenge", c.challenge.code, c.challenge.name, c.bonus_program,
                  challenge_score(c.progress, c.target, c.challenge.ends_at, now),
                  "challenge", c.challenge.ends_at, c.challenge.bonus_points, c.progress, c.target)
            for c in open_]

