"""Every table, so that Base.metadata (and Alembic) sees the whole schema."""
from hub.audit.models import AuditEntry, AuditHead
from hub.db import Base
from hub.exchange.models import Conversion, ConversionPair, MemberTransfer, ProgramRate
from hub.audit.review_notes import ReviewNote
from hub.idempotency import IdempotencyKey
from hub.identity.account_models import (
    AccountToken,
    LinkRequest,
    LoginSession,
    MemberAccount,
    OutgoingMail,
    RecoveryCode,
)
from hub.identity.models import ApiClient, SigningKey
from hub.identity.ops_user_models import OpsSession, OpsUser
from hub.identity.oidc.models import (
    AuthorizationCode,
    Consent,
    Grant,
    OidcClient,
    PairwiseSubject,
    RefreshToken,
)
from hub.ledger.models import Account, Transfer
from hub.notify.outbox import OutboxMessage
from hub.notify.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from hub.privacy.erasure_models import MemberErasure
from hub.privacy.sharing_models import SharingConsent, SharingConsentEvent
from hub.privacy.models import DataKey
from hub.programs.models import (
    Member,
    Membership,
    MembershipIdentifier,
    Partner,
    PointTransaction,
    Program,
)
from hub.rewards.models import ProviderEvent, Redemption, RedemptionLeg, Reward
from hub.settlement.models import ProgramPrice, SettlementPeriod, Statement, StatementLine
from hub.rules.counters import BudgetStripe, CapCounter
from hub.rules.engage_models import Challenge, ChallengeEntrant, MemberAttribute, MemberBadge
from hub.rules.frequency_models import (
    EngagementEvent,
    Referral,
    ReferralCode,
    RewardVoucher,
    StampProgress,
    StreakProgress,
)
from hub.rules.models import Award, RuleVersion, Segment, SegmentMember
from hub.rules.standing_models import ExpiryNotice, TierBucket, TierChange
from hub.settlement.reconciliation_models import ReconciliationException, ReconciliationLine, ReconciliationRun

__all__ = [
    "AuditEntry",
    "AuditHead",
    "RedemptionLeg",
    "SharingConsent",
    "SharingConsentEvent",
    "ProgramRate",
    "MemberTransfer",
    "ConversionPair",
    "Conversion",
    "ReviewNote",
    "Account",
    "AccountToken",
    "ApiClient",
    "AuthorizationCode",
    "Consent",
    "Award",
    "Challenge",
    "ChallengeEntrant",
    "MemberAttribute",
    "MemberBadge",
    "BudgetStripe",
    "CapCounter",
    "Base",
    "Grant",
    "IdempotencyKey",
    "LinkRequest",
    "LoginSession",
    "Member",
    "MemberErasure",
    "MemberAccount",
    "OidcClient",
    "OutboxMessage",
    "PairwiseSubject",
    "OutgoingMail",
    "Membership",
    "MembershipIdentifier",
    "Partner",
    "PointTransaction",
    "Program",
    "ProviderEvent",
    "RecoveryCode",
    "Redemption",
    "RefreshToken",
    "Reward",
    "RuleVersion",
    "Segment",
    "SegmentMember",
    "SigningKey",
    "Transfer",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "EngagementEvent",
    "Referral",
    "ReferralCode",
    "RewardVoucher",
    "StampProgress",
    "StreakProgress",
    "ExpiryNotice",
    "TierBucket",
    "TierChange",
    "DataKey",
    "OpsSession",
    "OpsUser",
    "ProgramPrice",
    "SettlementPeriod",
    "Statement",
    "StatementLine",
    "ReconciliationException",
    "ReconciliationLine",
    "ReconciliationRun",
]
