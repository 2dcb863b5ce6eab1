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
from types import SimpleNamespace
from typing import Mapping

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from hub import crypto, ledger
from hub.actor import Actor
from hub.db import run, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.notify import outbox
from hub.ledger.models import Account
from hub.ledger.service import AccountInfo
from hub.programs.models import Member, Membership, MembershipIdentifier, Program
from hub.programs.service import normalise
from hub.rewards import catalog
from hub.rewards.models import FAILED, FULFILLED, PENDING, Redemption, Reward

_programs = Program.__table__
_memberships = Membership.__table__
_identifiers = MembershipIdentifier.__table__
_accounts = Account.__table__
_INSERT = insert(Redemption.__table__)
# `run` applies no column defaults, so every row starts from every column unset.
_UNSET = dict.fromkeys(c.name for c in Redemption.__table__.c)

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
    payer = _payer(session, actor, body)
    if reward.program_id is not None and reward.program_id != payer.program.id:
        raise Invalid(f"{reward.code} is paid in another program's points", slug="wrong-program")
    amount_minor = catalog.check_denomination(reward, body.get("amount"))
    points = catalog.price(reward, payer.program, terms.unit_rates, amount_minor)
    if not 0 < points <= catalog.MAX_POINTS:
        raise Invalid(f"{reward.code} cannot be priced in {payer.program.code}", slug="invalid-price")
    recipient = _recipient(payer, body) if reward.provider else None
    _check_member_limit(session, reward, payer.member_id)
    catalog.take_stock(session, reward)

    redemption_id = uuid.uuid4()
    spec = ledger.TransferSpec(
        debit=payer.account.id,
        credit=payer.program.redemption_account_id,
        amount=points,
        code=TRANSFER_CODE,
        ledger=payer.program.id,
        caused_by=actor.ref,
        ref_type="redemption",
        ref_id=str(redemption_id),
    )
    row = dict(
        _UNSET,
        id=redemption_id,
        reward_id=reward.id,
        member_id=payer.member_id,
        program_id=payer.program.id,
        points=points,
        amount_minor=amount_minor,
        currency=reward.currency if reward.provider else None,
        caused_by=actor.ref,
        created_at=now,
        provider=reward.provider,
        attempts=0,
    )
    if reward.provider is None:
        (row["transfer_id"],) = ledger.post(session, [spec], known=[payer.account])
        row.update(state=FULFILLED, resolved_at=now,
                   delivery_sealed=seal(terms.secret_key, _in_house_delivery(reward)))
    else:
        (row["transfer_id"],) = ledger.reserve(session, [spec], terms.hold, known=[payer.account])
        row.update(state=PENDING, recipient_sealed=seal(terms.secret_key, recipient),
                   relay_deadline=now + terms.hold - min(DEADLINE_MARGIN, terms.hold / 2))
    run(session.connection(), _INSERT, row)
    if reward.provider is not None:
        outbox.enqueue(session, RELAY_TOPIC, str(redemption_id), {"redemption_id": str(redemption_id)})
    redemption = SimpleNamespace(**row)
    return _view(redemption, reward, payer.program.code, actor, terms.secret_key)


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


@dataclass(frozen=True)
class _Payer:
    program: SimpleNamespace  # id, code, point_value, redemption_account_id
    member_id: uuid.UUID
    account: AccountInfo  # the member's account in the program
    email: str | None  # the member's email: in the paying program's membership, else any


def _payer_statement(by_member_id: bool, partner_only: bool):
    """The program (by code), the membership that pays (by member id, or by one identifier
    kind and value) with its account, and the member's email, in one statement: the
    program's row comes back without a membership if the member is not found."""
    p, m, a, i = _programs, _memberships, _accounts, _identifiers
    if by_member_id:
        match = m.c.member_id == bindparam("value")
    else:
        i_ = i.alias("by_identifier")
        match = m.c.id == (
            select(i_.c.membership_id)
            .where(i_.c.program_id == p.c.id, i_.c.kind == bindparam("kind"), i_.c.value == bindparam("value"))
            .scalar_subquery()
        )
    other = m.alias("other")
    email = func.coalesce(  # the paying program's first
        select(i.c.value).where(i.c.membership_id == m.c.id, i.c.kind == "email").scalar_subquery(),
        select(i.c.value).join_from(i, other, other.c.id == i.c.membership_id)
        .where(other.c.member_id == m.c.member_id, i.c.kind == "email").limit(1).scalar_subquery(),
    )
    q = (
        select(p.c.id, p.c.code, p.c.point_value, p.c.redemption_account_id, m.c.member_id,
               a.c.id, a.c.ledger, a.c.cached, a.c.no_overdraft, email)
        .select_from(p.outerjoin(m, (m.c.program_id == p.c.id) & match).outerjoin(a, a.c.id == m.c.account_id))
        .where(p.c.code == bindparam("program"))
    )
    return q.where(p.c.partner_id == bindparam("partner")) if partner_only else q


_PAYER = {(by_id, partner_only): _payer_statement(by_id, partner_only)
          for by_id in (False, True) for partner_only in (False, True)}


def _payer(session: Session, actor: Actor, body: dict) -> _Payer:
    """The program whose points pay, and the member's membership in it. A partner spends
    only its own programs' points, for a member it names; a member spends their own."""
    if actor.member_id is not None:
        kind, value = "member_id", actor.member_id
    elif "member" in body:
        ((kind, value),) = body["member"].items()
        value = uuid.UUID(value) if kind == "member_id" else normalise(kind, value)
    else:
        kind = value = None
    partner_only = actor.member_id is None
    params = {"program": body["program"], "value": value}
    if kind != "member_id":
        params["kind"] = kind
    if partner_only:
        params["partner"] = actor.partner_id
    rows, _ = run(session.connection(), _PAYER[(kind == "member_id", partner_only)], params)
    if not rows:
        raise NotFound(f"no program {body['program']}", slug="program-not-found")
    (program_id, code, point_value, redemption_account_id, member_id, *account, email), = rows
    if kind is None:
        raise Invalid("name the member the points belong to", slug="member-required")
    if member_id is None:
        raise NotFound(f"no member of {code} with that {kind}", slug="member-not-found")
    program = SimpleNamespace(id=program_id, code=code, point_value=Decimal(point_value),
                              redemption_account_id=redemption_account_id)
    return _Payer(program, member_id, AccountInfo(*account), email)


def _recipient(payer: _Payer, body: dict) -> dict:
    """Who receives the card or the donation receipt: as given, or the member's email."""
    given = body.get("recipient")
    if given:
        return {"email": normalise("email", given["email"]), "name": given.get("name", "")}
    if payer.email is None:
        raise Invalid("the member has no email on file; give a recipient", slug="recipient-required")
    return {"email": payer.email, "name": ""}


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
