"""Earning from purchases and reversing points on returns.

A single purchase is a batch of one, so both paths share every rule. A batch resolves its
programs, members and their accounts with one query per (program, identifier kind), its
duplicates with one more, then writes all its transfers and transactions in bulk, in one
database transaction.

The purchase path is the hub's hottest: it uses Core statements on the tables (no ORM
objects to build, track and flush), which more than halves its CPU per request.
"""
from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, exists, func, insert, select, text
from sqlalchemy.orm import Session

from hub import ledger, money
from hub.actor import Actor
from hub.db import bind_values, insert_many, one_of, run, utcnow, values_shape
from hub.errors import Conflict, DomainError, Gone, Invalid, NotFound
from hub.privacy.erasure_models import MemberErasure
from hub.ledger.models import Account
from hub.identity.oidc import subjects
from hub.ledger.service import AccountInfo
from hub.notify import webhooks
from hub.notify.webhook_models import WebhookEndpoint
from hub.programs.models import (
    Membership,
    MembershipIdentifier,
    PointTransaction,
    Program,
)
from hub.privacy import blind
from hub.programs.service import refuse_erased, refuse_hosted
from hub.rules import counters, effects, rating, versions
from hub.rules.models import RuleVersion
from hub.rules.segments import segments_of

EARN = "earn"
REVERSAL = "reversal"
PURCHASE = "purchase"
RETURN = "return"
# A POS clock may run a little fast; a purchase further in the future is a mistake.
CLOCK_SKEW = timedelta(minutes=5)

_programs = Program.__table__
_memberships = Membership.__table__
_identifiers = MembershipIdentifier.__table__
_accounts = Account.__table__
_txns = PointTransaction.__table__


@dataclass
class TxnView:
    txn: PointTransaction  # or any object with its attributes (a Row, a new row's namespace)
    program: str
    member_id: uuid.UUID


@dataclass
class ItemResult:
    status: str  # created | duplicate | failed
    view: TxnView | None = None
    error: DomainError | None = None


@dataclass(frozen=True)
class _Program:
    """What earning needs of a program (read with its members, in the same query)."""

    id: uuid.UUID
    code: str
    earn_currency: str
    earn_rate: Decimal
    issuance_account_id: int
    hosted_by: str | None  # a partner-hosted program: the hub keeps no balance of it
    rules_version: int | None  # its newest rule version (None: it has no rules)
    # Its partner has a live webhook endpoint: only then is `points.earned` emitted (which
    # reads the endpoints again for their event types), so a partner without one pays nothing.
    hooked: bool = False


@dataclass
class _Parsed:
    index: int
    program: _Program
    kind: str
    value: str
    txn_id: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    store_id: str | None
    channel: str | None
    items: list[dict] | None  # stored as given: [{category, amount_minor, sku?, quantity?}]
    membership: tuple | None = None  # (membership_id, account_id, member_id, tier)
    points: int = 0
    rules: versions.RuleSet | None = None  # in force at occurred_at
    rating: rating.Rating | None = None
    member: rating.MemberFacts | None = None
    txn: SimpleNamespace | None = None


def points_for(program: Program | _Program, amount_minor: int) -> int:
    """Base earn rule: floor(amount in major units x points per unit)."""
    return rating.base_points(program.earn_rate, program.earn_currency, amount_minor)


def parse_time(value: str, field: str = "occurred_at", past_only: bool = True) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not an RFC 3339 date-time", slug="invalid-time") from exc
    if when.tzinfo is None:
        raise Invalid(f"{field} needs a time zone (e.g. Z)", slug="invalid-time")
    try:
        when.astimezone(timezone.utc)  # stored in UTC: 0001-01-01T00:00+14:00 has no UTC
    except OverflowError as exc:
        raise Invalid(f"{value!r} is out of range", slug="invalid-time") from exc
    if past_only and when > utcnow() + CLOCK_SKEW:
        raise Invalid(f"{field} is in the future", slug="invalid-time")
    return when


def amount_of(body: dict, currency_expected: str) -> int:
    if body["currency"] != currency_expected:
        money.exponent(body["currency"])  # unknown currency is its own error
        raise Invalid(
            f"this program earns on {currency_expected}, not {body['currency']}",
            slug="currency-not-accepted",
        )
    amount = money.to_minor(body["amount"], body["currency"])
    if amount <= 0:
        raise Invalid("amount must be greater than zero", slug="invalid-amount")
    return amount


def items_of(body: dict, amount_minor: int) -> list[dict] | None:
    """The purchase's lines in minor units. Together they may not exceed the purchase: what
    they leave uncovered is rated as a line of no category."""
    if "items" not in body:
        return None
    items = []
    for line in body["items"]:
        item = {"category": line["category"], "amount_minor": money.to_minor(line["amount"], body["currency"])}
        if "sku" in line:
            item["sku"] = line["sku"]
        if "quantity" in line:
            item["quantity"] = line["quantity"]
        items.append(item)
    if sum(i["amount_minor"] for i in items) > amount_minor:
        raise Invalid("the items add up to more than the purchase's amount", slug="items-exceed-amount")
    return items


def _parse(index: int, body: dict, kind: str, value: str, program: _Program | None) -> _Parsed:
    if program is None:
        raise NotFound(f"no program {body['program']}", slug="program-not-found")
    refuse_hosted(program)
    amount_minor = amount_of(body, program.earn_currency)
    return _Parsed(
        index=index,
        program=program,
        kind=kind,
        value=value,
        txn_id=body["transaction_id"],
        amount_minor=amount_minor,
        currency=body["currency"],
        occurred_at=parse_time(body["occurred_at"]),
        store_id=body.get("store_id"),
        channel=body.get("channel"),
        items=items_of(body, amount_minor),
    )


def _member_ref(session: Session, actor: Actor, body: dict) -> tuple[str, str]:
    ((kind, value),) = body["member"].items()
    if kind == "subject":
        # The partner's pairwise sub (single sign-on) stands for the member it was issued for;
        # an unknown one stays a subject, which no membership has: member-not-found.
        member_id = subjects.member_for(session, str(actor.partner_id), value)
        return ("member_id", str(member_id)) if member_id else (kind, value)
    if kind == "member_id":
        return kind, value
    return kind, blind.index(kind, value)  # what the resolve query matches: one HMAC, no query


class _Found:
    """What the resolving queries found: programs, and memberships with their accounts."""

    def __init__(self):
        self.programs: dict[str, _Program] = {}
        # (program code, kind, value) -> (membership_id, account_id, member_id, tier)
        self.members: dict[tuple, tuple] = {}
        self.accounts: list[AccountInfo] = []
        # (program id, transaction_id) known not to be taken (single purchases only)
        self.free: set[tuple] = set()
        # (program code, kind, value) of erased members (hub.privacy.erasure)
        self.erased: set[tuple] = set()


def _resolve_query(by_member_id: bool, check_taken: bool, shape: str):
    """The caller's program by code, LEFT JOINed to the memberships that the identifiers
    name and to their accounts: the program comes back even when no member matches, so a
    missing program and a missing member stay different errors.

    With `check_taken` (a single purchase), it also tells whether the program already has a
    purchase with that transaction_id, which saves a round trip in the common case (no).
    It also reads the program's newest rule version (the rules cache's key, so a purchase
    is never rated by stale rules), the member's tier, and whether the partner has a live
    webhook endpoint."""
    m, a, p, i, t = _memberships, _accounts, _programs, _identifiers, _txns
    e = MemberErasure.__table__  # an erased member is gone (410), not credited
    if by_member_id:
        ref = m.c.member_id
        members = m.join(a, a.c.id == m.c.account_id).outerjoin(e, e.c.member_id == m.c.member_id)
        on = and_(m.c.program_id == p.c.id, one_of(m.c.member_id, "values", shape))
    else:
        ref = i.c.value_index
        members = (i.join(m, m.c.id == i.c.membership_id).join(a, a.c.id == m.c.account_id)
                   .outerjoin(e, e.c.member_id == m.c.member_id))
        on = and_(
            i.c.program_id == p.c.id,
            i.c.kind == bindparam("kind"),
            one_of(i.c.value_index, "values", shape),
        )
    newest = select(func.max(RuleVersion.version)).where(RuleVersion.program_id == p.c.id).scalar_subquery()
    w = WebhookEndpoint.__table__
    hooked = exists().where(w.c.partner_id == p.c.partner_id, w.c.disabled_at.is_(None))
    columns = [p.c.id, p.c.code, p.c.earn_currency, p.c.earn_rate, p.c.issuance_account_id, p.c.hosted_by,
               ref.label("ref"), m.c.id, m.c.account_id, m.c.member_id, a.c.ledger, a.c.cached,
               a.c.no_overdraft, m.c.tier, newest.label("rules_version"), e.c.member_id.label("erased"),
               hooked.label("hooked")]
    if check_taken:
        taken = exists().where(
            t.c.program_id == p.c.id, t.c.kind == PURCHASE, t.c.partner_txn_id == bindparam("txn_id")
        )
        columns.append(taken.label("taken"))
    return (
        select(*columns)
        .select_from(p.outerjoin(members, on))
        .where(p.c.partner_id == bindparam("partner_id"), p.c.code == bindparam("code"))
    )


@functools.cache
def _statements(shape: str) -> SimpleNamespace:
    """Statements are built once: building one and computing its cache key on every request
    cost more CPU than executing it. `shape`: how the values are bound (db.one_of)."""
    return SimpleNamespace(
        resolve={
            (by_id, check): _resolve_query(by_id, check, shape)
            for by_id in (True, False)
            for check in (True, False)
        },
        existing=_EXISTING_BY_ARRAY if shape == "array" else select(_txns).where(
            _txns.c.kind == bindparam("kind"),
            _txns.c.program_id == bindparam("program_id"),
            one_of(_txns.c.partner_txn_id, "txn_ids", shape),
        ),
    )


# A batch's duplicate check on PostgreSQL: one unique-index lookup per transaction id.
# WHY not `partner_txn_id = ANY(:txn_ids)`: point_transactions has no statistics until it is
# analyzed (autovacuum may be off, or not yet run), so the planner takes (program_id, kind)
# for selective and checks the array as a filter on every row of the program. In a custom
# plan that filter is hashed (~20 ms at 150k rows, and growing); once psycopg prepares the
# statement (5th execution) PostgreSQL switches to a generic plan, where it is not: 1,000
# comparisons per row, 1.2 s per batch at 150k rows (measured), the multi-second batch
# latencies of bench/earn.py after its single phase. The LIMIT keeps the lateral subquery
# from being flattened into a join, so each id is an equality lookup on all three columns
# of the unique index (program_id, kind, partner_txn_id), whatever the statistics say.
_EXISTING_BY_ARRAY = text(
    "SELECT t.* FROM unnest(CAST(:txn_ids AS VARCHAR[])) AS v(txn_id)"
    " CROSS JOIN LATERAL (SELECT * FROM point_transactions AS p"
    " WHERE p.program_id = :program_id AND p.kind = :kind AND p.partner_txn_id = v.txn_id"
    " LIMIT 1) AS t"
).columns(*_txns.c)


_INSERT_TXN = insert(_txns)


def _resolve(
    session: Session, actor: Actor, refs: list[tuple[str, str, str]], txn_id: str | None = None
) -> _Found:
    """One query per (program code, identifier kind). Given the `txn_id` of a single
    purchase, also notes in `found.free` the program ids where that id is not yet taken."""
    groups: dict[tuple, set[str]] = defaultdict(set)
    for code, kind, value in refs:
        groups[(code, kind)].add(value)
    found = _Found()
    conn = session.connection()
    check_taken = txn_id is not None
    for (code, kind), values in groups.items():
        by_member_id = kind == "member_id"
        shape = values_shape(conn, values)
        values = [uuid.UUID(v) for v in values] if by_member_id else list(values)
        params = {"partner_id": actor.partner_id, "code": code, "values": bind_values(shape, values)}
        if not by_member_id:
            params["kind"] = kind
        if check_taken:
            params["txn_id"] = txn_id
        query = _statements(shape).resolve[(by_member_id, check_taken)]
        rows, _ = run(conn, query, params)
        for row in rows:
            # earn_rate (row[3]) as Decimal: `run` may leave a FixedDecimal as its string.
            found.programs[code] = _Program(row[0], row[1], row[2], Decimal(row[3]), row[4], row[5], row[14],
                                            bool(row[16]))
            if row[15] is not None:
                found.erased.add((code, kind, str(row[6])))
            elif row[6] is not None:
                found.members[(code, kind, str(row[6]))] = (row[7], row[8], row[9], row[13])
                found.accounts.append(AccountInfo(row[8], row[10], row[11], row[12]))
            if check_taken and not row[17]:
                found.free.add((row[0], txn_id))
    return found


def _unknown(found: _Found, item: _Parsed) -> DomainError:
    if (item.program.code, item.kind, item.value) in found.erased:
        return Gone("this member erased their data and left the coalition", slug="member-erased")
    return NotFound(f"no member of {item.program.code} with that {item.kind}", slug="member-not-found")


def _same(txn, item: _Parsed) -> bool:
    return (
        txn.membership_id == item.membership[0]
        and txn.amount_minor == item.amount_minor
        and txn.currency == item.currency
        and txn.occurred_at == item.occurred_at
        and txn.store_id == item.store_id
        and txn.channel == item.channel
        and txn.items == item.items
    )


def earn(session: Session, actor: Actor, bodies: list[tuple[int, dict]]) -> dict[int, ItemResult]:
    """Post purchases; each gets its own result. Refused items write nothing."""
    refs = {index: (body["program"], *_member_ref(session, actor, body)) for index, body in bodies}
    single_txn_id = bodies[0][1]["transaction_id"] if len(bodies) == 1 else None
    found = _resolve(session, actor, list(refs.values()), single_txn_id)
    results: dict[int, ItemResult] = {}
    parsed: list[_Parsed] = []
    for index, body in bodies:
        code, kind, value = refs[index]
        try:
            item = _parse(index, body, kind, value, found.programs.get(code))
        except DomainError as exc:
            results[index] = ItemResult("failed", error=exc)
            continue
        item.membership = found.members.get((code, kind, value))
        parsed.append(item)
    existing = _existing(
        session,
        PURCHASE,
        [
            (p.program.id, p.txn_id)
            for p in parsed
            if p.membership is not None and (p.program.id, p.txn_id) not in found.free
        ],
    )
    fresh: dict[tuple, _Parsed] = {}
    new: list[_Parsed] = []
    for item in parsed:
        key = (item.program.id, item.txn_id)
        if item.membership is None:
            results[item.index] = ItemResult("failed", error=_unknown(found, item))
        elif key in existing or key in fresh:
            prior = existing.get(key) or fresh[key].txn
            if _same(prior, item):
                results[item.index] = ItemResult("duplicate", TxnView(prior, item.program.code, item.membership[2]))
            else:
                results[item.index] = ItemResult(
                    "failed",
                    error=Conflict(
                        f"transaction_id {item.txn_id} was already posted with other content",
                        slug="duplicate-transaction",
                    ),
                )
        else:
            try:
                _rate(session, item)
            except DomainError as exc:
                results[item.index] = ItemResult("failed", error=exc)
                continue
            item.txn = _new_txn(item, actor)
            fresh[key] = item
            new.append(item)
    taking = _settle(session, actor, new)
    _write(session, actor, new, found.accounts, taking)
    effects.purchases_posted(session, actor, [_posted(item) for item in new])
    _announce_earned(session, actor, [item for item in new if item.program.hooked and item.points > 0])
    for item in new:
        results[item.index] = ItemResult("created", TxnView(item.txn, item.program.code, item.membership[2]))
    return results


def _announce_earned(session: Session, actor: Actor, items: list[_Parsed]) -> None:
    """`points.earned` for each new purchase that earned points, to the partner's endpoints."""
    if items:
        webhooks.emit_many(session, actor.partner_id, "points.earned", [{
            "transaction_id": str(item.txn.id), "partner_transaction_id": item.txn_id,
            "member_id": str(item.membership[2]), "program": item.program.code, "points": item.points,
            "occurred_at": item.occurred_at.isoformat(), "rule_version": item.txn.rule_version,
        } for item in items])


def _facts(item: _Parsed) -> rating.PurchaseFacts:
    return rating.PurchaseFacts(item.amount_minor, item.occurred_at, item.store_id, item.channel,
                                tuple((line["category"], line["amount_minor"]) for line in item.items or ()))


def _rate(session: Session, item: _Parsed, usage: rating.Usage = rating.NO_USAGE) -> None:
    """Rate a new purchase by the rules in force at its occurred_at; with none, by the base
    rule alone (and no rating is stored: the program's earn_rate says it all). The rules
    come from the process's cache, keyed by the version number the resolve query read."""
    program = item.program
    if item.member is None:
        item.rules = versions.in_force(session, program.id, item.occurred_at, program.rules_version)
        if item.rules is None:
            item.points = points_for(program, item.amount_minor)
            return
        item.member = rating.MemberFacts(item.membership[3])
    item.rating = rating.rate(program.earn_rate, item.currency, item.rules, _facts(item), item.member, usage)
    item.points = item.rating.points
    if item.txn is not None:
        item.txn.points, item.txn.rating = item.points, item.rating.as_json()


def _settle(session: Session, actor: Actor, items: list[_Parsed]) -> counters.Taking | None:
    """What rating needs beyond the purchase and the member's tier, for the purchases whose
    rules use it, and nothing (no query) for the others: the member's segments (when a
    promotion in force targets segments: one query for all of them), and the counters the
    ratings claim (caps per member and period, promotion budgets).

    A batch claims each counter once, for the sum its purchases want, and shares what it
    granted out in the batch's order; a purchase given less than it wanted is rated again
    with what it got, so it earns exactly that. A single purchase that earns on PostgreSQL
    leaves its counters to be taken by its post's statement (returned: see `_write`)."""
    targeted = [i for i in items if i.rating is not None and rating.compile_rules(i.rules).targets_segments(i.occurred_at)]
    if targeted:
        found = segments_of(session, actor.partner_id, {i.membership[2] for i in targeted})
        for item in targeted:
            item.member = rating.MemberFacts(item.member.tier, frozenset(found.get(item.membership[2], ())))
            _rate(session, item)
    claiming = [i for i in items if i.rating is not None and i.rating.claims]
    if not claiming:
        return None
    caps: dict[tuple, list[int]] = {}  # (membership id, rule id, period) -> [want, cap]
    budgets: dict[tuple, list[int]] = {}  # (program id, promotion id) -> [want, budget, home stripe]
    for item in claiming:
        for claim in item.rating.claims:
            if claim.counter == rating.CAP:
                caps.setdefault((item.membership[0], claim.key, claim.period), [0, claim.limit])[0] += claim.points
            else:
                home = counters.home_stripe(item.membership[0])
                budgets.setdefault((item.program.id, claim.key), [0, claim.limit, home])[0] += claim.points
    if len(items) == 1 and items[0].points > 0:
        taking = counters.gate(session, caps, budgets)
        if taking is not None:
            return taking
    _share(session, claiming, counters.take(session, caps, budgets))
    return None


def _share(session: Session, claiming: list[_Parsed], pool: counters.Granted) -> None:
    """Share what the counters granted out in the purchases' order; rate again each one
    given less than it wanted."""
    for item in claiming:
        given: dict[tuple[str, str, str], int] = {}
        short = False
        for claim in item.rating.claims:
            owner = item.membership[0] if claim.counter == rating.CAP else item.program.id
            key = (claim.counter, owner, claim.key, claim.period)
            give = min(claim.points, pool[key])
            pool[key] -= give
            given[(claim.counter, claim.key, claim.period)] = give
            short = short or give < claim.points
        if short:
            _rate(session, item, rating.Usage(given))


def _existing(session: Session, kind: str, keys: list[tuple]) -> dict[tuple, object]:
    """Transactions of `kind` already posted under these (program id, partner txn id)s, as
    rows with the transaction's attributes."""
    if not keys:
        return {}
    conn = session.connection()
    by_program: dict[uuid.UUID, list[str]] = defaultdict(list)
    for program_id, txn_id in keys:
        by_program[program_id].append(txn_id)
    found = {}
    for program_id, txn_ids in by_program.items():
        shape = values_shape(conn, txn_ids)
        params = {"kind": kind, "program_id": program_id, "txn_ids": bind_values(shape, txn_ids)}
        query = _statements(shape).existing
        for r in conn.execute(query, params).all():
            found[(r.program_id, r.partner_txn_id)] = r
    return found


def _posted(item: _Parsed) -> effects.PostedPurchase:
    return effects.PostedPurchase(
        txn_id=item.txn.id,
        partner_txn_id=item.txn_id,
        program_id=item.program.id,
        program_code=item.program.code,
        issuance_account_id=item.program.issuance_account_id,
        membership_id=item.membership[0],
        member_id=item.membership[2],
        account_id=item.membership[1],
        amount_minor=item.amount_minor,
        currency=item.currency,
        occurred_at=item.occurred_at,
        store_id=item.store_id,
        channel=item.channel,
        items=tuple(effects.Item(**line) for line in item.items or ()),
        points=item.points,
        rules=item.rules,
    )


def _new_txn(item: _Parsed, actor: Actor) -> SimpleNamespace:
    """The new row: one attribute per column of point_transactions, no more, no fewer."""
    return SimpleNamespace(
        id=uuid.uuid4(),
        kind=PURCHASE,
        program_id=item.program.id,
        membership_id=item.membership[0],
        partner_txn_id=item.txn_id,
        amount_minor=item.amount_minor,
        currency=item.currency,
        occurred_at=item.occurred_at,
        store_id=item.store_id,
        channel=item.channel,
        items=item.items,
        points=item.points,
        rule_version=item.rules.version if item.rules is not None else None,
        rating=item.rating.as_json() if item.rating is not None else None,
        purchase_id=None,
        points_shortfall=0,
        refunded_minor=0,
        points_reversed=0,
        transfer_id=None,
        client_id=actor.client_id,
        created_at=utcnow(),
    )


def _write(
    session: Session, actor: Actor, items: list[_Parsed], accounts: list[AccountInfo],
    taking: counters.Taking | None = None,
) -> None:
    """Post the purchases' earns and insert them. With `taking` (a single purchase's
    counters, from `_settle`), its earn is posted by the statement that takes them, if they
    grant all it claims; else it is rated again with what they granted, and posted so."""
    posted = taking is not None and _post_taking(session, actor, items[0], accounts, taking)
    earning = [i for i in items if i.points > 0 and not posted]
    transfer_ids = ledger.post(session, [_earn(i, actor) for i in earning], known=accounts)
    for item, transfer_id in zip(earning, transfer_ids):
        item.txn.transfer_id = transfer_id
    # A purchase earning nothing moves no balance, whose update would refuse an account
    # closed by an erasure that committed after _resolve read the member: check it instead.
    ledger.require_open(session, [i.membership[1] for i in items if i.points <= 0])
    rows = [vars(i.txn) for i in items]  # _new_txn sets exactly the table's columns
    if rows:
        conn = session.connection()
        if len(rows) == 1:
            run(conn, _INSERT_TXN, rows[0])
        else:
            insert_many(conn, _txns, rows)  # values are plain: UUIDs, aware datetimes


def _post_taking(session: Session, actor: Actor, item: _Parsed, accounts: list[AccountInfo],
                 taking: counters.Taking) -> bool:
    """Post the item's earn in the statement that takes its counters: whether they granted
    all it claims (else nothing is posted and it is rated again with what they granted)."""
    transfer_id, rows = ledger.post_gated(session, _earn(item, actor), taking, known=accounts)
    if transfer_id is None:
        _share(session, [item], counters.granted(session, taking, rows))
        return False
    item.txn.transfer_id = transfer_id
    return True


def _earn(item: _Parsed, actor: Actor) -> ledger.TransferSpec:
    return ledger.TransferSpec(
        debit=item.program.issuance_account_id,
        credit=item.membership[1],
        amount=item.points,
        code=EARN,
        ledger=item.program.id,
        caused_by=actor.ref,
        ref_type="transaction",
        ref_id=str(item.txn.id),
    )


# --- returns ---------------------------------------------------------------------------

def _find_purchase(session: Session, actor: Actor, ref: dict) -> tuple[PointTransaction, Program]:
    q = (
        select(PointTransaction, Program)
        .join(Program, Program.id == PointTransaction.program_id)
        .where(Program.partner_id == actor.partner_id, PointTransaction.kind == PURCHASE)
        .with_for_update(of=PointTransaction)
    )
    if set(ref) == {"id"}:
        q = q.where(PointTransaction.id == uuid.UUID(ref["id"]))
    elif set(ref) == {"program", "transaction_id"}:
        q = q.where(Program.code == ref["program"], PointTransaction.partner_txn_id == ref["transaction_id"])
    else:
        raise Invalid(
            "purchase needs either id, or program and transaction_id", slug="invalid-purchase-ref"
        )
    row = session.execute(q).first()
    if row is None:
        raise NotFound("no such purchase", slug="purchase-not-found")
    return row[0], row[1]


def reverse(session: Session, actor: Actor, body: dict) -> tuple[bool, TxnView]:
    """Post a return. Returns (created, view); a repeat of the same return is not created."""
    purchase, program = _find_purchase(session, actor, body["purchase"])
    refuse_hosted(program)
    member_id = session.scalar(select(Membership.member_id).where(Membership.id == purchase.membership_id))
    refuse_erased(session, member_id)
    if body["currency"] != purchase.currency:
        money.exponent(body["currency"])
        raise Invalid(f"the purchase was in {purchase.currency}", slug="currency-mismatch")
    amount = money.to_minor(body["amount"], body["currency"])
    if amount <= 0:
        raise Invalid("amount must be greater than zero", slug="invalid-amount")
    occurred_at = parse_time(body["occurred_at"])
    if occurred_at < purchase.occurred_at:
        raise Invalid("a return cannot happen before its purchase", slug="return-before-purchase")
    prior = _existing(session, RETURN, [(program.id, body["return_id"])]).get((program.id, body["return_id"]))
    if prior is not None:
        if (prior.purchase_id, prior.amount_minor, prior.occurred_at, prior.store_id) == (
            purchase.id, amount, occurred_at, body.get("store_id")
        ):
            return False, TxnView(prior, program.code, member_id)
        raise Conflict(f"return_id {body['return_id']} was already posted with other content", slug="duplicate-transaction")
    refunded = purchase.refunded_minor + amount
    if refunded > purchase.amount_minor:
        raise Invalid(
            f"returns would total {money.to_major(refunded, purchase.currency)}, more than the "
            f"purchase's {money.to_major(purchase.amount_minor, purchase.currency)}",
            slug="return-exceeds-purchase",
        )
    # Points kept are those the unreturned amount earns in proportion; the rest is reversed.
    kept = purchase.points * (purchase.amount_minor - refunded) // purchase.amount_minor
    due = purchase.points - kept - purchase.points_reversed
    account_id = session.scalar(select(Membership.account_id).where(Membership.id == purchase.membership_id))
    take = 0
    if due > 0:
        take = min(due, ledger.available_locked(session, [account_id])[account_id])
    if not take:  # no reversal to be refused if an erasure closed the account meanwhile
        ledger.require_open(session, [account_id])
    txn = PointTransaction(
        id=uuid.uuid4(),
        kind=RETURN,
        program_id=program.id,
        membership_id=purchase.membership_id,
        partner_txn_id=body["return_id"],
        amount_minor=amount,
        currency=purchase.currency,
        occurred_at=occurred_at,
        store_id=body.get("store_id"),
        points=take,
        purchase_id=purchase.id,
        points_shortfall=due - take if due > 0 else 0,
        client_id=actor.client_id,
        created_at=utcnow(),
    )
    if take:
        (txn.transfer_id,) = ledger.post(
            session,
            [
                ledger.TransferSpec(
                    debit=account_id,
                    credit=program.issuance_account_id,
                    amount=take,
                    code=REVERSAL,
                    ledger=program.id,
                    caused_by=actor.ref,
                    ref_type="transaction",
                    ref_id=str(txn.id),
                )
            ],
        )
    purchase.refunded_minor = refunded
    purchase.points_reversed += max(due, 0)
    session.add(txn)
    session.flush()
    if take:
        webhooks.emit(session, program.partner_id, "points.reversed", {
            "transaction_id": str(txn.id), "partner_return_id": txn.partner_txn_id,
            "purchase_id": str(purchase.id), "member_id": str(member_id), "program": program.code,
            "points": take, "points_shortfall": txn.points_shortfall,
        })
    effects.purchase_returned(session, actor, effects.ReturnedPurchase(
        purchase.id, program.id, program.issuance_account_id, purchase.membership_id, purchase.occurred_at,
        max(due, 0), amount, refunded == purchase.amount_minor,
        versions.in_force(session, program.id, purchase.occurred_at)))
    return True, TxnView(txn, program.code, member_id)


def get(session: Session, actor: Actor, txn_id: uuid.UUID) -> TxnView:
    row = session.execute(
        select(PointTransaction, Program.code, Membership.member_id)
        .join(Program, Program.id == PointTransaction.program_id)
        .join(Membership, Membership.id == PointTransaction.membership_id)
        .where(PointTransaction.id == txn_id, Program.partner_id == actor.partner_id)
    ).first()
    if row is None:
        raise NotFound("no such transaction", slug="transaction-not-found")
    return TxnView(*row)
