"""The audit trail's tables: the entries, and the head of their chain."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, JSONDoc, UTCDateTime


class AuditEntry(Base):
    """One privileged action. `seq` is gapless (taken from the head under its lock), and
    `hash` is a keyed MAC of the entry and the previous entry's hash (hub/audit/trail.py):
    editing, inserting or deleting any entry breaks the chain from there on.

    `before` and `after` hold ids, codes, amounts and settings, never personal data: the
    trail outlives a member's erasure and cannot be rewritten to forget them."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))  # "ops:<user>", "client:<id>", "cli", ...
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "settlement.close"
    target: Mapped[str] = mapped_column(String(200))  # e.g. "period:2026-11"
    before: Mapped[dict | None] = mapped_column(JSONDoc, default=None)
    after: Mapped[dict | None] = mapped_column(JSONDoc, default=None)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last entry (one row, id 1): appending locks it, so entries are chained in
    one order; `hub audit verify` checks the last entry against it, so dropping entries off
    the end is seen too. Privileged actions are rare: this row is not hot."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
