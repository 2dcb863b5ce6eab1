"""Every table, so that Base.metadata (and Alembic) sees the whole schema."""
from hub.db import Base
from hub.idempotency import IdempotencyKey
from hub.identity.account_models import (
    AccountToken,
    LoginSession,
    MemberAccount,
    OutgoingMail,
    RecoveryCode,
)
from hub.identity.models import ApiClient, SigningKey
from hub.ledger.models import Account, Transfer
from hub.notify.outbox import OutboxMessage
from hub.programs.models import (
    Member,
    Membership,
    MembershipIdentifier,
    Partner,
    PointTransaction,
    Program,
)
from hub.rewards.models import ProviderEvent, Redemption, Reward

__all__ = [
    "Account",
    "AccountToken",
    "ApiClient",
    "Base",
    "IdempotencyKey",
    "LoginSession",
    "Member",
    "MemberAccount",
    "OutboxMessage",
    "OutgoingMail",
    "Membership",
    "MembershipIdentifier",
    "Partner",
    "PointTransaction",
    "Program",
    "ProviderEvent",
    "RecoveryCode",
    "Redemption",
    "Reward",
    "SigningKey",
    "Transfer",
]
