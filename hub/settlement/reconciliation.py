"""Providers' reports matched against the hub's orders (issue 9; docs/reconciliation.md).

A report is one provider's CSV in its own layout, read by the parser its connector registers
(hub.rewards.providers.report_parser). Importing it makes a run: each report line is matched
to the hub's redemption by our reference and classified, the hub's orders the provider
should have had in the report's period but did not list are added, and every line that is
not `matched` becomes an exception for ops to resolve. The whole import is one transaction
and refused whole on any unreadable cell; the same file (provider + sha256) imports once.
"""
from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, timezone
from typing import IO

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub import pagination
from hub.audit import review_notes, trail
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.rewards import redemptions
from hub.rewards.models import FAILED, FULFILLED, NEEDS_REVIEW, PENDING, Redemption
from hub.rewards.providers import ReportLayoutUnknown, ReportLine, ReportMalformed, Status, report_parser, report_parsers
from hub.settlement.reconciliation_models import (
    AMOUNT_MISMATCH, CLASSES, MATCHED, MISSING_AT_PROVIDER, MISSING_IN_HUB, OPEN, RESOLUTIONS, RESOLVED,
    STATUS_MISMATCH, ReconciliationException, ReconciliationLine, ReconciliationRun,
)

# The provider's word on an order -> the hub state that agrees with it. A hub order in
# review agrees with nothing: the report is what ops need to settle it.
_AGREES = {Status.FULFILLED: FULFILLED, Status.FAILED: FAILED, Status.PENDING: PENDING}
# Hub orders the provider may hold: fulfilled, or possibly placed and not yet settled.
_MAYBE_AT_PROVIDER = (PENDING, NEEDS_REVIEW)
_CHUNK = 500  # references per IN (...) query


@dataclass(frozen=True)
class Period:
    """The hub's orders created in [start, end) are expected in the report."""

    start: datetime
    end: datetime


def import_report(session: Session, provider: str, report: str | bytes | IO, actor_ref: str,
                  period: Period | None = None,
                  progress: Callable[[int], None] | None = None) -> tuple[ReconciliationRun, bool]:
    """Import one provider's report: (the run, True), or (the run of the same file imported
    before, False). `period` defaults to the whole days the report's orders span. `progress`
    is told each line read. Writes nothing unless every line reads."""
    parser = report_parser(provider)
    if parser is None:
        known = ", ".join(sorted(report_parsers())) or "none"
        raise Invalid(f"no report layout for provider {provider!r} (known: {known})", slug="unknown-report-layout")
    text = _text(report)
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    before = session.scalar(select(ReconciliationRun).where(
        ReconciliationRun.provider == provider, ReconciliationRun.sha256 == sha256))
    if before is not None:
        return before, False
    lines = _read(parser, provider, io.StringIO(text, newline=""), progress)
    period = period or _days_of(lines)
    if period is not None and period.start >= period.end:
        raise Invalid("the period must end after it starts", slug="invalid-period")
    rows = classify(lines, _orders(session, provider, lines), _expected(session, provider, period))
    run = ReconciliationRun(
        provider=provider, sha256=sha256, period_start=period and period.start, period_end=period and period.end,
        report_lines=len(lines), created_by=actor_ref, created_at=utcnow(),
        **{name: sum(1 for r in rows if r.outcome == name) for name in CLASSES},
    )
    session.add(run)
    session.flush()
    for row in rows:
        row.run_id = run.id
    session.add_all(rows)
    session.flush()
    session.add_all([ReconciliationException(run_id=run.id, line_id=row.id, kind=row.outcome, status=OPEN,
                                             created_at=run.created_at)
                     for row in rows if row.outcome != MATCHED])
    session.flush()
    trail.record(session, actor=actor_ref, action="reconciliation.import", target=f"reconciliation_run:{run.id}",
                 after={"provider": provider, "sha256": sha256, "report_lines": run.report_lines,
                        **{name: getattr(run, name) for name in CLASSES}})
    return run, True


def classify(lines: list[ReportLine], orders: dict[str, Redemption],
             expected: Iterable[Redemption]) -> list[ReconciliationLine]:
    """The report's lines against the hub's orders by reference, then the expected orders
    the report lacks. `orders`: the hub's orders the report names, by reference."""
    rows = [_compare(line, orders.get(line.reference)) for line in lines]
    listed = {line.reference for line in lines}
    for order in expected:
        reference = redemptions.reference(order.id)
        if reference not in listed:
            rows.append(ReconciliationLine(outcome=MISSING_AT_PROVIDER, reference=reference, **_hub_side(order)))
    return rows


def _compare(line: ReportLine, order: Redemption | None) -> ReconciliationLine:
    if order is None:
        outcome = MISSING_IN_HUB
    elif (line.amount_minor, line.currency) != (order.amount_minor, order.currency):
        outcome = AMOUNT_MISMATCH  # money first: a line is one class, and this one costs
    elif _AGREES[line.status] != order.state:
        outcome = STATUS_MISMATCH
    else:
        outcome = MATCHED
    return ReconciliationLine(
        outcome=outcome, reference=line.reference, line_no=line.line, provider_order_id=line.provider_order_id,
        provider_amount_minor=line.amount_minor, provider_currency=line.currency,
        provider_status=line.status.value, occurred_at=line.occurred_at,
        **(_hub_side(order) if order is not None else {}))


def _hub_side(order: Redemption) -> dict:
    return {"redemption_id": order.id, "hub_amount_minor": order.amount_minor, "hub_currency": order.currency,
            "hub_state": order.state}


def _text(report: str | bytes | IO) -> str:
    data = report if isinstance(report, (str, bytes)) else report.read()
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(f"the report is not UTF-8 text (byte {exc.start})", slug="malformed-report") from exc
    return data.removeprefix("\ufeff")


def _read(parser, provider: str, lines: Iterable[str], progress: Callable[[int], None] | None) -> list[ReportLine]:
    read = []
    try:
        for line in parser(lines):
            # Matched on our one spelling: "RDMABC…" is the same order as "rdmabc…".
            read.append(replace(line, reference=redemptions.canonical_reference(line.reference)))
            if progress is not None:
                progress(line.line)
    except ReportLayoutUnknown as exc:
        raise Invalid(f"not a {provider} report: {exc}", slug="unknown-report-layout",
                      missing_columns=exc.missing) from exc
    except ReportMalformed as exc:
        raise Invalid(f"{exc}; nothing was imported", slug="malformed-report",
                      line=exc.line, column=exc.column) from exc
    return read


def _days_of(lines: list[ReportLine]) -> Period | None:
    """The whole UTC days from the report's first order to its last (reports cover days)."""
    if not lines:
        return None
    first = min(line.occurred_at for line in lines).date()
    last = max(line.occurred_at for line in lines).date() + timedelta(days=1)
    return Period(datetime.combine(first, time(), timezone.utc), datetime.combine(last, time(), timezone.utc))


def _orders(session: Session, provider: str, lines: list[ReportLine]) -> dict[str, Redemption]:
    ids = [i for i in (redemptions.redemption_id_of(line.reference) for line in lines) if i is not None]
    found: dict[str, Redemption] = {}
    for start in range(0, len(ids), _CHUNK):
        for order in session.scalars(select(Redemption).where(
                Redemption.id.in_(ids[start:start + _CHUNK]), Redemption.provider == provider)):
            found[redemptions.reference(order.id)] = order
    return found


def _expected(session: Session, provider: str, period: Period | None) -> list[Redemption]:
    if period is None:
        return []
    return list(session.scalars(select(Redemption).where(
        Redemption.provider == provider,
        Redemption.created_at >= period.start, Redemption.created_at < period.end,
        or_(Redemption.state == FULFILLED,
            Redemption.maybe_placed.is_(True) & Redemption.state.in_(_MAYBE_AT_PROVIDER)),
    ).order_by(Redemption.created_at, Redemption.id)))


# -- reading runs and exceptions (the API and the ops console) --

def runs(session: Session, cursor: str | None = None, limit: int = 50,
         provider: str | None = None) -> tuple[list[ReconciliationRun], str | None]:
    """Runs, newest first."""
    q = select(ReconciliationRun)
    if provider is not None:
        q = q.where(ReconciliationRun.provider == provider)
    rows, next_cursor = pagination.newest_first(session, q, ReconciliationRun.created_at, ReconciliationRun.id,
                                                cursor, limit, lambda row: (row[0].created_at, row[0].id))
    return [row[0] for row in rows], next_cursor


def run(session: Session, run_id: uuid.UUID) -> ReconciliationRun:
    found = session.get(ReconciliationRun, run_id)
    if found is None:
        raise NotFound(f"no reconciliation run {run_id}", slug="reconciliation-run-not-found")
    return found


@dataclass(frozen=True)
class ExceptionView:
    exception: ReconciliationException
    line: ReconciliationLine
    provider: str


def exceptions(session: Session, status: str | None = None, run_id: uuid.UUID | None = None,
               cursor: str | None = None, limit: int = 50) -> tuple[list[ExceptionView], str | None]:
    """Exceptions with their lines, newest first; `status` open or resolved."""
    q = (select(ReconciliationException, ReconciliationLine, ReconciliationRun.provider)
         .join(ReconciliationLine, ReconciliationLine.id == ReconciliationException.line_id)
         .join(ReconciliationRun, ReconciliationRun.id == ReconciliationException.run_id))
    if status is not None:
        q = q.where(ReconciliationException.status == status)
    if run_id is not None:
        q = q.where(ReconciliationException.run_id == run_id)
    rows, next_cursor = pagination.newest_first(
        session, q, ReconciliationException.created_at, ReconciliationException.id, cursor, limit,
        lambda row: (row[0].created_at, row[0].id))
    return [ExceptionView(*row) for row in rows], next_cursor


def exception(session: Session, exception_id: uuid.UUID) -> ExceptionView:
    row = session.execute(
        select(ReconciliationException, ReconciliationLine, ReconciliationRun.provider)
        .join(ReconciliationLine, ReconciliationLine.id == ReconciliationException.line_id)
        .join(ReconciliationRun, ReconciliationRun.id == ReconciliationException.run_id)
        .where(ReconciliationException.id == exception_id)).first()
    if row is None:
        raise NotFound(f"no reconciliation exception {exception_id}", slug="reconciliation-exception-not-found")
    return ExceptionView(*row)


def resolve(session: Session, exception_id: uuid.UUID, resolution: str, reason: str,
            actor_ref: str) -> ExceptionView:
    """Settle an open exception, once, with a resolution and a reason; audited. The audit
    entry carries the reason's sha256, not its free text (which could name a person): the
    chain proves the reason stored on the exception is the one given."""
    if resolution not in RESOLUTIONS:
        raise Invalid(f"resolution must be one of {', '.join(RESOLUTIONS)}", slug="invalid-resolution")
    reason = review_notes.stripped(reason)
    if not reason:
        raise Invalid("a reason is required to resolve an exception", slug="reason-required")
    session.execute(select(ReconciliationException.id).where(ReconciliationException.id == exception_id)
                    .with_for_update())
    view = exception(session, exception_id)
    found = view.exception
    if found.status != OPEN:
        raise Conflict(f"exception {exception_id} was already resolved ({found.resolution}) by {found.resolved_by}",
                       slug="exception-already-resolved")
    found.status, found.resolution, found.reason = RESOLVED, resolution, reason
    found.resolved_by, found.resolved_at = actor_ref, utcnow()
    trail.record(session, actor=actor_ref, action="reconciliation.resolve",
                 target=f"reconciliation_exception:{found.id}",
                 before={"status": OPEN, "kind": found.kind, "run_id": str(found.run_id)},
                 after={"status": RESOLVED, "resolution": resolution, **trail.reason_digest(reason)})
    session.flush()
    return view
