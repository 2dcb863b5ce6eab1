"""Redemption orders: spend points on a reward.

In-house rewards are issued at once (points posted). Gift cards and donations reserve the
points (a pending transfer) and write an outbox message in the same transaction; the relay
(hub/rewards/relay.py) then posts or voids the reservation.
"""
from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import crypto, ledger
from hub.actor import Actor
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.notify import outbox
from hub.programs.models import Member, Membership, MembershipIdentifier, Program
from hub.programs.service import normalise, resolve_membership
from hub.rewards import catalog
from hub.rewards.models import FAILED, FULFILLED, PENDING, Redemption, Reward

RELAY_TOPIC = "rewards.relay"
TRANSFER_CODE = "redemption"
SEAL_PURPOSE = "redemption-delivery"
# The relay gives up (needs review) this long before the reservation would expire, so that
# a late success can still be posted.
DEADLINE_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class Terms:
    """What the hub's settings say about redemptions."""

    unit_rates: Mapping[str, Decimal]
    hold: timedelta
    secret_key: str


@dataclass(frozen=True)
class RedemptionView:
    redemption: Redemption
    reward: Reward
    program_code: str
    delivery: dict | None  # decrypted, and only for a caller allowed to see it


def reference(redemption_id: uuid.UUID) -> str:
    """The provider's idempotency reference: derived from the order, so every retry of it,
    by any worker, names the same order (alphanumeric, as Tango's externalRefID wants)."""
    return f"rdm{redemption_id.hex}"


def redemption_id_of(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(hex=ref[3:]) if ref.startswith("rdm") else None
    except ValueError:
        return None


def seal(secret_key: str, data: dict) -> str:
    return crypto.seal(secret_key, SEAL_PURPOSE, json.dumps(data).encode())


def unseal(secret_key: str, token: str | None) -> dict | None:
    return json.loads(crypto.unseal(secret_key, SEAL_PURPOSE, token)) if token else None


def redeem(session: Session, actor: Actor, body: dict, terms: Terms) -> RedemptionView:
    reward = catalog.reward_by_code(session, actor, body["reward"])
    now = utcnow()
    if not catalog.available_now(reward, now):
        if reward.stock == 0:
            raise Conflict(f"{reward.code} is out of stock", slug="out-of-stock")
        raise Conflict(f"{reward.code} is not available now", slug="reward-unavailable")
    program, membership = _payer(session, actor, body)
    if reward.program_id is not None and reward.program_id != program.id:
        raise Invalid(f"{reward.code} is paid in another program's points", slug="wrong-program")
    amount_minor = catalog.check_denomination(reward, body.get("amount"))
    points = catalog.price(reward, program, terms.unit_rates, amount_minor)
    if not 0 < points <= catalog.MAX_POINTS:
        raise Invalid(f"{reward.code} cannot be priced in {program.code}", slug="invalid-price")
    recipient = _recipient(session, membership, body) if reward.provider else None
    _check_member_limit(session, reward, membership.member_id)
    catalog.take_stock(session, reward)

    redemption_id = uuid.uuid4()
    spec = ledger.TransferSpec(
        debit=membership.account_id,
        credit=program.redemption_account_id,
        amount=points,
        code=TRANSFER_CODE,
        ledger=program.id,
        caused_by=actor.ref,
        ref_type="redemption",
        ref_id=str(redemption_id),
    )
    redemption = Redemption(
        id=redemption_id,
        reward_id=reward.id,
        member_id=membership.member_id,
        program_id=program.id,
        points=points,
        amount_minor=amount_minor,
        currency=reward.currency if reward.provider else None,
        caused_by=actor.ref,
        created_at=now,
    )
    if reward.provider is None:
        (redemption.transfer_id,) = ledger.post(session, [spec])
        redemption.state = FULFILLED
        redemption.resolved_at = now
        redemption.delivery_sealed = seal(terms.secret_key, _in_house_delivery(reward))
    else:
        (redemption.transfer_id,) = ledger.reserve(session, [spec], terms.hold)
        redemption.state = PENDING
        redemption.provider = reward.provider
        redemption.recipient_sealed = seal(terms.secret_key, recipient)
        redemption.relay_deadline = now + terms.hold - min(DEADLINE_MARGIN, terms.hold / 2)
        outbox.enqueue(session, RELAY_TOPIC, str(redemption_id), {"redemption_id": str(redemption_id)})
    session.add(redemption)
    session.flush()
    return _view(redemption, reward, program.code, actor, terms.secret_key)


def get(session: Session, actor: Actor, redemption_id: uuid.UUID, secret_key: str) -> RedemptionView:
    q = (
        select(Redemption, Reward, Program)
        .join(Reward, Reward.id == Redemption.reward_id)
        .join(Program, Program.id == Redemption.program_id)
        .where(Redemption.id == redemption_id)
    )
    if actor.member_id is not None:
        q = q.where(Redemption.member_id == actor.member_id)
    elif "ops:read" not in actor.scopes:
        q = q.where(Program.partner_id == actor.partner_id)
    row = session.execute(q).first()
    if row is None:
        raise NotFound(f"no redemption {redemption_id}", slug="redemption-not-found")
    redemption, reward, program = row
    return _view(redemption, reward, program.code, actor, secret_key)


def _view(redemption: Redemption, reward: Reward, program_code: str, actor: Actor, secret_key: str) -> RedemptionView:
    # A gift card's code is the member's money: only the member sees it. An in-house
    # voucher is also checked by the partner that issued it, so its partner sees it too.
    owner = actor.member_id == redemption.member_id
    may_see = owner or (reward.provider is None and actor.member_id is None and actor.partner_id is not None)
    delivery = unseal(secret_key, redemption.delivery_sealed) if may_see else None
    return RedemptionView(redemption, reward, program_code, delivery)


def _payer(session: Session, actor: Actor, body: dict) -> tuple[Program, Membership]:
    """The program whose points pay, and the member's membership in it. A partner spends
    only its own programs' points, for a member it names; a member spends their own."""
    q = select(Program).where(Program.code == body["program"])
    if actor.member_id is None:
        q = q.where(Program.partner_id == actor.partner_id)
    program = session.scalar(q)
    if program is None:
        raise NotFound(f"no program {body['program']}", slug="program-not-found")
    if actor.member_id is not None:
        ref = {"member_id": str(actor.member_id)}
    elif "member" in body:
        ref = body["member"]
    else:
        raise Invalid("name the member the points belong to", slug="member-required")
    return program, resolve_membership(session, program, ref)


def _recipient(session: Session, membership: Membership, body: dict) -> dict:
    """Who receives the card or the donation receipt: as given, or the member's email."""
    given = body.get("recipient")
    if given:
        return {"email": normalise("email", given["email"]), "name": given.get("name", "")}
    email = session.scalar(
        select(MembershipIdentifier.value)
        .join(Membership, Membership.id == MembershipIdentifier.membership_id)
        .where(Membership.member_id == membership.member_id, MembershipIdentifier.kind == "email")
        .order_by(MembershipIdentifier.membership_id != membership.id)  # the paying program's first
        .limit(1)
    )
    if email is None:
        raise Invalid("the member has no email on file; give a recipient", slug="recipient-required")
    return {"email": email, "name": ""}


def _check_member_limit(session: Session, reward: Reward, member_id: uuid.UUID) -> None:
    if reward.per_member_limit is None:
        return
    # Serialise this member's redemptions (the count below must not race a concurrent one).
    session.execute(select(Member.id).where(Member.id == member_id).with_for_update())
    taken = session.scalar(
        select(func.count()).select_from(Redemption).where(
            Redemption.member_id == member_id,
            Redemption.reward_id == reward.id,
            Redemption.state != FAILED,
        )
    )
    if taken >= reward.per_member_limit:
        raise Conflict(f"{reward.code} allows {reward.per_member_limit} per member", slug="limit-reached")


def _in_house_delivery(reward: Reward) -> dict:
    if reward.kind == "tier_upgrade":
        return {"tier": reward.tier}
    # A voucher the member shows at the partner: unguessable, easy to read out.
    return {"code": "-".join(secrets.token_hex(2).upper() for _ in range(4))}
