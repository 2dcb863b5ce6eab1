"""Double-entry points ledger (no Flask here). See design.md, "Ledger rules"."""
from hub.ledger.errors import (
    InsufficientFunds,
    InvalidTransfer,
    LedgerError,
    PendingAlreadyResolved,
    PendingExpired,
    PendingNotFound,
)
from hub.ledger.service import (
    Balance,
    TransferSpec,
    available_locked,
    balance,
    fold,
    open_account,
    post,
    post_pending,
    post_pending_many,
    reserve,
    void_pending,
    void_pending_many,
)

__all__ = [
    "available_locked",
    "Balance",
    "InsufficientFunds",
    "InvalidTransfer",
    "LedgerError",
    "PendingAlreadyResolved",
    "PendingExpired",
    "PendingNotFound",
    "TransferSpec",
    "balance",
    "fold",
    "open_account",
    "post",
    "post_pending",
    "post_pending_many",
    "reserve",
    "void_pending",
    "void_pending_many",
]
