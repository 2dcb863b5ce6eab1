"""Erasing a member (issue 7, item 5; docs/privacy.md, "Erasure").

One transaction: refuse while a redemption or conversion is in flight (409
`erasure-in-flight`); forfeit the points left to each program's breakage account (a ledger
transfer, code `forfeit`, so settlement sees it) and close the member's ledger accounts (a
purchase, return or transfer that read the member before this commits, and reaches the
account after, is refused: hub.ledger.service); tell each partner (webhook
`member.erased`, with the identifiers the partner itself gave); then run every registered
eraser (account, sessions and brands' tokens, identifiers, mail, profile, purchase details,
redemption recipients and deliveries, the reasons in ops' review notes, ...) and record the
erasure. The member id stays, as a pseudonym that ledger transfers, purchases' amounts and
settlement still name: `hub ledger verify` holds. Erasing twice is a no-op.
"""
from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from hub import ledger
from hub.audit import review_notes, trail
from hub.errors import Conflict, NotFound
from hub.exchange import models as exchange
from hub.identity import mail, signout
from hub.identity.account_models import AccountToken, LinkRequest, LoginSession, RecoveryCode
from hub.identity.oidc.models import AuthorizationCode, Consent, Grant, PairwiseSubject, RefreshToken
from hub.idempotency import IdempotencyKey, IdempotencyKeyMember
from hub.notify import webhooks
from hub.privacy.erasure_models import MemberErasure
from hub.privacy import sharing
from hub.privacy.export import Subject, own_addresses
from hub.programs.models import Member, MembershipIdentifier, PointTransaction
from hub.rewards import models as rewards
from hub.rules.engage_models import ChallengeEntrant, MemberAttribute
from hub.rules.frequency_models import Referral, ReferralCode, RewardVoucher, StampProgress, StreakProgress
from hub.rules.models import SegmentMember
from hub.rules.standing_models import TierBucket

FORFEIT = "forfeit"
EVENT = "member.erased"
# Identifiers a partner created and already holds: sent back in `member.erased` so it can
# find its own record. Phone and email are the member's, never sent.
PARTNER_KINDS = ("external_id", "card_number")

ERASERS: dict[str, Callable[[Subject], None]] = {}


def register(name: str):
    """Decorator: `erase(subject)` runs inside every erasure's transaction, in order."""
    def add(erase: Callable[[Subject], None]):
        if name in ERASERS:
            raise ValueError(f"eraser {name!r} is already registered")
        ERASERS[name] = erase
        return erase
    return add


def register_forget(name: str, forget: Callable[[Session, uuid.UUID], None]) -> None:
    """Register another package's `forget(session, member_id)`."""
    register(name)(lambda subject: forget(subject.session, subject.member_id))


@dataclass(frozen=True)
class Erased:
    member_id: uuid.UUID
    forfeited: dict[str, int]  # program code -> points
    already: bool = False


def erased(session: Session, member_id: uuid.UUID) -> bool:
    return session.get(MemberErasure, member_id) is not None


def forfeitable(session: Session, member_id: uuid.UUID) -> dict[str, int]:
    """Points the member would lose, per program code (the account pages show them)."""
    subject = Subject(session, member_id)
    found = {}
    for membership, program in subject.memberships():
        if program.hosted_by is None:
            held = ledger.balance(session, membership.account_id)
            found[program.code] = max(held.credits_posted - held.debits_posted - held.debits_pending, 0)
    return found


def erase(session: Session, member_id: uuid.UUID, caused_by: str) -> Erased:
    """Erase the member, in the caller's transaction (all or nothing)."""
    if session.get(Member, member_id, with_for_update=True) is None:
        raise NotFound("no such member", slug="member-not-found")
    done = session.get(MemberErasure, member_id)
    if done is not None:
        return Erased(member_id, done.forfeited, already=True)
    _refuse_in_flight(session, member_id)
    subject = Subject(session, member_id)
    forfeited = _forfeit(subject, caused_by)
    ledger.close(session, [m.account_id for m, _ in subject.memberships()])
    _tell_partners(subject)
    for erase_one in ERASERS.values():
        erase_one(subject)
    session.add(MemberErasure(member_id=member_id, caused_by=caused_by, forfeited=forfeited))
    # The member's id and the points forfeited per program: nothing that names them.
    trail.record(session, actor=caused_by, action="member.erase", target=f"member:{member_id}",
                 after={"forfeited": forfeited})
    session.flush()
    return Erased(member_id, forfeited)


def _refuse_in_flight(session: Session, member_id: uuid.UUID) -> None:
    redemption = session.scalar(select(rewards.Redemption.id).where(
        rewards.Redemption.member_id == member_id,
        rewards.Redemption.state.in_((rewards.PENDING, rewards.NEEDS_REVIEW))).limit(1))
    conversion = session.scalar(select(exchange.Conversion.id).where(
        exchange.Conversion.member_id == member_id,
        exchange.Conversion.state.in_((exchange.PENDING, exchange.NEEDS_REVIEW))).limit(1))
    if redemption or conversion:
        raise Conflict("a redemption or conversion of this member is still being settled; erase once it has"
                       " completed", slug="erasure-in-flight")


def _forfeit(subject: Subject, caused_by: str) -> dict[str, int]:
    """Move what is left in each hub-held account to its program's breakage account."""
    local = [(m, p) for m, p in subject.memberships() if p.hosted_by is None]
    held = ledger.available_locked(subject.session, [m.account_id for m, _ in local])
    specs, forfeited = [], {}
    for membership, program in local:
        points = held.get(membership.account_id, 0)
        forfeited[program.code] = points
        if points > 0:
            specs.append(ledger.TransferSpec(
                debit=membership.account_id, credit=program.breakage_account_id, amount=points, code=FORFEIT,
                ledger=program.id, caused_by=caused_by, ref_type="erasure", ref_id=str(subject.member_id)))
    if specs:
        ledger.post(subject.session, specs)
    return forfeited


def _tell_partners(subject: Subject) -> None:
    by_partner: dict[uuid.UUID, list[dict]] = {}
    for membership, program in subject.memberships():
        known = subject.session.scalars(select(MembershipIdentifier).where(
            MembershipIdentifier.membership_id == membership.id, MembershipIdentifier.kind.in_(PARTNER_KINDS)))
        by_partner.setdefault(program.partner_id, []).append(
            {"program": program.code, **{i.kind: i.value for i in known}})
    for partner_id, programs in by_partner.items():
        webhooks.emit(subject.session, partner_id, EVENT, {"member_id": str(subject.member_id), "programs": programs})


# --- the hub's own erasers (run in this order) ----------------------------------------------

@register("mail")
def _mail(subject: Subject) -> None:
    mail.forget(subject.session, own_addresses(subject))


@register("account")
def _account(subject: Subject) -> None:
    """End the login sessions (brands get back-channel logout notices), revoke and drop the
    brands' grants and tokens, then delete the login and everything hanging off it."""
    s, account = subject.session, subject.account()
    if account is not None:
        signout.end_all(s, account.id)
        for model in (AccountToken, RecoveryCode, LoginSession, LinkRequest):
            s.execute(delete(model).where(model.account_id == account.id))
    grant_ids = select(Grant.id).where(Grant.member_id == subject.member_id)
    s.execute(delete(AuthorizationCode).where(AuthorizationCode.grant_id.in_(grant_ids)))
    s.execute(delete(RefreshToken).where(RefreshToken.grant_id.in_(grant_ids)))
    s.execute(delete(Grant).where(Grant.member_id == subject.member_id))
    for model in (Consent, PairwiseSubject):
        s.execute(delete(model).where(model.member_id == subject.member_id))
    # Stored replies: the member's own requests, and any client's that named the member (an
    # enrolment's reply holds the contact details); a repeat re-executes and gets 410.
    naming = select(IdempotencyKeyMember.key_id).where(IdempotencyKeyMember.member_id == subject.member_id)
    s.execute(delete(IdempotencyKey).where(or_(IdempotencyKey.owner == f"member:{subject.member_id}",
                                               IdempotencyKey.id.in_(naming))),
              execution_options={"synchronize_session": False})
    if account is not None:
        s.delete(account)
    s.flush()


@register("memberships")
def _memberships(subject: Subject) -> None:
    """Identifiers go (the partner got its own back in the webhook); behaviour tracked per
    membership goes; purchases keep their amounts and points but lose their items."""
    s, ids = subject.session, subject.membership_ids()
    for model in (MembershipIdentifier, StampProgress, StreakProgress, ReferralCode, TierBucket):
        s.execute(delete(model).where(model.membership_id.in_(ids)))
    s.execute(update(PointTransaction).where(PointTransaction.membership_id.in_(ids))
              .values(items=None, rating=None, store_id=None, channel=None))
    s.execute(update(exchange.MemberTransfer).where(or_(exchange.MemberTransfer.from_member_id == subject.member_id,
                                                        exchange.MemberTransfer.to_member_id == subject.member_id))
              .values(note=None), execution_options={"synchronize_session": False})
    for voucher in s.scalars(select(RewardVoucher).where(RewardVoucher.membership_id.in_(ids))):
        voucher.code = "X" + secrets.token_hex(15)  # unique, meaningless: the voucher is void
    # The referrals the member made keep a copy of their (now deleted) code; the referees' stay.
    s.execute(update(Referral).where(Referral.referrer_membership_id.in_(ids)).values(code=""))


@register("profile")
def _profile(subject: Subject) -> None:
    for model in (MemberAttribute, SegmentMember, ChallengeEntrant):
        subject.session.execute(delete(model).where(model.member_id == subject.member_id))


register_forget("sharing_consents", sharing.forget)
# Ops' reasons for settling the member's orders and conversions in review could name them.
register_forget("review_notes", review_notes.forget)


@register("orders")
def _orders(subject: Subject) -> None:
    subject.session.execute(update(rewards.Redemption).where(rewards.Redemption.member_id == subject.member_id)
                            .values(recipient_sealed=None, delivery_sealed=None, receipt=None))
    subject.session.execute(update(exchange.Conversion).where(exchange.Conversion.member_id == subject.member_id)
                            .values(remote_member=None))
