"""Ledger errors: each is a refusal that leaves nothing written (the caller rolls back)."""
from hub.errors import Gone


class LedgerError(Exception):
    """A transfer that the ledger rules refuse."""


class InsufficientFunds(LedgerError):
    def __init__(self, account_id: int):
        super().__init__(f"account {account_id} would go below zero")
        self.account_id = account_id


class InvalidTransfer(LedgerError):
    pass


class PendingNotFound(LedgerError):
    pass


class PendingAlreadyResolved(LedgerError):
    pass


class PendingExpired(LedgerError):
    pass


class AccountClosed(LedgerError, Gone):
    """The account's member was erased (hub.privacy.erasure closes their accounts), typically
    by an erasure that committed while this transaction was running. Retryable
    (hub.db.is_retryable): the transaction runs again and its own checks now see the erasure
    (a batch then refuses only that member's items); if it still reaches the account, the
    answer is 410 member-erased."""

    retryable = True

    def __init__(self, account_id: int):
        super().__init__("this member erased their data and left the coalition", slug="member-erased")
        self.account_id = account_id
