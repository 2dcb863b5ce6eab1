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
    balance,
    fold,
    open_account,
    post,
    post_pending,
    reserve,
    void_pending,
)

__all__ = [
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
    "reserve",
    "void_pending",
]
