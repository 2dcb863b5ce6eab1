"""`hub ledger verify`: prove every ledger rule from the stored transfers.

Checks, each reported with the offending ids:
- every transfer's accounts exist, differ, and are on the transfer's ledger (no foreign key
  enforces that they exist: migration 0003);
- every point transaction's program exists (the same);
- per ledger, debits equal credits, posted and pending separately;
- every cached balance equals the fold of its transfers;
- no no-overdraft account is below zero;
- every post/void resolves a pending transfer on the same accounts, at most once, and a post
  never exceeds what was reserved.
Reservations past their timeout and still unresolved are reported as warnings.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Uuid, column, func, select, table
from sqlalchemy.orm import Session, aliased

from hub.db import utcnow
from hub.ledger.models import PENDING, POST_PENDING, VOID_PENDING, Account, Transfer
from hub.ledger.service import fold


@dataclass
class Report:
    transfers: int = 0
    accounts: int = 0
    ledgers: int = 0
    violations: list[str] = field(default_factory=list)
    # Not broken rules, but work for someone: reservations past their timeout.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def verify(session: Session) -> Report:
    report = Report()
    debit = aliased(Account)
    credit = aliased(Account)
    bad_accounts = session.execute(
        select(Transfer.id)
        .outerjoin(debit, debit.id == Transfer.debit_account_id)
        .outerjoin(credit, credit.id == Transfer.credit_account_id)
        .where(
            debit.id.is_(None)
            | credit.id.is_(None)
            | (debit.ledger != Transfer.ledger)
            | (credit.ledger != Transfer.ledger)
            | (Transfer.debit_account_id == Transfer.credit_account_id)
            | (Transfer.amount <= 0)
        )
    ).scalars().all()
    for tid in bad_accounts:
        report.violations.append(
            f"transfer {tid}: an account is missing, off its ledger or the same, or amount <= 0"
        )

    # The purchases and returns that moved points (hub/programs), by table name only: the
    # ledger does not import the layer above it.
    txns = table("point_transactions", column("id", Uuid), column("program_id", Uuid))
    programs = table("programs", column("id", Uuid))
    orphans = session.execute(
        select(txns.c.id)
        .outerjoin(programs, programs.c.id == txns.c.program_id)
        .where(programs.c.id.is_(None))
    ).scalars().all()
    for txn_id in orphans:
        report.violations.append(f"point transaction {txn_id}: its program does not exist")

    pending = aliased(Transfer)
    resolutions = session.execute(
        select(Transfer.id, Transfer.phase, Transfer.amount, pending.phase, pending.amount,
               Transfer.debit_account_id != pending.debit_account_id,
               Transfer.credit_account_id != pending.credit_account_id)
        .outerjoin(pending, pending.id == Transfer.pending_id)
        .where(Transfer.phase.in_((POST_PENDING, VOID_PENDING)))
    )
    for tid, phase, amount, p_phase, p_amount, other_debit, other_credit in resolutions:
        if p_phase != PENDING:
            report.violations.append(f"transfer {tid}: {phase} does not resolve a pending transfer")
        elif other_debit or other_credit:
            report.violations.append(f"transfer {tid}: resolves a reservation of other accounts")
        elif amount > p_amount:
            report.violations.append(f"transfer {tid}: posts {amount} of a {p_amount} reservation")

    folded = fold(session)
    totals: dict = defaultdict(lambda: [0, 0, 0, 0])
    accounts = session.execute(select(Account).execution_options(yield_per=2000))
    for (account,) in accounts:
        report.accounts += 1
        f = folded.get(account.id)
        f_tuple = (f.debits_pending, f.debits_posted, f.credits_pending, f.credits_posted) if f else (0, 0, 0, 0)
        t = totals[account.ledger]
        for i, v in enumerate(f_tuple):
            t[i] += v
        if account.cached:
            cached = (account.debits_pending, account.debits_posted,
                      account.credits_pending, account.credits_posted)
            if cached != f_tuple:
                report.violations.append(
                    f"account {account.id}: cached {cached} != folded {f_tuple}"
                )
        if account.no_overdraft and f_tuple[3] - f_tuple[1] - f_tuple[0] < 0:
            report.violations.append(f"account {account.id}: below zero")
    report.ledgers = len(totals)
    for ledger, (dp, dpo, cp, cpo) in totals.items():
        if dp != cp or dpo != cpo:
            report.violations.append(
                f"ledger {ledger}: debits {dpo}/{dp} != credits {cpo}/{cp} (posted/pending)"
            )
    resolver = aliased(Transfer)
    overdue = session.execute(
        select(Transfer.id)
        .outerjoin(resolver, resolver.pending_id == Transfer.id)
        .where(Transfer.phase == PENDING, resolver.id.is_(None), Transfer.timeout_at < utcnow())
    ).scalars()
    report.warnings.extend(f"transfer {tid}: reservation past its timeout, unresolved" for tid in overdue)
    report.transfers = session.scalar(select(func.count()).select_from(Transfer)) or 0
    return report
