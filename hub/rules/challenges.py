"""Coalition challenges (issue 6, point 8): goals set by ops across partners ("buy at 3
partner brands this month"), a badge for each member who reaches one, and a bonus paid once
by the challenge's program through awards.award().

Progress is always computed from the purchases themselves (point_transactions in the
challenge's window, net of returns), never kept as a counter: what a member sees is exact,
and a purchase the earn path did not look at still counts.

The earn path (`on_purchases`, a hub.rules.effects handler) only decides whether a purchase
completes a challenge. It knows the open challenges from a per-process cache (CACHE_TTL):
with no challenge whose window holds the purchase, it makes no query. A challenge created in
another process is seen within CACHE_TTL; a member who reached the goal in that gap gets the
badge at their next counting purchase, or from `sweep` (beat, `hub challenges sweep`), which
also completes the goals reached by purchases made before the challenge was created.
Challenges are immutable, so the cache is never wrong about one it holds.

Exactly once: the badge is a primary key (member, challenge), inserted with ON CONFLICT DO
NOTHING; the bonus is an award keyed by challenge and member. Concurrent purchases of one
member first upsert their challenge_entrants row, which serialises them there, so the last
one counts every purchase committed before it (PostgreSQL: READ COMMITTED reads anew after
the lock wait; SQLite: write transactions are serial).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub import pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import insert_once, utcnow
from hub.errors import Conflict, Invalid
from hub.programs.earning import parse_time
from hub.programs.models import Membership, PointTransaction, Program
from hub.programs.service import refuse_hosted
from hub.rules import awards
from hub.rules.engage_models import Challenge, ChallengeEntrant, MemberBadge

KINDS = ("distinct_partners", "purchases", "spend")
AWARD_KIND = "challenge"
MAX_POINTS = 10**12
# How stale a process's view of the open challenges may be.
CACHE_TTL = 30.0  # seconds
# A purchase posted this long after a challenge ended can still complete it.
LATE_POSTING = timedelta(days=7)
# The sweep looks at challenges created this recently: what the earn path can miss is a goal
# reached before a process saw the challenge (purchases made before it was created, when it
# starts in the past, or in the cache's first CACHE_TTL). Later, every counting purchase
# checks the goal itself.
SWEEP_WINDOW = timedelta(days=1)

_entrants = ChallengeEntrant.__table__
_badges = MemberBadge.__table__
_BADGE_ONCE = insert_once(_badges, ("member_id", "challenge_id"), _badges.c.member_id)
_dialects = {"postgresql": postgresql, "sqlite": sqlite}


@dataclass(frozen=True)
class Goal:
    """What counts toward a challenge, and how much of it completes it."""

    kind: str
    target: int
    programs: frozenset[str] | None = None  # only purchases in these programs count
    min_amount: int | None = None  # only purchases of at least this (minor units of currency)
    currency: str | None = None  # spend and min_amount are in this currency; others don't count

    @classmethod
    def of(cls, doc: dict) -> Goal:
        programs = doc.get("programs")
        return cls(doc["kind"], doc["target"], frozenset(programs) if programs else None,
                   doc.get("min_amount"), doc.get("currency"))

    def as_dict(self) -> dict:
        doc: dict = {"kind": self.kind, "target": self.target}
        if self.programs:
            doc["programs"] = sorted(self.programs)
        for name in ("min_amount", "currency"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc


@dataclass(frozen=True)
class Open:
    """What the earn path needs of a challenge."""

    id: uuid.UUID
    code: str
    starts_at: datetime
    ends_at: datetime
    goal: Goal

    def counts(self, program_code: str, currency: str, amount_minor: int, occurred_at: datetime) -> bool:
        goal = self.goal
        return (self.starts_at <= occurred_at < self.ends_at
                and (goal.programs is None or program_code in goal.programs)
                and (goal.currency is None or currency == goal.currency)
                and (goal.min_amount is None or amount_minor >= goal.min_amount))


def _open(row: Challenge) -> Open:
    return Open(row.id, row.code, row.starts_at, row.ends_at, Goal.of(row.goal))


# --- ops: defining challenges ------------------------------------------------------------

def _check_goal(session: Session, doc: dict) -> Goal:
    goal = Goal.of(doc)
    if goal.kind not in KINDS:
        raise Invalid(f"goal.kind must be one of {', '.join(KINDS)}", slug="invalid-challenge")
    if not 1 <= goal.target <= MAX_POINTS:
        raise Invalid("goal.target must be 1 or more", slug="invalid-challenge")
    if (goal.kind == "spend" or goal.min_amount is not None) and goal.currency is None:
        raise Invalid("goal.currency is required for a spend goal or a min_amount", slug="invalid-challenge")
    if goal.programs:
        known = set(session.scalars(select(Program.code).where(Program.code.in_(goal.programs))))
        missing = sorted(goal.programs - known)
        if missing:
            raise Invalid(f"no program {missing[0]}", slug="program-not-found")
    return goal


def create(session: Session, actor: Actor, body: dict) -> Challenge:
    starts_at = parse_time(body["starts_at"], "starts_at", past_only=False)
    ends_at = parse_time(body["ends_at"], "ends_at", past_only=False)
    if ends_at <= starts_at:
        raise Invalid("ends_at must be after starts_at", slug="invalid-challenge")
    if ends_at <= utcnow():
        raise Invalid("the challenge would be over already", slug="invalid-challenge")
    goal = _check_goal(session, body["goal"])
    bonus = body["bonus"]
    if not 0 <= bonus["points"] <= MAX_POINTS:
        raise Invalid(f"bonus.points must be 0..{MAX_POINTS}", slug="invalid-points")
    program = session.scalar(select(Program).where(Program.code == bonus["program"]))
    if program is None:
        raise Invalid(f"no program {bonus['program']} to pay the bonus", slug="program-not-found")
    refuse_hosted(program)
    if session.scalar(select(Challenge.id).where(Challenge.code == body["code"])):
        raise Conflict(f"challenge {body['code']} already exists", slug="challenge-exists")
    row = Challenge(
        code=body["code"], name=body["name"], description=body.get("description", ""),
        starts_at=starts_at, ends_at=ends_at, goal=goal.as_dict(),
        badge_code=body["badge"]["code"], badge_name=body["badge"]["name"],
        bonus_program_id=program.id, bonus_points=bonus["points"], created_by=actor.ref,
    )
    session.add(row)
    session.flush()
    trail.record(session, actor=trail.who(actor), action="challenge.create", target=f"challenge:{row.code}",
                 after={"id": str(row.id), "starts_at": body["starts_at"], "ends_at": body["ends_at"],
                        "goal": row.goal, "badge": row.badge_code, "bonus": bonus})
    forget()  # this process sees it at once; others within CACHE_TTL
    return row


def list_active(session: Session, cursor: str | None, limit: int, now: datetime | None = None) -> tuple[list, str | None]:
    """Challenges open now, newest first."""
    now = now or utcnow()
    q = (select(Challenge, Program.code).join(Program, Program.id == Challenge.bonus_program_id)
         .where(Challenge.starts_at <= now, Challenge.ends_at > now))
    return pagination.newest_first(session, q, Challenge.created_at, Challenge.id, cursor, limit,
                                   lambda row: (row[0].created_at, row[0].id))


# --- the earn path ------------------------------------------------------------------------

_lock = threading.Lock()
_cache: tuple[float, tuple[Open, ...]] | None = None


def forget() -> None:
    global _cache
    with _lock:
        _cache = None


def open_challenges(session: Session) -> tuple[Open, ...]:
    """Challenges a purchase posted now may count toward (not yet LATE_POSTING past their
    end), from this process's cache when it is younger than CACHE_TTL."""
    global _cache
    with _lock:
        cached = _cache
    if cached is not None and time.monotonic() - cached[0] < CACHE_TTL:
        return cached[1]
    rows = session.scalars(select(Challenge).where(Challenge.ends_at > utcnow() - LATE_POSTING))
    found = tuple(_open(r) for r in rows)
    with _lock:
        _cache = (time.monotonic(), found)
    return found


def on_purchases(session: Session, actor: Actor, purchases: Sequence) -> None:
    """hub.rules.effects handler: complete the challenges these purchases reach."""
    challenges = open_challenges(session)
    if not challenges:
        return
    hits: dict[Open, set[uuid.UUID]] = {}
    for p in purchases:
        for c in challenges:
            if c.counts(p.program_code, p.currency, p.amount_minor, p.occurred_at):
                hits.setdefault(c, set()).add(p.member_id)
    if not hits:
        return
    now = utcnow()
    conn = session.connection()
    # Sorted, so two batches lock the same rows in the same order.
    rows = sorted(((c.id, m) for c, members in hits.items() for m in members), key=lambda r: (str(r[0]), str(r[1])))
    upsert = _dialects[conn.dialect.name].insert(_entrants).values(
        [{"challenge_id": c, "member_id": m, "entered_at": now, "checked_at": now} for c, m in rows])
    conn.execute(upsert.on_conflict_do_update(index_elements=["challenge_id", "member_id"],
                                              set_={"checked_at": upsert.excluded.checked_at}))
    for challenge, members in hits.items():
        reached = progress(session, challenge, members, reached_only=True)
        if reached:
            complete(session, challenge.id, sorted(reached), actor.ref)


# --- progress and completion --------------------------------------------------------------

def progress(session: Session, challenge: Open, member_ids: Collection[uuid.UUID] | None = None,
             *, reached_only: bool = False) -> dict[uuid.UUID, int]:
    """member id -> progress toward the goal, from their purchases in the window (net of
    returns; a fully returned purchase does not count). One query. member_ids None: every
    member with a counting purchase (the sweep)."""
    t, m, p = PointTransaction, Membership, Program
    goal = challenge.goal
    net = t.amount_minor - t.refunded_minor
    value = {
        "distinct_partners": func.count(distinct(p.partner_id)),
        "purchases": func.count(),
        "spend": func.sum(net),
    }[goal.kind]
    q = (select(m.member_id, value)
         .select_from(t).join(m, m.id == t.membership_id).join(p, p.id == t.program_id)
         .where(t.kind == "purchase", net > 0,
                t.occurred_at >= challenge.starts_at, t.occurred_at < challenge.ends_at)
         .group_by(m.member_id))
    if member_ids is not None:
        q = q.where(m.member_id.in_(list(member_ids)))
    if goal.programs:
        q = q.where(p.code.in_(sorted(goal.programs)))
    if goal.currency is not None:
        q = q.where(t.currency == goal.currency)
    if goal.min_amount is not None:
        q = q.where(net >= goal.min_amount)
    if reached_only:
        q = q.having(value >= goal.target).where(~select(MemberBadge.member_id).where(
            MemberBadge.member_id == m.member_id, MemberBadge.challenge_id == challenge.id).exists())
    return {member: int(v) for member, v in session.execute(q)}


def complete(session: Session, challenge_id: uuid.UUID, member_ids: Iterable[uuid.UUID], caused_by: str) -> int:
    """Give each member the challenge's badge, and its bonus where they hold a membership in
    the paying program (else the badge alone, noting why). A member who has the badge
    already gets nothing more. Returns how many badges were given now."""
    challenge = session.get(Challenge, challenge_id)
    program = session.get(Program, challenge.bonus_program_id)
    conn = session.connection()
    given = 0
    for member_id in member_ids:
        now = utcnow()
        row = {"member_id": member_id, "challenge_id": challenge_id, "badge_code": challenge.badge_code,
               "badge_name": challenge.badge_name, "award_id": None, "bonus_points": 0, "note": None,
               "awarded_at": now}
        if conn.execute(_BADGE_ONCE[conn.dialect.name], row).first() is None:
            continue  # given already (by a concurrent purchase, or earlier)
        given += 1
        membership = session.scalar(select(Membership).where(
            Membership.member_id == member_id, Membership.program_id == program.id))
        if membership is None:
            outcome = {"note": f"no bonus: not a member of {program.code}"}
        else:
            recipient = awards.Recipient(program.id, program.issuance_account_id, membership.id, membership.account_id)
            _, award_id = awards.award(
                session, recipient, kind=AWARD_KIND, key=f"{challenge.code}:{member_id}",
                points=challenge.bonus_points, reason=f"Challenge completed: {challenge.name}",
                caused_by=caused_by)
            outcome = {"award_id": award_id, "bonus_points": challenge.bonus_points}
        conn.execute(_badges.update().where(and_(
            _badges.c.member_id == member_id, _badges.c.challenge_id == challenge_id)).values(**outcome))
    return given


def sweep(session: Session, caused_by: str = "job:challenges-sweep") -> int:
    """Complete the challenges members reached without the earn path noticing (see
    SWEEP_WINDOW): one query per challenge created in the window. Returns how many badges
    were given."""
    now = utcnow()
    rows = session.scalars(select(Challenge).where(
        Challenge.created_at > now - SWEEP_WINDOW, Challenge.starts_at <= now,
        Challenge.ends_at > now - LATE_POSTING).order_by(Challenge.code))
    given = 0
    for row in rows.all():
        reached = progress(session, _open(row), reached_only=True)
        if reached:
            given += complete(session, row.id, sorted(reached), caused_by)
    return given


# --- a member's view -----------------------------------------------------------------------

@dataclass(frozen=True)
class MemberChallenge:
    challenge: Challenge
    bonus_program: str
    progress: int | None
    badge: MemberBadge | None  # set once completed

    @property
    def target(self) -> int:
        return self.challenge.goal["target"]


def of_member(session: Session, member_id: uuid.UUID, now: datetime | None = None, *,
              with_progress: bool = True) -> tuple[list[MemberChallenge], list[MemberChallenge]]:
    """(challenges open now, with the member's progress; challenges completed, with their
    badge), each newest first. Without `with_progress` (a partner's view, which must not learn
    of purchases at other partners): every challenge open now, completed or not, with no
    progress, since leaving out a completed one would tell as much as its progress."""
    now = now or utcnow()
    badges = {b.challenge_id: b for b in session.scalars(select(MemberBadge).where(MemberBadge.member_id == member_id))}
    rows = session.execute(
        select(Challenge, Program.code).join(Program, Program.id == Challenge.bonus_program_id)
        .where((Challenge.id.in_(list(badges))) | and_(Challenge.starts_at <= now, Challenge.ends_at > now))
        .order_by(Challenge.created_at.desc(), Challenge.id)).all()
    open_, done = [], []
    for challenge, program_code in rows:
        badge = badges.get(challenge.id)
        if badge is not None:
            done.append(MemberChallenge(challenge, program_code, challenge.goal["target"], badge))
        if not with_progress:
            if challenge.starts_at <= now < challenge.ends_at:
                open_.append(MemberChallenge(challenge, program_code, None, None))
        elif badge is None:
            value = progress(session, _open(challenge), [member_id]).get(member_id, 0)
            open_.append(MemberChallenge(challenge, program_code, min(value, challenge.goal["target"]), None))
    return open_, done

