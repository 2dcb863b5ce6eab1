"""Points issued and redeemed per program over time, for the ops console's charts.

Issued: posted transfers out of a program's issuance account; redeemed: posted transfers
into its redemption account. A reservation counts once it is posted (its post_pending
transfer, dated when it was posted), never while pending nor once voided. Summed in the
database, one GROUP BY per direction, by UTC day or month.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.ledger.models import POST_PENDING, POSTED, Transfer
from hub.programs.models import Program

DAY, MONTH = "day", "month"
SPANS = {DAY: 30, MONTH: 12}  # buckets shown: the last 30 days, the last 12 months


@dataclass(frozen=True)
class Bucket:
    label: str  # YYYY-MM-DD or YYYY-MM (UTC)
    issued: int
    redeemed: int


@dataclass(frozen=True)
class ProgramActivity:
    program: str
    buckets: list[Bucket]  # oldest first, every bucket of the span (zero when nothing moved)


def labels(grain: str, now: datetime) -> list[str]:
    """The span's bucket labels, oldest first, ending with the one holding `now`."""
    if grain == DAY:
        return [(now - timedelta(days=back)).strftime("%Y-%m-%d") for back in range(SPANS[DAY] - 1, -1, -1)]
    months = now.year * 12 + now.month - 1
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(months - SPANS[MONTH] + 1, months + 1)]


def _start(grain: str, now: datetime) -> datetime:
    first = labels(grain, now)[0]
    return datetime.strptime(first if grain == DAY else first + "-01", "%Y-%m-%d").replace(tzinfo=now.tzinfo)


def _bucket(dialect: str, grain: str, column):
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD" if grain == DAY else "YYYY-MM")
    return func.strftime("%Y-%m-%d" if grain == DAY else "%Y-%m", column)  # SQLite keeps UTC


def activity(session: Session, grain: str, now: datetime, partner_id: uuid.UUID | None = None) -> list[ProgramActivity]:
    """Every program's issued and redeemed points per bucket (of one partner's programs when
    `partner_id` is given), by program code."""
    if grain not in SPANS:
        raise ValueError(f"grain is one of {', '.join(SPANS)}")
    bucket = _bucket(session.get_bind().dialect.name, grain, Transfer.created_at).label("bucket")
    programs = select(Program.code, Program.issuance_account_id, Program.redemption_account_id)
    if partner_id is not None:
        programs = programs.where(Program.partner_id == partner_id)
    programs = programs.subquery()
    sums: dict[tuple[str, str], list[int]] = {}
    for side, account in ((0, Transfer.debit_account_id == programs.c.issuance_account_id),
                          (1, Transfer.credit_account_id == programs.c.redemption_account_id)):
        rows = session.execute(
            select(programs.c.code, bucket, func.sum(Transfer.amount))
            .join_from(Transfer, programs, account)
            .where(Transfer.phase.in_((POSTED, POST_PENDING)), Transfer.created_at >= _start(grain, now))
            .group_by(programs.c.code, bucket)
        )
        for code, label, amount in rows:
            sums.setdefault((code, label), [0, 0])[side] = int(amount)
    codes = session.scalars(select(programs.c.code).order_by(programs.c.code)).all()
    return [ProgramActivity(code, [Bucket(label, *sums.get((code, label), (0, 0))) for label in labels(grain, now)])
            for code in codes]
