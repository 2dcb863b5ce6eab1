"""Reconciliation (issue 9): a provider's report imported once (a run), each of its orders
classified against the hub's (the lines), and every disagreement left for ops to resolve
(the exceptions). Runs and lines never change after the import; exceptions only get resolved."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, UTCDateTime, utcnow

# How a report's order compares with the hub's (docs/reconciliation.md).
MATCHED = "matched"
MISSING_IN_HUB = "missing_in_hub"            # in the report; the hub has no such order
MISSING_AT_PROVIDER = "missing_at_provider"  # the hub's order may be placed; the report lacks it
AMOUNT_MISMATCH = "amount_mismatch"
STATUS_MISMATCH = "status_mismatch"
CLASSES = (MATCHED, MISSING_IN_HUB, MISSING_AT_PROVIDER, AMOUNT_MISMATCH, STATUS_MISMATCH)

OPEN = "open"
RESOLVED = "resolved"
# How ops settled an exception (docs/reconciliation.md).
RESOLUTIONS = ("accepted", "provider_credit", "hub_adjusted", "written_off")


class ReconciliationRun(Base):
    """One import of one provider's report: the same file (by sha256) is imported once."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        UniqueConstraint("provider", "sha256"),
        Index("ix_reconciliation_runs_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    # The hub's orders created in [period_start, period_end) were expected in the report.
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    report_lines: Mapped[int] = mapped_column(Integer)
    matched: Mapped[int] = mapped_column(Integer)
    missing_in_hub: Mapped[int] = mapped_column(Integer)
    missing_at_provider: Mapped[int] = mapped_column(Integer)
    amount_mismatch: Mapped[int] = mapped_column(Integer)
    status_mismatch: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReconciliationLine(Base):
    """One order of a run, as the report and the hub each see it (either side may be absent)."""

    __tablename__ = "reconciliation_lines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_runs.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(24))
    reference: Mapped[str] = mapped_column(String(100))
    # The report's side: its line in the file (None: missing at the provider).
    line_no: Mapped[int | None] = mapped_column(Integer, default=None)
    provider_order_id: Mapped[str | None] = mapped_column(String(100), default=None)
    provider_amount_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    provider_currency: Mapped[str | None] = mapped_column(String(3), default=None)
    provider_status: Mapped[str | None] = mapped_column(String(16), default=None)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The hub's side (None: missing in the hub).
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("redemptions.id"), default=None, index=True)
    hub_amount_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    hub_currency: Mapped[str | None] = mapped_column(String(3), default=None)
    hub_state: Mapped[str | None] = mapped_column(String(16), default=None)


class ReconciliationException(Base):
    """A line that did not match, until ops resolve it with a resolution and a reason."""

    __tablename__ = "reconciliation_exceptions"
    __table_args__ = (Index("ix_reconciliation_exceptions_status", "status", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_runs.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_lines.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(24))  # the line's outcome
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    resolution: Mapped[str | None] = mapped_column(String(24), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(200), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
