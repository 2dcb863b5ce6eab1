"""Every table, so that Base.metadata (and Alembic) sees the whole schema."""
from hub.db import Base
from hub.idempotency import IdempotencyKey
from hub.identity.models import ApiClient, SigningKey
from hub.ledger.models import Account, Transfer
from hub.programs.models import (
    Member,
    Membership,
    MembershipIdentifier,
    Partner,
    PointTransaction,
    Program,
)

__all__ = [
    "Account",
    "ApiClient",
    "Base",
    "IdempotencyKey",
    "Member",
    "Membership",
    "MembershipIdentifier",
    "Partner",
    "PointTransaction",
    "Program",
    "SigningKey",
    "Transfer",
]
