"""Expiry: points are earned in lots that expire; a daily job moves what has expired to the
program's breakage account (the `expiry` section of its rules).

Lots cost nothing to keep. Every credit posted to a member's account (an earn, a bonus, a
conversion or transfer in) is a lot; its expiry follows the policy in force when it was
credited. Every debit (redemptions, reversals, transfers and conversions out, reservations
still pending, and breakage itself) spends lots soonest-expiring first. So for an account:

    due(T) = max(0, L(T) - debits_posted - debits_pending)

where L(T) is the sum of the credits that expire at or before T, and the debit counters are
the account's cached ones (breakage included: what expired before is not due again). Why it
holds: allocating every debit to the soonest-expiring lots first leaves L(T) - debits of the
lots expiring by T unspent, when positive; and L(T) <= credits_posted, so due(T) never
exceeds the available balance, and never takes a spent point. A reservation voided later
gives its points back with their original expiry (its void lowers debits_pending), and they
expire at the next run if that date has passed. A void is not a credit: it resolves a debit.

Hence no write on the earn path at all: the job reads each candidate's credits, and posts one
transfer (code "expire", member -> breakage) per account with points due, under the
account's lock, with the counters read under that lock. Running it again at the same moment
finds nothing due (the breakage it posted is a debit now).
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from hub import ledger
from hub.actor import Actor
from hub.db import insert_once, utcnow
from hub.errors import NotFound
from hub.identity import mail
from hub.identity.account_models import MemberAccount
from hub.ledger.models import POST_PENDING, POSTED, Account, Transfer
from hub.programs.models import Membership, Program
from hub.rules import months, versions
from hub.rules.document import Finding
from hub.rules.models import RuleVersion
from hub.rules.standing_models import ExpiryNotice

EXPIRE = "expire"
CAUSED_BY = "job:expiry"
DEFAULT_NOTICE_DAYS = 30
_accounts = Account.__table__
_transfers = Transfer.__table__
_memberships = Membership.__table__
_programs = Program.__table__
_NOTICE_ONCE = insert_once(ExpiryNotice.__table__, ("account_id", "expires_at"), ExpiryNotice.__table__.c.account_id)


# --- the policy ---------------------------------------------------------------------------

def expires_at(section: dict | None, credited: datetime) -> datetime | None:
    """When a lot credited at `credited` expires under the expiry `section` (None: never)."""
    policy = section["policy"] if section else "never"
    if policy == "after_months":
        return months.add(credited, section["months"])
    if policy == "end_of_month":
        return months.start(months.index(credited) + section.get("after_months", 0) + 1)
    if policy == "end_of_year":
        year = credited.astimezone(timezone.utc).year + section.get("after_years", 0) + 1
        return datetime(year, 1, 1, tzinfo=timezone.utc)
    return None


_OWN_KEYS = {"after_months": {"months"}, "end_of_month": {"after_months"}, "end_of_year": {"after_years"}, "never": set()}


def lint(document: dict) -> list[Finding]:
    """A setting that belongs to another policy is a contradiction, not a no-op."""
    section = document.get("expiry")
    if not section:
        return []
    policy = section["policy"]
    found = [
        Finding(f"/expiry/{key}", f"{key} does not apply to policy {policy}")
        for keys in _OWN_KEYS.values() for key in sorted(keys)
        if key in section and key not in _OWN_KEYS[policy]
    ]
    if policy == "never" and "notice_days" in section:
        found.append(Finding("/expiry/notice_days", "points that never expire need no notice"))
    return found


# --- lots ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Holding:
    """A member account: its lots (expiry, points; never-expiring ones left out) and what its
    debits spent (posted and pending, breakage included)."""

    account_id: int
    lots: tuple[tuple[datetime, int], ...]
    spent: int

    def due(self, at: datetime) -> int:
        """Points expired at `at` and still held."""
        return max(0, sum(points for when, points in self.lots if when <= at) - self.spent)

    def schedule(self, now: datetime) -> list[tuple[datetime, int]]:
        """(date, points) that expire, soonest first. What is due already (the job has not run
        since) comes first, at the latest date passed."""
        dates = sorted({when for when, _ in self.lots})
        out, before = [], 0
        past = [d for d in dates if d <= now]
        for when in ([past[-1]] if past else []) + [d for d in dates if d > now]:
            cumulative = self.due(when)
            if cumulative > before:
                out.append((when, cumulative - before))
                before = cumulative
        return out


def _policies(session: Session, program_id: uuid.UUID):
    """credited_at -> the expiry section in force then (the program's versions, cached)."""
    latest = versions.latest_version(session, program_id)

    def section(at: datetime):
        rules = versions.in_force(session, program_id, at, latest)
        return rules.section("expiry") if rules else None
    return section


def holdings(session: Session, program_id: uuid.UUID, accounts: Iterable[tuple[int, int]],
             upto: datetime) -> dict[int, Holding]:
    """The holdings of these (account id, points spent) of one program, from their credits
    made up to `upto`, in one query."""
    spent = dict(accounts)
    if not spent:
        return {}
    t = _transfers
    credits = session.execute(
        select(t.c.credit_account_id, t.c.created_at, t.c.amount)
        .where(t.c.credit_account_id.in_(list(spent)), t.c.phase.in_((POSTED, POST_PENDING)), t.c.created_at <= upto)
    ).all()
    policy_at = _policies(session, program_id)
    lots: dict[int, list] = defaultdict(list)
    for account_id, credited, points in credits:
        when = expires_at(policy_at(credited), credited)
        if when is not None:
            lots[account_id].append((when, points))
    return {a: Holding(a, tuple(lots[a]), s) for a, s in spent.items()}


def _spent():
    a = _accounts
    return a.c.debits_posted + a.c.debits_pending


# --- the job ------------------------------------------------------------------------------

def expiring_programs(session: Session) -> list[tuple[uuid.UUID, str, int]]:
    """(id, code, breakage account) of each program whose rules, in any version, ever let
    points expire: lots credited under an old policy still expire under it."""
    ids = session.scalars(select(RuleVersion.program_id).distinct()).all()
    found = []
    for program_id in ids:
        if any((v.section("expiry") or {}).get("policy", "never") != "never"
               for v in versions.history(session, program_id)):
            found.append(program_id)
    if not found:
        return []
    p = _programs
    return session.execute(
        select(p.c.id, p.c.code, p.c.breakage_account_id).where(p.c.id.in_(found)).order_by(p.c.code)).all()


def _candidates(session: Session, program_id: uuid.UUID, after: int, batch: int, with_email: bool = False):
    """A page of the program's member accounts holding points, by id: (id, spent), and the
    email of the member's dashboard account (only members who have one) if asked."""
    a, m = _accounts, _memberships
    q = select(a.c.id, _spent()).join(m, m.c.account_id == a.c.id)
    if with_email:
        q = q.add_columns(MemberAccount.email).join(MemberAccount, MemberAccount.member_id == m.c.member_id)
    return session.execute(
        q.where(m.c.program_id == program_id, a.c.id > after,
                a.c.credits_posted - a.c.debits_posted - a.c.debits_pending > 0)
        .order_by(a.c.id).limit(batch)
    ).all()


def run(db, now: datetime | None = None, batch: int = 500) -> dict:
    """Expire every lot due at `now` (default: now) in every program that has expiry."""
    now = now or utcnow()
    totals = {"accounts": 0, "points": 0}
    with db.read() as s:
        programs = expiring_programs(s)
    for program_id, _, breakage in programs:
        for key, value in expire_program(db, program_id, breakage, now, batch).items():
            totals[key] += value
    return totals


def expire_program(db, program_id: uuid.UUID, breakage: int, now: datetime, batch: int = 500) -> dict:
    """One program's expiry, a page of accounts at a time; each page's expiry is one short
    transaction."""
    totals = {"accounts": 0, "points": 0}
    after = 0
    while True:
        with db.read() as s:
            page = _candidates(s, program_id, after, batch)
            found = holdings(s, program_id, [(r[0], r[1]) for r in page], now)
        due = {a: h for a, h in found.items() if h.due(now) > 0}
        if due:
            expired = db.write(lambda s: _expire(s, program_id, breakage, due, now))
            totals["accounts"] += len(expired)
            totals["points"] += sum(expired.values())
        if len(page) < batch:
            return totals
        after = page[-1][0]


def _expire(session: Session, program_id: uuid.UUID, breakage: int, found: dict[int, Holding],
            now: datetime) -> dict[int, int]:
    """Under the accounts' locks (ascending ids), with the debits read under them: one
    breakage transfer per account with points due. {account id: points expired}."""
    a = _accounts
    locked = session.execute(
        select(a.c.id, _spent()).where(a.c.id.in_(list(found))).order_by(a.c.id).with_for_update()
    ).all()
    expired = {}
    for account_id, spent in locked:
        holding = found[account_id]
        points = Holding(account_id, holding.lots, spent).due(now)
        if points > 0:
            expired[account_id] = points
    ledger.post(session, [
        ledger.TransferSpec(debit=account_id, credit=breakage, amount=points, code=EXPIRE, ledger=program_id,
                            caused_by=CAUSED_BY, ref_type="expiry", ref_id=now.isoformat(),
                            meta={"expired_through": now.isoformat()})
        for account_id, points in expired.items()
    ])
    return expired


# --- telling members ------------------------------------------------------------------------

def notify(db, now: datetime | None = None, batch: int = 500) -> int:
    """Mail each member with a dashboard account whose points expire within their program's
    notice_days: once per account and expiry date. The number of mails written."""
    now = now or utcnow()
    sent = 0
    with db.read() as s:
        programs = expiring_programs(s)
    for program_id, code, _ in programs:
        with db.read() as s:
            rules = versions.in_force(s, program_id, now)
        section = (rules.section("expiry") if rules else None) or {}
        horizon = now + timedelta(days=section.get("notice_days", DEFAULT_NOTICE_DAYS))
        after = 0
        while True:
            def work(s):
                page = _candidates(s, program_id, after, batch, with_email=True)
                emails = {r[0]: r[2] for r in page}
                found = holdings(s, program_id, [(r[0], r[1]) for r in page], now)
                count = 0
                for account_id, holding in found.items():
                    soon = [(when, points) for when, points in holding.schedule(now) if now < when <= horizon]
                    count += sum(_notice(s, emails[account_id], code, account_id, when, points)
                                 for when, points in soon)
                return page, count
            page, count = db.write(work)
            sent += count
            if len(page) < batch:
                break
            after = page[-1][0]
    return sent


def _notice(session: Session, email: str, code: str, account_id: int, when: datetime,
            points: int) -> bool:
    conn = session.connection()
    row = {"account_id": account_id, "expires_at": when, "points": points, "sent_at": utcnow()}
    if conn.execute(_NOTICE_ONCE[conn.dialect.name], row).first() is None:
        return False
    mail.send(session, to=email, subject=f"{points} {code} points expire on {when:%Y-%m-%d}",
              body=f"{points} of your {code} points expire on {when:%Y-%m-%d %H:%M} UTC. "
                   "Spend them before then to keep their value.")
    return True


# --- what a member sees -------------------------------------------------------------------

@dataclass(frozen=True)
class Expiring:
    program: str
    items: list[tuple[datetime, int]]


def _expiring(session: Session, program_id: uuid.UUID, code: str, account_id: int, now: datetime,
              days: int) -> Expiring:
    spent = session.scalar(select(_spent()).where(_accounts.c.id == account_id))
    (holding,) = holdings(session, program_id, [(account_id, spent)], now).values()
    until = now + timedelta(days=days)
    return Expiring(code, [(when, points) for when, points in holding.schedule(now) if when <= until])


def member_expiring(session: Session, actor: Actor, member_id: uuid.UUID, program_code: str, days: int) -> Expiring:
    p, m = _programs, _memberships
    row = session.execute(
        select(p.c.id, p.c.code, m.c.account_id)
        .join(m, and_(m.c.program_id == p.c.id, m.c.member_id == member_id))
        .where(p.c.code == program_code, p.c.partner_id == actor.partner_id)
    ).first()
    if row is None:
        raise NotFound(f"no member of {program_code} with that id", slug="member-not-found")
    return _expiring(session, *row, utcnow(), days)


def own_expiring(session: Session, member_id: uuid.UUID, days: int) -> list[Expiring]:
    p, m = _programs, _memberships
    rows = session.execute(
        select(p.c.id, p.c.code, m.c.account_id).join(m, m.c.program_id == p.c.id)
        .where(m.c.member_id == member_id, p.c.hosted_by.is_(None)).order_by(p.c.code)
    ).all()
    now = utcnow()
    return [_expiring(session, *row, now, days) for row in rows]
