"""Ledger errors: each is a refusal that leaves nothing written (the caller rolls back)."""


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
