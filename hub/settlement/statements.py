"""Closing a settlement period into immutable statements, and reading them back.

A period P (a UTC month, hub.settlement.periods) covers the posted transfers (phases posted
and post_pending) with

    (created_at in [start_P, end_P) and id <= through_P)
    or (created_at < start_P and through_prev < id <= through_P)

where through_P is the highest transfer id committed when P closed: a transfer that commits
after its month closed is "late" and counts in the next period, so a closed statement never
changes. The close is one GROUP BY over the period's rows (docs/settlement.md).
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, literal, or_, select, text
from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.audit import trail
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.ledger.models import POST_PENDING, POSTED, Transfer
from hub.notify import webhooks
from hub.programs.models import Program
from hub.rewards.models import FULFILLED, Redemption, RedemptionLeg, Reward
from hub.settlement import valuation as v
from hub.settlement.models import (
    PARTNER, PROVIDER, ProgramPrice, SettlementPeriod, Statement, StatementLine,
)
from hub.settlement.periods import Period

OPENING = "opening"
CLOSING = "closing"
FEE = "fee"
INHOUSE = "inhouse_redemptions"
MARGIN = "conversion_margin"
NET_DUE = "net_due"
PROVIDER_ORDERS = "provider_orders"
UNPRICED = "XXX"  # ISO 4217's "no currency": a program without a price in force
COUNTED_PHASES = (POSTED, POST_PENDING)
DEFAULT_GRACE = timedelta(minutes=15)


# -- computing a period ---------------------------------------------------------------------

@dataclass
class Line:
    category: str
    amount_minor: int
    program_id: uuid.UUID | None = None
    points: int | None = None
    count: int = 0
    detail: dict | None = None

    def canonical(self, position: int) -> dict:
        return {"position": position, "category": self.category,
                "program_id": None if self.program_id is None else str(self.program_id),
                "points": self.points, "count": self.count, "amount_minor": self.amount_minor,
                "detail": self.detail}


@dataclass
class Draft:
    """A statement before it is stored."""

    party_kind: str
    party: str
    currency: str
    partner_id: uuid.UUID | None = None
    lines: list[Line] = field(default_factory=list)

    @property
    def net_due_minor(self) -> int:
        return next((line.amount_minor for line in self.lines if line.category == NET_DUE), 0)


def canonical(period: str, draft: Draft) -> bytes:
    """The statement as bytes whose sha256 is its digest: re-closing or verifying a period
    recomputes it and must find the same."""
    body = {"period": period, "party_kind": draft.party_kind, "party": draft.party,
            "currency": draft.currency, "net_due_minor": draft.net_due_minor,
            "lines": [line.canonical(i) for i, line in enumerate(draft.lines)]}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def digest(period: str, draft: Draft) -> str:
    return hashlib.sha256(canonical(period, draft)).hexdigest()


@dataclass(frozen=True)
class _Price:
    effective_from: datetime
    currency: str
    per_point: Decimal
    fee_bps: int


class _Prices:
    """Every program's dated prices; the period's boundaries cut it into segments of time in
    which no program's price changes, so the aggregate groups by segment, not by row."""

    def __init__(self, session: Session, until: datetime):
        self.by_program: dict[uuid.UUID, list[_Price]] = defaultdict(list)
        for row in session.scalars(select(ProgramPrice).where(ProgramPrice.effective_from < until)
                                   .order_by(ProgramPrice.effective_from)):
            self.by_program[row.program_id].append(
                _Price(row.effective_from, row.currency, row.per_point_minor, row.issuance_fee_bps))
        self.boundaries = sorted({p.effective_from for ps in self.by_program.values() for p in ps})

    def segment(self, column):
        """SQL: the index of the segment `column` falls in (0: before every price)."""
        if not self.boundaries:
            return literal(0)
        return case(*((column < b, i) for i, b in enumerate(self.boundaries)), else_=len(self.boundaries))

    def at_segment(self, program_id: uuid.UUID, segment: int) -> _Price | None:
        return None if segment == 0 else self.at(program_id, self.boundaries[segment - 1])

    def at(self, program_id: uuid.UUID, when: datetime) -> _Price | None:
        found = None
        for price in self.by_program.get(program_id, ()):
            if price.effective_from > when:
                break
            found = price
        return found


def coverage(period: SettlementPeriod | Period, through: int, prev_through: int):
    """SQL: the transfers period covers (the module's docstring)."""
    t = Transfer.__table__.c
    return and_(t.phase.in_(COUNTED_PHASES), t.id <= through, t.created_at < period.ends_at,
                or_(t.created_at >= period.starts_at, t.id > prev_through))


def _category_sql(t, p):
    """SQL: hub.settlement.valuation.classify, for the row's program `p`."""
    system = (p.issuance_account_id, p.redemption_account_id, p.clearing_account_id, p.breakage_account_id)
    debit_member = t.debit_account_id.notin_(system)
    credit_member = t.credit_account_id.notin_(system)
    return case(
        (and_(t.debit_account_id == p.issuance_account_id, credit_member), v.ISSUED),
        (and_(t.credit_account_id == p.issuance_account_id, debit_member), v.REVERSED),
        (and_(t.credit_account_id == p.redemption_account_id, debit_member), v.REDEEMED),
        (and_(t.credit_account_id == p.clearing_account_id, debit_member), v.CONVERTED_OUT),
        (and_(t.debit_account_id == p.clearing_account_id, credit_member), v.CONVERTED_IN),
        (and_(t.credit_account_id == p.breakage_account_id, debit_member), v.BREAKAGE),
        else_=None,
    )


def _category_predicate(t, program: Program, category: str):
    """SQL: the transfers of `program` in `category` (the drill-down of one line)."""
    system = (program.issuance_account_id, program.redemption_account_id, program.clearing_account_id,
              program.breakage_account_id)
    debit_member = t.debit_account_id.notin_(system)
    credit_member = t.credit_account_id.notin_(system)
    rule = {
        v.ISSUED: and_(t.debit_account_id == program.issuance_account_id, credit_member),
        v.REVERSED: and_(t.credit_account_id == program.issuance_account_id, debit_member),
        v.REDEEMED: and_(t.credit_account_id == program.redemption_account_id, debit_member),
        v.CONVERTED_OUT: and_(t.credit_account_id == program.clearing_account_id, debit_member),
        v.CONVERTED_IN: and_(t.debit_account_id == program.clearing_account_id, credit_member),
        v.BREAKAGE: and_(t.credit_account_id == program.breakage_account_id, debit_member),
    }[category]
    return and_(t.ledger == program.id, rule)


@dataclass
class _Movement:
    points: int = 0
    count: int = 0
    value: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    prices: set = field(default_factory=set)


def compute(session: Session, period: Period, through: int, prev_through: int) -> list[Draft]:
    """The statements of `period` (its transfers up to id `through`, late ones after
    `prev_through`), in a stable order. Reads only; the same inputs give the same drafts."""
    prices = _Prices(session, period.ends_at)
    t = Transfer.__table__.c
    p = Program.__table__.c
    category = _category_sql(t, p).label("category")
    segment = prices.segment(t.created_at).label("segment")
    rows = session.execute(
        select(t.ledger, category, segment, func.sum(t.amount), func.count())
        .select_from(Transfer.__table__.join(Program.__table__, p.id == t.ledger))
        .where(coverage(period, through, prev_through))
        .group_by(t.ledger, category, segment)
    ).all()
    movements: dict[uuid.UUID, dict[str, _Movement]] = defaultdict(lambda: defaultdict(_Movement))
    for program_id, cat, seg, points, count in rows:
        if cat is None:
            continue
        m = movements[program_id][cat]
        price = prices.at_segment(program_id, seg)
        m.points += int(points)
        m.count += count
        if price is not None:
            m.value += v.exact_value(int(points), price.per_point)
            m.fee += v.exact_fee(v.exact_value(int(points), price.per_point), price.fee_bps)
            m.prices.add(format(price.per_point.normalize(), "f"))
    # A statement lists the programs that moved in the period; one that did not keeps its
    # points, and its next statement opens with its last closing.
    opening = _openings(session, period, set(movements))
    programs = {pr.id: pr for pr in session.scalars(select(Program).where(Program.id.in_(set(movements))))} \
        if movements else {}
    drafts: dict[tuple, Draft] = {}

    def partner_draft(partner_id: uuid.UUID, currency: str) -> Draft:
        key = (PARTNER, str(partner_id), currency)
        if key not in drafts:
            drafts[key] = Draft(PARTNER, str(partner_id), currency, partner_id=partner_id)
        return drafts[key]

    last_instant = period.ends_at - timedelta(microseconds=1)
    for program_id in sorted(programs, key=lambda i: programs[i].code):
        program = programs[program_id]
        end_price = prices.at(program_id, last_instant)
        draft = partner_draft(program.partner_id, end_price.currency if end_price else UNPRICED)
        _program_lines(draft, program, opening.get(program_id, 0), movements.get(program_id, {}),
                       prices.at(program_id, period.starts_at), end_price)
    for partner_id, program_id, points, count, seg in _inhouse(session, period, prices):
        price = prices.at_segment(program_id, seg)
        currency = price.currency if price else UNPRICED
        value = v.exact_value(points, price.per_point) if price else Decimal(0)
        draft = partner_draft(partner_id, currency)
        draft.lines.append(Line(INHOUSE, v.minor(value), program_id, points, count))
    for draft in drafts.values():
        _money_lines(draft)
    for provider, currency, count, face in _provider_orders(session, period):
        drafts[(PROVIDER, provider, currency)] = Draft(PROVIDER, provider, currency, lines=[
            Line(PROVIDER_ORDERS, int(face), count=count), Line(NET_DUE, -int(face))])
    return [drafts[key] for key in sorted(drafts)]


def _program_lines(draft: Draft, program: Program, opening: int, movements: dict[str, _Movement],
                   start_price: _Price | None, end_price: _Price | None) -> None:
    def at(price: _Price | None, points: int) -> tuple[int, dict | None]:
        if price is None:
            return 0, None
        return (v.minor(v.exact_value(points, price.per_point)),
                {"per_point_minor": format(price.per_point.normalize(), "f")})

    amount, detail = at(start_price, opening)
    draft.lines.append(Line(OPENING, amount, program.id, opening, detail=detail))
    for category in v.MOVEMENTS:
        m = movements.get(category, _Movement())
        draft.lines.append(Line(category, v.minor(m.value), program.id, m.points, m.count,
                                {"per_point_minor": sorted(m.prices)} if m.prices else None))
    closing = v.closing(opening, {c: m.points for c, m in movements.items()})
    amount, detail = at(end_price, closing)
    draft.lines.append(Line(CLOSING, amount, program.id, closing, detail=detail))
    issued = movements.get(v.ISSUED, _Movement())
    draft.lines.append(Line(FEE, v.minor(issued.fee), program.id,
                            detail={"issuance_fee_bps": end_price.fee_bps} if end_price else None))


def _money_lines(draft: Draft) -> None:
    """Conversion margin and net due, from the lines already there."""
    def total(category: str) -> int:
        return sum(line.amount_minor for line in draft.lines if line.category == category)

    # Out minus in for this partner's programs only; the hub's spread is its sum over partners.
    draft.lines.append(Line(MARGIN, total(v.CONVERTED_OUT) - total(v.CONVERTED_IN)))
    net = total(v.ISSUED) - total(v.REVERSED) + total(FEE) - total(INHOUSE)
    draft.lines.append(Line(NET_DUE, net))


def _openings(session: Session, period: Period, program_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each program's closing points in its latest statement before `period` (0: none yet)."""
    if not program_ids:
        return {}
    latest = (select(StatementLine.program_id, func.max(Statement.period).label("period"))
              .join(Statement, Statement.id == StatementLine.statement_id)
              .where(StatementLine.category == CLOSING, Statement.period < period.name,
                     StatementLine.program_id.in_(program_ids))
              .group_by(StatementLine.program_id).subquery())
    rows = session.execute(
        select(StatementLine.program_id, StatementLine.points)
        .join(Statement, Statement.id == StatementLine.statement_id)
        .join(latest, and_(latest.c.program_id == StatementLine.program_id, latest.c.period == Statement.period))
        .where(StatementLine.category == CLOSING))
    return {program_id: points for program_id, points in rows}


def _inhouse(session: Session, period: Period, prices: _Prices):
    """(partner, spent program, points, redemptions, price segment) of the in-house rewards
    fulfilled in the period: what the hub pays the partner who gave them. A pooled
    redemption's legs each count in their own program."""
    r, rw, leg = Redemption.__table__.c, Reward.__table__.c, RedemptionLeg.__table__.c
    program = func.coalesce(leg.program_id, r.program_id)
    segment = prices.segment(r.resolved_at)
    rows = session.execute(
        select(rw.partner_id, program, func.sum(func.coalesce(leg.points, r.points)),
               func.count(func.distinct(r.id)), segment)
        .select_from(Redemption.__table__.join(Reward.__table__, rw.id == r.reward_id)
                     .outerjoin(RedemptionLeg.__table__, leg.redemption_id == r.id))
        .where(r.state == FULFILLED, rw.partner_id.is_not(None),
               r.resolved_at >= period.starts_at, r.resolved_at < period.ends_at)
        .group_by(rw.partner_id, program, segment))
    return sorted(((partner, prog, int(points), count, seg) for partner, prog, points, count, seg in rows),
                  key=lambda row: (str(row[0]), str(row[1]), row[4]))


def _provider_orders(session: Session, period: Period):
    """(provider, currency, orders, face value) of provider rewards fulfilled in the period."""
    r = Redemption.__table__.c
    return session.execute(
        select(r.provider, r.currency, func.count(), func.sum(r.amount_minor))
        .where(r.state == FULFILLED, r.provider.is_not(None), r.amount_minor.is_not(None),
               r.resolved_at >= period.starts_at, r.resolved_at < period.ends_at)
        .group_by(r.provider, r.currency).order_by(r.provider, r.currency)).all()


# -- closing --------------------------------------------------------------------------------

@dataclass
class Closed:
    """What a close did: the periods it closed (none: the period was closed already) and the
    requested period's statements."""

    period: str
    closed: list[str]
    statements: list[Statement]

    @property
    def already_closed(self) -> bool:
        return not self.closed


def to_close(session: Session, name: str, now: datetime | None = None,
             grace: timedelta = DEFAULT_GRACE) -> list[Period]:
    """The periods a close of `name` closes, in order: every earlier unclosed one since the
    first activity, then itself. Empty: it is closed already. Refuses one not over yet."""
    period = Period.parse(name)
    if session.get(SettlementPeriod, period.name) is not None:
        return []
    now = now or utcnow()
    if not period.is_over(now, grace):
        raise Invalid(f"period {period} is not over: it can close from "
                      f"{(period.ends_at + grace).isoformat()}", slug="period-not-over")
    last = session.scalar(select(func.max(SettlementPeriod.period)))
    if last is not None and last > period.name:
        raise Conflict(f"period {period} had no activity when {last} closed; its transfers "
                       f"since count in the next open period", slug="period-superseded")
    if last is not None:
        first = Period.parse(last).next()
    else:
        earliest = session.scalar(select(func.min(Transfer.created_at)))
        first = min(Period.containing(earliest), period) if earliest is not None else period
    months = [first]
    while months[-1] < period:
        months.append(months[-1].next())
    return months


def through_now(session: Session) -> int:
    """The highest transfer id, every lower one committed. On PostgreSQL a SHARE lock waits
    for the transactions writing transfers to end (an id is drawn only by an insert holding a
    conflicting lock), so no lower id can commit later; it is held until this transaction
    ends: writes of transfers wait for the close. SQLite's writes are serial already."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE ledger_transfers IN SHARE MODE"))
    return session.scalar(select(func.coalesce(func.max(Transfer.id), 0)))


def close_period(session: Session, period: Period, actor_ref: str, through: int) -> list[Statement]:
    """Compute and store one period's statements, queue settlement.closed to each partner
    and record the close on the audit trail, in the caller's transaction."""
    previous = session.get(SettlementPeriod, period.previous().name)
    prev_through = previous.through_id if previous is not None else 0
    drafts = compute(session, period, through, prev_through)
    session.add(SettlementPeriod(period=period.name, starts_at=period.starts_at, ends_at=period.ends_at,
                                 through_id=through, closed_by=actor_ref))
    session.flush()
    stored = []
    for draft in drafts:
        statement = Statement(period=period.name, party_kind=draft.party_kind, party=draft.party,
                              partner_id=draft.partner_id, currency=draft.currency,
                              net_due_minor=draft.net_due_minor, digest=digest(period.name, draft))
        session.add(statement)
        session.flush()
        session.add_all(StatementLine(statement_id=statement.id, position=i, category=line.category,
                                      program_id=line.program_id, points=line.points, count=line.count,
                                      amount_minor=line.amount_minor, detail=line.detail)
                        for i, line in enumerate(draft.lines))
        if draft.partner_id is not None:
            webhooks.emit(session, draft.partner_id, "settlement.closed", {
                "statement_id": str(statement.id), "period": period.name,
                "currency": statement.currency, "net_due_minor": statement.net_due_minor})
        stored.append(statement)
    session.flush()
    trail.record(session, actor=actor_ref, action="settlement.close", target=f"period:{period}",
                 after={"through_id": through, "statements": len(stored),
                        # One digest for them all, so the entry stays small however many.
                        "digest": hashlib.sha256("".join(sorted(s.digest for s in stored)).encode()).hexdigest()})
    return stored


def close(session: Session, name: str, actor_ref: str, now: datetime | None = None,
          grace: timedelta = DEFAULT_GRACE) -> Closed:
    """Close `name` (and the earlier unclosed periods) in the caller's transaction; a period
    closed already gives its stored statements back unchanged."""
    months = to_close(session, name, now, grace)
    closed = []
    if months:
        through = through_now(session)
        for month in months:
            close_period(session, month, actor_ref, through)
            closed.append(month.name)
    return Closed(Period.parse(name).name, closed, stored(session, Period.parse(name).name))


def stored(session: Session, period: str) -> list[Statement]:
    """A closed period's statements (none if it is not closed)."""
    return list(session.scalars(select(Statement).where(Statement.period == period)
                                .order_by(Statement.party_kind, Statement.party, Statement.currency)))


def verify(session: Session, period: str | None = None) -> list[dict]:
    """Recompute each closed period's statements (or `period`'s); the differences found."""
    q = select(SettlementPeriod).order_by(SettlementPeriod.period)
    if period is not None:
        q = q.where(SettlementPeriod.period == Period.parse(period).name)
    drift = []
    for row in session.scalars(q):
        previous = session.get(SettlementPeriod, Period.parse(row.period).previous().name)
        drafts = compute(session, Period.parse(row.period), row.through_id,
                         previous.through_id if previous else 0)
        recomputed = {(d.party_kind, d.party, d.currency): digest(row.period, d) for d in drafts}
        kept = {(s.party_kind, s.party, s.currency): s for s in stored(session, row.period)}
        for key in sorted(set(recomputed) | set(kept)):
            found = kept.get(key)
            # The stored lines must still give the stored digest, and the ledger the same.
            as_stored = None if found is None else digest(row.period, _draft_of(session, found))
            if found is None or recomputed.get(key) != found.digest or as_stored != found.digest:
                drift.append({"period": row.period, "party_kind": key[0], "party": key[1], "currency": key[2],
                              "stored": None if found is None else found.digest, "lines": as_stored,
                              "recomputed": recomputed.get(key)})
    return drift


def _draft_of(session: Session, found: Statement) -> Draft:
    return Draft(found.party_kind, found.party, found.currency, found.partner_id, [
        Line(line.category, line.amount_minor, line.program_id, line.points, line.count, line.detail)
        for line in lines(session, found.id)])


# -- reading --------------------------------------------------------------------------------

def periods(session: Session) -> list[SettlementPeriod]:
    return list(session.scalars(select(SettlementPeriod).order_by(SettlementPeriod.period.desc())))


def _visible(actor: Actor):
    """Ops see every statement; a partner only its own."""
    if actor.partner_id is None and "ops:read" in actor.scopes:
        return True
    return Statement.partner_id == actor.partner_id if actor.partner_id is not None else False


def statements_for(session: Session, actor: Actor, period: str | None = None,
                   partner_id: uuid.UUID | None = None, provider: str | None = None,
                   cursor: str | None = None, limit: int = 50) -> tuple[list[Statement], str | None]:
    """Statements the actor may read, newest period first, filtered; a page and the next cursor."""
    from hub import pagination

    q = select(Statement).where(_visible(actor))
    if period is not None:
        q = q.where(Statement.period == Period.parse(period).name)
    if partner_id is not None:
        q = q.where(Statement.partner_id == partner_id)
    if provider is not None:
        q = q.where(Statement.party_kind == PROVIDER, Statement.party == provider)
    after = pagination.decode(cursor)
    if after is not None:
        if not (isinstance(after, list) and len(after) == 2):
            raise Invalid("cursor is not one this API issued", slug="invalid-cursor")
        period, after_id = (pagination.text_position(x) for x in after)
        q = q.where(or_(Statement.period < period, and_(Statement.period == period, Statement.id > _uuid(after_id))))
    rows = list(session.scalars(q.order_by(Statement.period.desc(), Statement.id).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, pagination.encode([rows[-1].period, str(rows[-1].id)])


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor") from exc


def statement(session: Session, actor: Actor, statement_id: uuid.UUID) -> Statement:
    """One statement the actor may read; another partner's is not found."""
    found = session.scalar(select(Statement).where(Statement.id == statement_id, _visible(actor)))
    if found is None:
        raise NotFound(f"no statement {statement_id}")
    return found


def lines(session: Session, statement_id: uuid.UUID) -> list[StatementLine]:
    return list(session.scalars(select(StatementLine).where(StatementLine.statement_id == statement_id)
                                .order_by(StatementLine.position)))


def traceable(line: StatementLine) -> bool:
    return line.category in v.MOVEMENTS and line.program_id is not None


def line_query(session: Session, found: Statement, line: StatementLine):
    """SQL select of the transfers behind a movement line, by id."""
    if not traceable(line):
        raise Invalid(f"line {line.id} ({line.category}) is not made of transfers", slug="line-not-traceable")
    period = session.get(SettlementPeriod, found.period)
    previous = session.get(SettlementPeriod, Period.parse(found.period).previous().name)
    program = session.get(Program, line.program_id)
    t = Transfer.__table__.c
    return (select(Transfer.__table__)
            .where(coverage(period, period.through_id, previous.through_id if previous else 0),
                   _category_predicate(t, program, line.category))
            .order_by(t.id))


def line_transfers(session: Session, actor: Actor, statement_id: uuid.UUID, line_id: int,
                   after_id: int | None = None, limit: int = 100) -> tuple[list, int | None]:
    """A page of the transfers behind one line (ascending ids after `after_id`) and the last
    id if there are more."""
    found = statement(session, actor, statement_id)
    line = session.scalar(select(StatementLine).where(StatementLine.id == line_id,
                                                      StatementLine.statement_id == found.id))
    if line is None:
        raise NotFound(f"no line {line_id} in statement {statement_id}")
    q = line_query(session, found, line)
    if after_id is not None:
        q = q.where(Transfer.__table__.c.id > after_id)
    rows = session.execute(q.limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], rows[limit - 1].id


def iter_line_transfers(session: Session, found: Statement, line: StatementLine,
                        batch: int = 2000) -> Iterator:
    """Every transfer behind a line, streamed (a server-side cursor on PostgreSQL)."""
    result = session.execute(line_query(session, found, line).execution_options(yield_per=batch))
    yield from result


def close_previous_month(db, settings, now: datetime | None = None) -> dict:
    """The daily beat job: close last month once it is over (plus the grace); a no-op when it
    is closed already or not over yet."""
    now = now or utcnow()
    grace = timedelta(minutes=settings.settlement_grace_minutes)
    month = Period.containing(now).previous()
    if not month.is_over(now, grace):
        return {"period": month.name, "closed": []}
    done = db.write(lambda s: close(s, month.name, "beat", now=now, grace=grace))
    return {"period": month.name, "closed": done.closed}
