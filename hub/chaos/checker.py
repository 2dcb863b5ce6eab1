"""The bank test's invariants, checked against the database and the providers' own records
once every process is healthy again. Each returns human-readable violations (none: it holds)."""
from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.chaos.workload import Op
from hub.exchange.models import Conversion
from hub.ledger.models import PENDING, POST_PENDING, VOID_PENDING, Transfer
from hub.ledger.verify import verify
from hub.notify.outbox import OutboxMessage
from hub.programs.models import PointTransaction
from hub.rewards.models import Redemption
from hub.rewards.redemptions import reference


def check(session: Session, ops: list[Op], provider_orders: dict[str, dict]) -> list[str]:
    report = verify(session)
    violations = [f"ledger verify: {v}" for v in report.violations]
    transfers = _transfers(session)
    violations += _transactions(session, ops, transfers)
    violations += _conversions(session, ops, transfers)
    violations += _redemptions(session, ops, transfers, provider_orders)
    violations += _outbox(session)
    return violations


def _transfers(session: Session) -> dict[tuple[str, str], list[Transfer]]:
    by_ref: dict[tuple[str, str], list[Transfer]] = defaultdict(list)
    for t in session.scalars(select(Transfer).where(Transfer.ref_type.in_(("transaction", "conversion", "redemption")))):
        by_ref[(t.ref_type, t.ref_id)].append(t)
    return by_ref


def _transactions(session: Session, ops: list[Op], transfers) -> list[str]:
    """Purchases and returns: acked ones exactly once with their points, refused ones absent,
    indeterminate ones at most once; each one's points moved by exactly one transfer."""
    violations = []
    ids = {op.body.get("transaction_id") or op.body["return_id"]: op for op in ops if op.kind in ("purchase", "return")}
    rows = {}
    for chunk in _chunks(list(ids)):
        rows.update((r.partner_txn_id, r) for r in session.scalars(
            select(PointTransaction).where(PointTransaction.partner_txn_id.in_(chunk))))
    for txn_id, op in ids.items():
        row = rows.get(txn_id)
        if op.status == "acked":
            if row is None:
                violations.append(f"acknowledged {op.kind} {txn_id} is missing")
                continue
            if str(row.id) != op.result["id"] or row.points != op.result["points"]:
                violations.append(f"acknowledged {op.kind} {txn_id}: answered {op.result['points']} points, "
                                  f"the hub holds {row.points}")
        elif op.status == "refused" and row is not None:
            violations.append(f"refused {op.kind} {txn_id} ({op.http_status}) was recorded")
        if row is not None:
            moved = transfers.get(("transaction", str(row.id)), [])
            if len(moved) != (1 if row.points else 0) or sum(t.amount for t in moved) != row.points:
                violations.append(f"{op.kind} {txn_id}: {row.points} points but transfers "
                                  f"{[t.amount for t in moved]}")
    return violations


def _answered(ops: list[Op], kind: str) -> tuple[dict[str, Op], int]:
    """The acknowledged operations of a kind by the id they answered, and how many were in doubt."""
    acked = {op.result["id"]: op for op in ops if op.kind == kind and op.status == "acked"}
    return acked, sum(1 for op in ops if op.kind == kind and op.status == "indeterminate")


def _conversions(session: Session, ops: list[Op], transfers) -> list[str]:
    """Between two hub programs a conversion completes at once: two linked transfers (out of
    one program, into the other), and no more conversions than were attempted."""
    violations = []
    acked, maybe = _answered(ops, "convert")
    rows = {str(c.id): c for c in session.scalars(select(Conversion))}
    for conversion_id, op in acked.items():
        if conversion_id not in rows:
            violations.append(f"acknowledged conversion {conversion_id} is missing")
    for conversion_id, c in rows.items():
        legs = sorted(t.amount for t in transfers.get(("conversion", conversion_id), []))
        if c.state != "completed" or legs != sorted((c.points_in, c.points_out)):
            violations.append(f"conversion {conversion_id}: {c.state}, legs {legs} for {c.points_in}/{c.points_out}")
        op = acked.get(conversion_id)
        if op and (op.result["points"], op.result["receive"]) != (c.points_in, c.points_out):
            violations.append(f"conversion {conversion_id}: answered {op.result['points']}->{op.result['receive']}, "
                              f"the hub holds {c.points_in}->{c.points_out}")
    unasked = len(rows.keys() - acked.keys())
    if unasked > maybe:
        violations.append(f"{unasked} conversions not acknowledged, but only {maybe} were in doubt")
    return violations


def _redemptions(session: Session, ops: list[Op], transfers, provider_orders: dict[str, dict]) -> list[str]:
    """Every order settled: fulfilled (placed exactly once at its provider, points posted) or
    failed (never delivered, points back); none the clients did not ask for."""
    violations = []
    acked, maybe = _answered(ops, "redeem")
    rows = {str(r.id): r for r in session.scalars(select(Redemption))}
    for redemption_id, op in acked.items():
        if redemption_id not in rows:
            violations.append(f"acknowledged redemption {redemption_id} is missing")
        elif op.result["points"] != rows[redemption_id].points:
            violations.append(f"redemption {redemption_id}: answered {op.result['points']} points, "
                              f"the hub holds {rows[redemption_id].points}")
    for redemption_id, r in rows.items():
        order = provider_orders.get(r.provider, {}).get(reference(uuid.UUID(redemption_id)))
        moved = transfers.get(("redemption", redemption_id), [])
        phases = sorted(t.phase for t in moved)
        if any(t.amount != r.points for t in moved):
            violations.append(f"redemption {redemption_id}: {r.points} points but transfers {[t.amount for t in moved]}")
        if r.state == "fulfilled":
            ok = (order is not None and order["placements"] == 1 and order["status"] == "fulfilled"
                  and phases == [PENDING, POST_PENDING])
        elif r.state == "failed":
            ok = (order is None or order["status"] in ("refused", "failed")) and phases == [PENDING, VOID_PENDING]
        else:
            ok = False
        if not ok:
            violations.append(f"redemption {redemption_id}: {r.state}, provider {order}, ledger phases {phases}")
    unasked = len(rows.keys() - acked.keys())
    if unasked > maybe:
        violations.append(f"{unasked} redemptions not acknowledged, but only {maybe} were in doubt")
    return violations


def _outbox(session: Session) -> list[str]:
    left = session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.done_at.is_(None)))
    return [f"outbox not drained: {left} messages not done"] if left else []


def unsettled(session: Session) -> int:
    """Orders still in flight plus outbox messages not done: the settle period waits for 0."""
    pending = session.scalar(select(func.count()).select_from(Redemption).where(Redemption.state == "pending"))
    return pending + len(_outbox(session))


def _chunks(items: list, size: int = 500):
    for i in range(0, len(items), size):
        yield items[i:i + size]
