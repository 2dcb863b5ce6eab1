"""Earning from purchases and reversing points on returns.

A single purchase is a batch of one, so both paths share every rule. A batch resolves its
members and duplicates with one query per program and identifier kind, then writes all its
transfers and transactions in bulk, in one database transaction.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from hub import ledger, money
from hub.actor import Actor
from hub.db import utcnow
from hub.errors import Conflict, DomainError, Invalid, NotFound
from hub.ledger.models import Account
from hub.programs.models import (
    Membership,
    MembershipIdentifier,
    PointTransaction,
    Program,
)
from hub.programs.service import normalise

EARN = "earn"
REVERSAL = "reversal"
PURCHASE = "purchase"
RETURN = "return"
# Generous, but far below what a BIGINT holds: a bigger figure is a bug upstream.
MAX_POINTS = 10**12
# A POS clock may run a little fast; a purchase further in the future is a mistake.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class TxnView:
    txn: PointTransaction
    program: str
    member_id: uuid.UUID


@dataclass
class ItemResult:
    status: str  # created | duplicate | failed
    view: TxnView | None = None
    error: DomainError | None = None


@dataclass
class _Parsed:
    index: int
    program: Program
    kind: str
    value: str
    txn_id: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    store_id: str | None
    membership: tuple | None = None  # (membership_id, account_id, member_id)
    points: int = 0
    txn: PointTransaction | None = None


def points_for(program: Program, amount_minor: int) -> int:
    """Base earn rule: floor(amount in major units x points per unit)."""
    with localcontext() as ctx:
        ctx.prec = 60
        major = Decimal(amount_minor).scaleb(-money.exponent(program.earn_currency))
        points = int((major * program.earn_rate).to_integral_value(rounding=ROUND_FLOOR))
    if points > MAX_POINTS:
        raise Invalid(f"a purchase may earn at most {MAX_POINTS} points", slug="invalid-amount")
    return points


def parse_time(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not an RFC 3339 date-time", slug="invalid-time") from exc
    if when.tzinfo is None:
        raise Invalid("occurred_at needs a time zone (e.g. Z)", slug="invalid-time")
    if when > utcnow() + CLOCK_SKEW:
        raise Invalid("occurred_at is in the future", slug="invalid-time")
    return when


def _amount(body: dict, currency_expected: str) -> int:
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


def _parse(index: int, body: dict, programs: dict[str, Program]) -> _Parsed:
    program = programs.get(body["program"])
    if program is None:
        raise NotFound(f"no program {body['program']}", slug="program-not-found")
    ((kind, value),) = body["member"].items()
    return _Parsed(
        index=index,
        program=program,
        kind=kind,
        value=normalise(kind, value),
        txn_id=body["transaction_id"],
        amount_minor=_amount(body, program.earn_currency),
        currency=body["currency"],
        occurred_at=parse_time(body["occurred_at"]),
        store_id=body.get("store_id"),
    )


def _resolve(session: Session, items: list[_Parsed]) -> None:
    """Fill in each item's membership, one query per (program, identifier kind)."""
    groups: dict[tuple, list[_Parsed]] = defaultdict(list)
    for item in items:
        groups[(item.program.id, item.kind)].append(item)
    for (program_id, kind), group in groups.items():
        values = {i.value for i in group}
        cols = (Membership.id, Membership.account_id, Membership.member_id)
        if kind == "member_id":
            q = select(Membership.member_id, *cols).where(
                Membership.program_id == program_id,
                Membership.member_id.in_([_uuid(v) for v in values]),
            )
            found = {str(r[0]): tuple(r[1:]) for r in session.execute(q)}
        else:
            q = (
                select(MembershipIdentifier.value, *cols)
                .join(Membership, Membership.id == MembershipIdentifier.membership_id)
                .where(
                    MembershipIdentifier.program_id == program_id,
                    MembershipIdentifier.kind == kind,
                    MembershipIdentifier.value.in_(values),
                )
            )
            found = {r[0]: tuple(r[1:]) for r in session.execute(q)}
        for item in group:
            item.membership = found.get(item.value)


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def _same(txn: PointTransaction, item: _Parsed) -> bool:
    return (
        txn.membership_id == item.membership[0]
        and txn.amount_minor == item.amount_minor
        and txn.currency == item.currency
        and txn.occurred_at == item.occurred_at
        and txn.store_id == item.store_id
    )


def earn(session: Session, actor: Actor, bodies: list[tuple[int, dict]]) -> dict[int, ItemResult]:
    """Post purchases; each gets its own result. Refused items write nothing."""
    programs = {
        p.code: p for p in session.scalars(select(Program).where(Program.partner_id == actor.partner_id))
    }
    results: dict[int, ItemResult] = {}
    parsed: list[_Parsed] = []
    for index, body in bodies:
        try:
            parsed.append(_parse(index, body, programs))
        except DomainError as exc:
            results[index] = ItemResult("failed", error=exc)
    _resolve(session, parsed)
    existing = _existing(session, PURCHASE, [(p.program.id, p.txn_id) for p in parsed])
    fresh: dict[tuple, _Parsed] = {}
    new: list[_Parsed] = []
    for item in parsed:
        key = (item.program.id, item.txn_id)
        if item.membership is None:
            results[item.index] = ItemResult(
                "failed",
                error=NotFound(
                    f"no member of {item.program.code} with that {item.kind}",
                    slug="member-not-found",
                ),
            )
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
                item.points = points_for(item.program, item.amount_minor)
            except DomainError as exc:
                results[item.index] = ItemResult("failed", error=exc)
                continue
            item.txn = _new_txn(item, actor)
            fresh[key] = item
            new.append(item)
    _write(session, actor, new)
    for item in new:
        results[item.index] = ItemResult("created", TxnView(item.txn, item.program.code, item.membership[2]))
    return results


def _existing(session: Session, kind: str, keys: list[tuple]) -> dict[tuple, PointTransaction]:
    if not keys:
        return {}
    rows = session.scalars(
        select(PointTransaction).where(
            PointTransaction.kind == kind,
            tuple_(PointTransaction.program_id, PointTransaction.partner_txn_id).in_(keys),
        )
    )
    return {(t.program_id, t.partner_txn_id): t for t in rows}


def _new_txn(item: _Parsed, actor: Actor) -> PointTransaction:
    return PointTransaction(
        id=uuid.uuid4(),
        kind=PURCHASE,
        program_id=item.program.id,
        membership_id=item.membership[0],
        partner_txn_id=item.txn_id,
        amount_minor=item.amount_minor,
        currency=item.currency,
        occurred_at=item.occurred_at,
        store_id=item.store_id,
        points=item.points,
        purchase_id=None,
        points_shortfall=0,
        refunded_minor=0,
        points_reversed=0,
        transfer_id=None,
        client_id=actor.client_id,
        created_at=utcnow(),
    )


def _write(session: Session, actor: Actor, items: list[_Parsed]) -> None:
    earning = [i for i in items if i.points > 0]
    transfer_ids = ledger.post(
        session,
        [
            ledger.TransferSpec(
                debit=i.program.issuance_account_id,
                credit=i.membership[1],
                amount=i.points,
                code=EARN,
                ledger=i.program.id,
                caused_by=actor.ref,
                ref_type="transaction",
                ref_id=str(i.txn.id),
            )
            for i in earning
        ],
    )
    for item, transfer_id in zip(earning, transfer_ids):
        item.txn.transfer_id = transfer_id
    if items:
        columns = [c.key for c in PointTransaction.__table__.columns]
        session.execute(
            insert(PointTransaction),
            [{c: getattr(i.txn, c) for c in columns} for i in items],
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
        q = q.where(PointTransaction.id == _uuid(ref["id"]))
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
    member_id = session.scalar(select(Membership.member_id).where(Membership.id == purchase.membership_id))
    if body["currency"] != purchase.currency:
        money.exponent(body["currency"])
        raise Invalid(f"the purchase was in {purchase.currency}", slug="currency-mismatch")
    amount = money.to_minor(body["amount"], body["currency"])
    if amount <= 0:
        raise Invalid("amount must be greater than zero", slug="invalid-amount")
    occurred_at = parse_time(body["occurred_at"])
    prior = _existing(session, RETURN, [(program.id, body["return_id"])]).get((program.id, body["return_id"]))
    if prior is not None:
        if prior.purchase_id == purchase.id and prior.amount_minor == amount and prior.occurred_at == occurred_at:
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
        held = session.execute(
            select(Account.credits_posted - Account.debits_posted - Account.debits_pending)
            .where(Account.id == account_id)
            .with_for_update()
        ).scalar_one()
        take = min(due, max(held, 0))
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
