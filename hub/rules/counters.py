"""The counters a rating takes points from: a rule's per-member cap in a period, and a
promotion's budget. Both are taken atomically in the earn transaction, so they are exact
under any concurrency, and neither makes earns of different members wait on one row:

- a cap counter is one row per (membership, rule, period): only the member's own earns
  touch it. It is taken by an upsert that returns what it granted
  (`INSERT .. ON CONFLICT DO UPDATE SET used = used + least(want, cap - used)`).
- a promotion's budget is split over STRIPES rows; an earn takes from the stripe its
  membership hashes to (on PostgreSQL: or the next one no other earn holds), and only when
  no single stripe holds what it wants locks them all in order (so earns wait on each
  other only as the budget nears its end). Stripes are created on first use.

What a counter granted is final: a returned purchase gives nothing back to caps or budgets.
"""
from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger, CompoundSelect, ForeignKey, SmallInteger, String, and_, case, column, func, or_, select, text, union_all, update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, run
from hub.ledger import Gate
from hub.rules.rating import BUDGET, CAP, Claim, Usage

# More stripes than concurrent earns (an API process holds at most its pool, 10 + 10
# overflow, transactions at once): with fewer, all of a busy promotion's stripes are often
# held at the same moment, SKIP LOCKED finds none, and earns fall to the slow path that
# locks every stripe in order (measured: a 26% lower earn rate, p99 x4, with 16 stripes).
STRIPES = 64


class CapCounter(Base):
    """Points a member has been granted under one capped rule in one period."""

    __tablename__ = "rating_cap_counters"

    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("memberships.id"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger)
    cap: Mapped[int] = mapped_column(BigInteger)  # the limit as of the last grant
    granted: Mapped[int] = mapped_column(BigInteger)  # what the last take granted (RETURNING reads it)


class BudgetStripe(Base):
    """One of a promotion's STRIPES slices of its budget."""

    __tablename__ = "promotion_budget_stripes"

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    promotion_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    remaining: Mapped[int] = mapped_column(BigInteger)
    granted: Mapped[int] = mapped_column(BigInteger)  # what the last take granted


_caps = CapCounter.__table__
_stripes = BudgetStripe.__table__


def _least(a, b):
    return case((a < b, a), else_=b)


Granted = dict[tuple, int]  # (CAP, membership id, rule id, period) or (BUDGET, program id, promotion id, "")


def take(session: Session, caps: dict[tuple[uuid.UUID, str, str], Sequence[int]],
         budgets: dict[tuple[uuid.UUID, str], Sequence[int]]) -> Granted:
    """Take points from counters: `caps` (membership id, rule id, period) -> (want, cap);
    `budgets` (program id, promotion id) -> (want, budget, home stripe). What each granted.

    On PostgreSQL, every cap counter and, for each budget, one stripe that holds all it
    wants, in ONE statement (a round trip per earn, not one per counter). The stripe is the
    home one or the next after it that holds enough and that no other earn holds (SKIP
    LOCKED): while a budget lasts, earns neither wait on each other nor hold more than one
    of its stripes. A budget with no such stripe (near its end, or not made yet) is taken
    the slow way: all its stripes locked in stripe order, the want taken from them in turn.
    So earns only queue on a budget at its end, and cannot deadlock on its stripes."""
    taking = gate(session, caps, budgets)
    conn = session.connection()
    if taking is not None:
        rows, _ = run(conn, taking.rows, taking.params)
        return granted(session, taking, rows)
    # SQLite: one writer at a time, nothing to spread
    return _finish(conn, _take_caps(conn, _sorted_caps(caps)), _sorted_budgets(budgets))


@dataclass(frozen=True)
class Taking(Gate):
    """`take`'s statement, as a ledger gate: an earn's post is made in the same statement
    when the counters grant all it wants (the gate's total). `budgets`: those to take the
    slow way if no stripe could pay them."""

    budgets: list


def gate(session: Session, caps: dict[tuple[uuid.UUID, str, str], Sequence[int]],
         budgets: dict[tuple[uuid.UUID, str], Sequence[int]]) -> Taking | None:
    """What `take` does on PostgreSQL, as a gate for ledger.post_gated (the same arguments);
    `granted` then reads what it granted. None elsewhere: SQLite takes the counters first."""
    if session.connection().dialect.name != "postgresql":
        return None
    cap_rows, budget_rows = _sorted_caps(caps), _sorted_budgets(budgets)
    params: dict[str, object] = {}
    if len(cap_rows) > INLINE_CAPS:
        # psycopg dumps one string in C; a batch's thousands of parameters would cost more
        params["caps"] = json.dumps([{"m": str(m), "r": r, "p": p, "w": min(w, k), "k": k}
                                     for (m, r, p), (w, k) in cap_rows])
    else:
        for i, ((m, r, p), (w, k)) in enumerate(cap_rows):
            params.update({f"m{i}": m, f"r{i}": r, f"cp{i}": p, f"cw{i}": min(w, k), f"k{i}": k})
    for i, ((program_id, promotion_id), (w, _, home)) in enumerate(budget_rows):
        params.update({f"p{i}": program_id, f"id{i}": promotion_id, f"st{i}": home, f"w{i}": w})
    # all they want: a cap asked for more than its limit falls short, as it should
    total = sum(w for _, (w, _) in cap_rows) + sum(w for _, (w, _, _) in budget_rows)
    # past INLINE_CAPS, one statement for any count: one cached shape, not one per count
    shape = min(len(cap_rows), INLINE_CAPS + 1)
    return Taking(_at_once(shape, len(budget_rows)), params, total, budget_rows)


def granted(session: Session, taking: Taking, rows: list[tuple]) -> Granted:
    """What a gate's counters granted, from the rows its statement returned; a budget no
    stripe could pay is taken now, the slow way."""
    found = {(CAP if kind == "c" else BUDGET, owner, key, period): points for kind, owner, key, period, points in rows}
    return _finish(session.connection(), found, taking.budgets)


def _sorted_caps(caps):
    return sorted(caps.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2]))


def _sorted_budgets(budgets):
    return sorted(budgets.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))


def _finish(conn, found: Granted, budget_rows) -> Granted:
    """`found`, with each budget it lacks (no one stripe could pay it) taken the slow way."""
    for (program_id, promotion_id), (want, budget, _) in budget_rows:
        key = (BUDGET, program_id, promotion_id, "")
        if key not in found:
            found[key] = _take_in_order(conn, program_id, promotion_id, budget, want)
    return found


# Up to this many cap counters go into the statement as parameters; more (a batch's) as one
# JSON document. Parameters cost PostgreSQL less than unpacking JSON, but each count of
# counters is a statement of its own to prepare.
INLINE_CAPS = 8

_CAP_SOURCE_JSON = ("SELECT m, r, p, w, k, w FROM jsonb_to_recordset(CAST(:caps AS JSONB))"
                    " AS v(m UUID, r VARCHAR, p VARCHAR, w BIGINT, k BIGINT)")
_CAP_UPSERT = (
    " INSERT INTO rating_cap_counters AS t (membership_id, rule_id, period, used, cap, granted) {source}"
    " ON CONFLICT (membership_id, rule_id, period) DO UPDATE SET"
    " granted = CASE WHEN t.used >= EXCLUDED.cap THEN 0 ELSE LEAST(EXCLUDED.cap - t.used, EXCLUDED.granted) END,"
    " used = t.used + CASE WHEN t.used >= EXCLUDED.cap THEN 0 ELSE LEAST(EXCLUDED.cap - t.used, EXCLUDED.granted) END,"
    " cap = EXCLUDED.cap"
    " RETURNING 'c' AS kind, t.membership_id AS owner, t.rule_id AS key, t.period, t.granted"
)
# One budget's take, {i} its number in the statement. The stripe is chosen and locked first,
# by two sub-selects that depend only on the parameters (PostgreSQL runs each at most once,
# the second only if the first found nothing): the home stripe if it holds the want and no
# other earn holds it (one index probe: the usual case), else the next one after it that
# does. The UPDATE then goes by key. (A choice that depended on the updated row was made
# again when another earn had just changed that row, often came out different, and the
# update took nothing: the earn fell to the slow path.)
_BUDGET_UPDATE = (
    " UPDATE promotion_budget_stripes AS s SET granted = CAST(:w{i} AS BIGINT), remaining = s.remaining - CAST(:w{i} AS BIGINT)"
    " WHERE s.program_id = CAST(:p{i} AS UUID) AND s.promotion_id = :id{i} AND s.stripe = COALESCE("
    "  (SELECT x.stripe FROM promotion_budget_stripes AS x"
    "   WHERE x.program_id = CAST(:p{i} AS UUID) AND x.promotion_id = :id{i} AND x.stripe = CAST(:st{i} AS SMALLINT)"
    "   AND x.remaining >= CAST(:w{i} AS BIGINT) FOR UPDATE SKIP LOCKED),"
    "  (SELECT x.stripe FROM promotion_budget_stripes AS x"
    "   WHERE x.program_id = CAST(:p{i} AS UUID) AND x.promotion_id = :id{i} AND x.remaining >= CAST(:w{i} AS BIGINT)"
    f"   ORDER BY (x.stripe - CAST(:st{{i}} AS SMALLINT) + {STRIPES}) % {STRIPES} LIMIT 1 FOR UPDATE SKIP LOCKED))"
    " RETURNING 'b' AS kind, s.program_id AS owner, s.promotion_id AS key, '' AS period, s.granted"
)
_TAKEN = (column("kind"), column("owner"), column("key"), column("period"), column("granted"))


@functools.lru_cache(maxsize=64)
def _at_once(caps: int, budgets: int) -> CompoundSelect:
    """The statement taking `caps` cap counters (as parameters up to INLINE_CAPS, else from
    JSON) and `budgets` budgets: a data-modifying CTE each, and the union of what they
    return. A part with nothing to take is left out: it would still open its table and
    indexes."""
    parts = []
    if caps:
        source = _CAP_SOURCE_JSON if caps > INLINE_CAPS else "VALUES " + ", ".join(
            f"(CAST(:m{i} AS UUID), :r{i}, :cp{i}, CAST(:cw{i} AS BIGINT), CAST(:k{i} AS BIGINT), CAST(:cw{i} AS BIGINT))"
            for i in range(caps))
        parts.append(text(_CAP_UPSERT.format(source=source)).columns(*_TAKEN).cte("c"))
    parts.extend(text(_BUDGET_UPDATE.format(i=i)).columns(*_TAKEN).cte(f"b{i}") for i in range(budgets))
    return union_all(*(select(part) for part in parts))


@functools.cache
def _cap_upsert(dialect: str):
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_caps)
    new = insert.excluded
    grant = case((_caps.c.used >= new.cap, 0), else_=_least(new.cap - _caps.c.used, new.granted))
    return insert.on_conflict_do_update(
        index_elements=[_caps.c.membership_id, _caps.c.rule_id, _caps.c.period],
        set_={"granted": grant, "used": _caps.c.used + grant, "cap": new.cap},
    ).returning(_caps.c.membership_id, _caps.c.rule_id, _caps.c.period, _caps.c.granted)


def _take_caps(conn, cap_rows) -> Granted:
    """Elsewhere (SQLite): the cap counters in one INSERT .. VALUES (..), (..) .. RETURNING."""
    if not cap_rows:
        return {}
    rows = [{"membership_id": m, "rule_id": r, "period": p, "used": min(w, k), "cap": k, "granted": min(w, k)}
            for (m, r, p), (w, k) in cap_rows]
    found = conn.execute(_cap_upsert(conn.dialect.name), rows).all()
    return {(CAP, m, r, p): granted for m, r, p, granted in found}


def _take_in_order(conn, program_id: uuid.UUID, promotion_id: str, budget: int, want: int) -> int:
    """Up to `want` points from the promotion's stripes, all locked in stripe order (made
    first if this is its first award)."""
    where = (_stripes.c.program_id == program_id) & (_stripes.c.promotion_id == promotion_id)
    locked = select(_stripes.c.stripe, _stripes.c.remaining).where(where).order_by(_stripes.c.stripe).with_for_update()
    stripes = conn.execute(locked).all()
    if not stripes:
        _make_stripes(conn, program_id, promotion_id, budget)
        stripes = conn.execute(locked).all()
    granted = 0
    for stripe, remaining in stripes:
        part = min(remaining, want - granted)
        if part > 0:
            conn.execute(update(_stripes).where(where, _stripes.c.stripe == stripe)
                         .values(remaining=_stripes.c.remaining - part, granted=part))
            granted += part
    return granted


@functools.cache
def _stripes_insert(dialect: str):
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_stripes)
    return insert.on_conflict_do_nothing(index_elements=[_stripes.c.program_id, _stripes.c.promotion_id, _stripes.c.stripe])


def _make_stripes(conn, program_id: uuid.UUID, promotion_id: str, budget: int) -> None:
    share, extra = divmod(budget, STRIPES)
    conn.execute(_stripes_insert(conn.dialect.name), [
        {"program_id": program_id, "promotion_id": promotion_id, "stripe": s,
         "remaining": share + (1 if s < extra else 0), "granted": 0}
        for s in range(STRIPES)
    ])


def home_stripe(membership_id: uuid.UUID) -> int:
    return membership_id.int % STRIPES


def usage(session: Session, program_id: uuid.UUID, membership_id: uuid.UUID | None,
          claims: Iterable[Claim]) -> Usage:
    """What the counters these claims name still allow, read without locking or writing (for
    a preview; the earn path takes them instead)."""
    left: dict[tuple[str, str, str], int] = {}
    claims = list(claims)
    caps = [c for c in claims if c.counter == CAP]
    if membership_id is not None and caps:
        rows = session.execute(select(_caps.c.rule_id, _caps.c.period, _caps.c.used).where(
            _caps.c.membership_id == membership_id,
            or_(*(and_(_caps.c.rule_id == c.key, _caps.c.period == c.period) for c in caps))))
        limits = {(c.key, c.period): c.limit for c in caps}
        for rule_id, period, used in rows:
            left[(CAP, rule_id, period)] = limits[(rule_id, period)] - used
    budgets = [c.key for c in claims if c.counter == BUDGET]
    if budgets:
        rows = session.execute(
            select(_stripes.c.promotion_id, func.sum(_stripes.c.remaining))
            .where(_stripes.c.program_id == program_id, _stripes.c.promotion_id.in_(budgets))
            .group_by(_stripes.c.promotion_id))
        for promotion_id, budget_left in rows:
            left[(BUDGET, promotion_id, "")] = int(budget_left)
    return Usage(left)
