"""Welcome bonuses and referrals.

A member's referral code is per program, made on first request. A new member who enrols
with it becomes a referee: one referral row (unique per referee), pending until the
referee's first qualifying purchase, which pays both sides through two awards keyed by the
referral. If that purchase is then fully returned, both bonuses are taken back (what each
member still holds) and the referral is reversed. Every refusal (a fraud guard, a cap, the window passed) is kept on that row with
its reason, so ops see why nothing was paid; nothing is ever paid silently or twice.
"""
from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from hub import ledger
from hub.actor import Actor
from hub.db import insert_once, utcnow
from hub.errors import Invalid
from hub.programs.models import Membership, MembershipIdentifier, Program
from hub.rules import periods, versions
from hub.rules.awards import Recipient, award
from hub.rules.document import Finding
from hub.rules.effects import PostedPurchase, ReturnedPurchase
from hub.rules.frequency_models import Referral, ReferralCode
from hub.rules.models import Award
from hub.rules.stamps import min_amount_met

WELCOME = "welcome"
REFERRAL = "referral"
PENDING, PAID, REFUSED, EXPIRED, REVERSED = "pending", "paid", "refused", "expired", "reversed"
STATES = (PENDING, PAID, REFUSED, EXPIRED, REVERSED)
# The ledger code of a bonus taken back (from the member to the program's issuance).
BONUS_REVERSAL = "bonus_reversal"
REFEREE, REFERRER = "referee", "referrer"  # the two awards of a referral: keys "<referral id>:<side>"
SIDES = (REFEREE, REFERRER)
# Unambiguous when read aloud or typed from a screenshot: no 0/O, 1/I/L.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8  # 31^8 ~ 8.5e11 codes per program
_codes = ReferralCode.__table__
_INSERT_CODE = insert_once(_codes, ("membership_id",), _codes.c.code)


def _new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def code_for(session: Session, program_id: uuid.UUID, membership_id: uuid.UUID) -> str:
    """The membership's referral code, made now if it has none. A new code that collides
    with another member's violates (program_id, code): the transaction is retried
    (hub.db.is_retryable) with another draw."""
    existing = session.scalar(select(ReferralCode.code).where(ReferralCode.membership_id == membership_id))
    if existing:
        return existing
    conn = session.connection()
    row = conn.execute(_INSERT_CODE[conn.dialect.name], {
        "membership_id": membership_id, "program_id": program_id, "code": _new_code(), "created_at": utcnow()}).first()
    # No row back: a concurrent request made this membership's code first.
    return row.code if row else session.scalar(select(ReferralCode.code).where(ReferralCode.membership_id == membership_id))


@dataclass(frozen=True)
class Referrer:
    membership_id: uuid.UUID
    member_id: uuid.UUID
    code: str


def referrer_for(session: Session, program_id: uuid.UUID, code: str | None) -> Referrer | None:
    """Who owns `code` in this program (None when no code was given); an unknown code is a
    422, checked before the enrolment writes anything."""
    if code is None:
        return None
    normalised = code.strip().upper()
    row = session.execute(
        select(ReferralCode.membership_id, Membership.member_id)
        .join(Membership, Membership.id == ReferralCode.membership_id)
        .where(ReferralCode.program_id == program_id, ReferralCode.code == normalised)
    ).first()
    if row is None:
        raise Invalid(f"no member of this program has referral code {code!r}", slug="referral-code-unknown")
    return Referrer(row.membership_id, row.member_id, normalised)


def _shared_identifier(session: Session, referrer: Referrer, referee_member_id: uuid.UUID) -> str | None:
    """The kind of contact identifier (email, phone) any membership of the referee's member
    shares with any membership of the referrer's: the same person under a second identity.
    All memberships on both sides: an existing member enrolling by member_id brings the
    identifiers of their other programs, not only those of the request."""
    ours, theirs = aliased(MembershipIdentifier), aliased(MembershipIdentifier)
    ours_m, theirs_m = aliased(Membership), aliased(Membership)
    return session.scalar(
        select(ours.kind)
        .join(ours_m, ours_m.id == ours.membership_id)
        .join(theirs, and_(theirs.kind == ours.kind, theirs.value_index == ours.value_index))
        .join(theirs_m, theirs_m.id == theirs.membership_id)
        .where(ours_m.member_id == referee_member_id, theirs_m.member_id == referrer.member_id,
               ours.kind.in_(("email", "phone")))
        .order_by(ours.kind)
        .limit(1)
    )


def enrolled(session: Session, actor: Actor, program: Program, membership: Membership,
             referrer: Referrer | None) -> None:
    """After a membership and its identifiers are created: its welcome bonus, and its
    referral (if any)."""
    rules = versions.in_force(session, program.id, utcnow())
    welcome = rules.section(WELCOME) if rules else None
    if welcome:
        award(session, Recipient(program.id, program.issuance_account_id, membership.id, membership.account_id),
              kind=WELCOME, key=str(membership.id), points=welcome["points"],
              reason=f"Welcome to {program.name}", caused_by=actor.ref)
    if referrer is None:
        return
    state, reason = PENDING, None
    if rules is None or not rules.section(REFERRAL):
        state, reason = REFUSED, "the program offers no referral bonus"
    elif (shared := _shared_identifier(session, referrer, membership.member_id)) is not None:
        state, reason = REFUSED, f"self-referral: the referee's {shared} is the referrer's"
    now = utcnow()
    session.add(Referral(program_id=program.id, referrer_membership_id=referrer.membership_id,
                         referee_membership_id=membership.id, code=referrer.code, state=state, reason=reason,
                         enrolled_at=now, resolved_at=None if state == PENDING else now))
    session.flush()


# --- the referee's first qualifying purchase ----------------------------------------------

def referrals_followed(session: Session, actor: Actor, purchases: Sequence[PostedPurchase]) -> None:
    """One locking query for the batch's pending referrals (none for a program without a
    referral section), then each purchase in order: a referee's first qualifying one pays."""
    ruled = [(p, rule) for p in purchases if p.rules and (rule := p.rules.section(REFERRAL))]
    if not ruled:
        return
    pending = {r.referee_membership_id: r for r in session.scalars(
        select(Referral).where(Referral.referee_membership_id.in_(list({p.membership_id for p, _ in ruled})),
                               Referral.state == PENDING)
        .order_by(Referral.referee_membership_id).with_for_update())}  # one lock order for all batches
    for purchase, rule in ruled:
        referral = pending.get(purchase.membership_id)
        if referral is not None and referral.state == PENDING:  # not settled by an earlier purchase
            _follow(session, actor, purchase, rule, referral)


def _resolve(referral: Referral, state: str, reason: str) -> None:
    referral.state, referral.reason, referral.resolved_at = state, reason, utcnow()


def _follow(session: Session, actor: Actor, purchase: PostedPurchase, rule: dict, referral: Referral) -> None:
    if purchase.occurred_at < referral.enrolled_at:
        return
    if "window_days" in rule and purchase.occurred_at > referral.enrolled_at + timedelta(days=rule["window_days"]):
        _resolve(referral, EXPIRED, f"no qualifying purchase within {rule['window_days']} days of enrolment")
        session.flush()
        return
    if not min_amount_met(purchase, rule.get("qualifying", {}).get("min_amount")):
        return
    cap = rule.get("max_per_referrer")
    if cap and _paid_count(session, referral.referrer_membership_id, cap["per"], purchase) >= cap["count"]:
        per = "in all" if cap["per"] == "lifetime" else f"per {cap['per']}"
        _resolve(referral, REFUSED, f"the referrer reached the cap of {cap['count']} paid referrals {per}")
        session.flush()
        return
    referrer_account = session.scalar(select(Membership.account_id).where(
        Membership.id == referral.referrer_membership_id))
    key = str(referral.id)
    award(session, Recipient(purchase.program_id, purchase.issuance_account_id, purchase.membership_id,
                             purchase.account_id),
          kind=REFERRAL, key=f"{key}:{REFEREE}", points=rule["referee_points"],
          reason="Referral bonus: your first purchase", caused_by=actor.ref)
    award(session, Recipient(purchase.program_id, purchase.issuance_account_id, referral.referrer_membership_id,
                             referrer_account),
          kind=REFERRAL, key=f"{key}:{REFERRER}", points=rule["referrer_points"],
          reason="Referral bonus: a member you referred made their first purchase", caused_by=actor.ref)
    referral.state, referral.purchase_id = PAID, purchase.txn_id
    referral.paid_at = referral.resolved_at = utcnow()
    session.flush()


def _paid_count(session: Session, referrer_membership_id: uuid.UUID, per: str, purchase: PostedPurchase) -> int:
    """Paid referrals of the referrer in the cap's period, under a lock on the referrer's
    code row, so two referees' first purchases at once cannot both take the last place."""
    session.execute(select(ReferralCode.membership_id).where(
        ReferralCode.membership_id == referrer_membership_id).with_for_update())
    q = select(func.count()).select_from(Referral).where(
        Referral.referrer_membership_id == referrer_membership_id, Referral.state == PAID)
    if per != "lifetime":
        q = q.where(Referral.paid_at >= periods.start(utcnow(), per, purchase.rules))
    return session.scalar(q)


# --- the paying purchase returned -----------------------------------------------------------

def purchase_returned(session: Session, actor: Actor, returned: ReturnedPurchase) -> None:
    """A handler of effects.purchase_returned: when the purchase that paid a referral is fully
    returned, both bonuses go back, as a return's points do: each member gives up what they
    still hold of it (the rest, already spent, is the shortfall, kept in the reason), by a
    ledger transfer to the program's issuance coded bonus_reversal and linked to the award.
    The referral moves paid -> reversed under its lock, once: a later return does nothing."""
    if not returned.fully_returned or returned.rules is None or not returned.rules.section(REFERRAL):
        return
    referral = session.scalar(select(Referral).where(
        Referral.referee_membership_id == returned.membership_id, Referral.state == PAID,
        Referral.purchase_id == returned.txn_id).with_for_update())
    if referral is None:
        return
    paid = session.execute(
        select(Award.id, Award.key, Award.points, Membership.account_id)
        .join(Membership, Membership.id == Award.membership_id)
        .where(Award.program_id == returned.program_id, Award.kind == REFERRAL,
               Award.key.in_([f"{referral.id}:{side}" for side in SIDES]), Award.points > 0)
        .order_by(Award.key)).all()
    held = ledger.available_locked(session, [row.account_id for row in paid])
    transfers, taken = [], {}
    for row in paid:
        take = min(row.points, held[row.account_id])
        taken[row.key.rsplit(":", 1)[1]] = (take, row.points)
        if take:
            transfers.append(ledger.TransferSpec(
                debit=row.account_id, credit=returned.issuance_account_id, amount=take, code=BONUS_REVERSAL,
                ledger=returned.program_id, caused_by=actor.ref, ref_type="award", ref_id=str(row.id)))
    if transfers:
        ledger.post(session, transfers)
    took = ", ".join(f"{side} {take} of {points}" for side, (take, points) in sorted(taken.items()))
    _resolve(referral, REVERSED, f"the qualifying purchase was fully returned: bonus points taken back: {took}"
                                 f"{' (the rest was already spent)' if any(t < p for t, p in taken.values()) else ''}")
    session.flush()


# --- progress and linting -----------------------------------------------------------------

@dataclass(frozen=True)
class ReferralProgress:
    code: str | None
    referrals: dict[str, int]  # state -> how many members this one referred
    referred: Referral | None  # this membership's own referral, if it was referred


def progress(session: Session, membership_id: uuid.UUID) -> ReferralProgress:
    code = session.scalar(select(ReferralCode.code).where(ReferralCode.membership_id == membership_id))
    counts = Counter(dict(session.execute(
        select(Referral.state, func.count()).where(Referral.referrer_membership_id == membership_id)
        .group_by(Referral.state)).all()))
    referred = session.scalar(select(Referral).where(Referral.referee_membership_id == membership_id))
    return ReferralProgress(code, {s: counts.get(s, 0) for s in STATES}, referred)


def lint(document: dict) -> list[Finding]:
    """The welcome and referral sections' findings."""
    found = []
    welcome = document.get(WELCOME)
    if welcome is not None and welcome["points"] <= 0:
        found.append(Finding("/welcome/points", "a welcome bonus must grant points"))
    rule = document.get(REFERRAL)
    if rule is None:
        return found
    if "max_per_referrer" not in rule and not rule.get("allow_unbounded"):
        found.append(Finding("/referral/max_per_referrer",
                             'a referral bonus with no cap per referrer needs "allow_unbounded": true'))
    if rule["referrer_points"] <= 0 and rule["referee_points"] <= 0:
        found.append(Finding("/referral/referrer_points", "a referral must grant points to one side at least"))
    return found
