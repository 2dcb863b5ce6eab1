"""Accounts and transfers, modelled on TigerBeetle's (design.md, "Ledger rules").

A ledger is one program's points currency. Member accounts keep cached balances, updated
under their row lock; system accounts (issuance, clearing, breakage) keep none, so that no
single row is written on every earn: their balances are folded from transfers when asked.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, JSONDoc, UTCDateTime, utcnow

# Transfer phases. A `pending` transfer reserves; exactly one `post_pending` or
# `void_pending` transfer may later resolve it (unique pending_id).
POSTED = "posted"
PENDING = "pending"
POST_PENDING = "post_pending"
VOID_PENDING = "void_pending"
PHASES = (POSTED, PENDING, POST_PENDING, VOID_PENDING)


class Account(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ledger: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    code: Mapped[str] = mapped_column(String(32))
    # Cached balances are kept only for accounts that are locked anyway (members).
    cached: Mapped[bool] = mapped_column(default=True)
    # TigerBeetle's debits_must_not_exceed_credits.
    no_overdraft: Mapped[bool] = mapped_column(default=False)
    # Closed when its member is erased (hub.privacy.erasure): no balance update applies to
    # it any more (service._apply's WHERE), however late a concurrent purchase arrives.
    closed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Transfer(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(
            "phase IN ('posted', 'pending', 'post_pending', 'void_pending')", name="phase_known"
        ),
        Index("ix_ledger_transfers_debit", "debit_account_id", "id"),
        Index("ix_ledger_transfers_credit", "credit_account_id", "id"),
        Index("ix_ledger_transfers_ref", "ref_type", "ref_id"),
        # Settlement finds a period's rows by creation time (hub.settlement.statements).
        Index("ix_ledger_transfers_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ledger: Mapped[uuid.UUID] = mapped_column(Uuid)
    # No foreign keys to ledger_accounts: PostgreSQL would lock the (shared, hot) issuance
    # account row FOR KEY SHARE on every earn. `post` checks both accounts exist and are on
    # the ledger (service.account_info, _check); `hub ledger verify` proves it for every row.
    debit_account_id: Mapped[int] = mapped_column(BigId)
    credit_account_id: Mapped[int] = mapped_column(BigId)
    amount: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(16), default=POSTED)
    # Set on post_pending/void_pending; unique, so a reservation resolves exactly once.
    pending_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transfers.id"), unique=True, default=None
    )
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    caused_by: Mapped[str] = mapped_column(String(120))
    # What business object this movement belongs to (a purchase, a redemption, ...).
    ref_type: Mapped[str | None] = mapped_column(String(32), default=None)
    ref_id: Mapped[str | None] = mapped_column(String(64), default=None)
    meta: Mapped[dict | None] = mapped_column("metadata", JSONDoc, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
