"""Redemption orders: spend points on a reward.

In-house rewards are issued at once (points posted). Gift cards and donations reserve the
points (a pending transfer) and write an outbox message in the same transaction; the relay
(hub/rewards/relay.py) then posts or voids the reservation.

A reward priced in coalition units may be paid from several programs at once (pooling,
`pay_with`): the member's own split, or one the hub plans (hub/exchange/pooling.py). Every
leg is one transfer of one `ledger.post` or `ledger.reserve` call, so all are made or none;
the relay resolves them together.
"""
from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Mapping, NamedTuple

from sqlalchemy import Select, bindparam, case, func, insert, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.orm import Session

from hub import crypto, ledger, pagination
from hub.actor import Actor
from hub.db import prefetched, run, side_by_side, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.exchange import pooling
from hub.identity.oidc import subjects
from hub.notify import outbox
from hub.privacy import blind
from hub.privacy.sealed import as_stored
from hub.ledger.models import Account
from hub.ledger.service import AccountInfo
from hub.programs.models import Member, Membership, MembershipIdentifier, Program
from hub.programs.service import normalise, refuse_hosted
from hub.rewards import catalog
from hub.rules import tiers
from hub.rewards.models import FAILED, FULFILLED, PENDING, Redemption, RedemptionLeg, Reward

_programs = Program.__table__
_memberships = Membership.__table__
_identifiers = MembershipIdentifier.__table__
_identifier_value = _identifiers.c.value.type
_accounts = Account.__table__
_INSERT = insert(Redemption.__table__)
_INSERT_LEGS = insert(RedemptionLeg.__table__)
# `run` applies no column defaults, so every row starts from every column unset.
_UNSET = dict.fromkeys(c.name for c in Redemption.__table__.c)

RELAY_TOPIC = "rewards.relay"
TRANSFER_CODE = "redemption"
TRANSFER_REF = "redemption"  # ref_type of its transfers; ref_id is the order's id
SEAL_PURPOSE = "redemption-delivery"
# The relay gives up (needs review) this long before the reservation would expire, so that
# a late success can still be posted.
DEADLINE_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class Terms:
    """What the hub's settings say about redemptions."""

    unit_rates: Mapping[str, Decimal]
    hold: timedelta

    @classmethod
    def from_settings(cls, settings) -> "Terms":
        return cls(settings.unit_rates, timedelta(seconds=settings.redemption_hold))


class LegView(NamedTuple):
    program_code: str
    points: int


@dataclass(frozen=True)
class RedemptionView:
    redemption: Redemption
    reward: Reward
    program_code: str
    delivery: dict | None  # decrypted, and only for a caller allowed to see it
    legs: tuple[LegView, ...]  # what each program paid, in the order paid (one for an unpooled order)


def reference(redemption_id: uuid.UUID) -> str:
    """The provider's idempotency reference: derived from the order, so every retry of it,
    by any worker, names the same order (alphanumeric, as Tango's externalRefID wants)."""
    return f"rdm{redemption_id.hex}"


def redemption_id_of(ref: str) -> uuid.UUID | None:
    """The order a reference names, in any case or UUID spelling (a provider may echo it
    upper-cased or hyphenated); None when it is not one of ours."""
    try:
        return uuid.UUID(hex=ref[3:]) if ref[:3].lower() == "rdm" else None
    except ValueError:
        return None


def canonical_reference(ref: str) -> str:
    """`ref` as `reference` spells it when it names one of our orders, else unchanged: what
    reports are matched on."""
    redemption_id = redemption_id_of(ref)
    return ref if redemption_id is None else reference(redemption_id)


def seal(data: dict) -> str:
    return crypto.seal(SEAL_PURPOSE, json.dumps(data).encode())


def unseal(token: str | None) -> dict | None:
    return json.loads(crypto.unseal(SEAL_PURPOSE, token)) if token else None


def redeem(session: Session, actor: Actor, body: dict, terms: Terms) -> RedemptionView:
    reward, payer_read = _reward_and_payer(session, actor, body)
    now = utcnow()
    if not catalog.available_now(reward, now):
        if reward.stock == 0:
            raise Conflict(f"{reward.code} is out of stock", slug="out-of-stock")
        raise Conflict(f"{reward.code} is not available now", slug="reward-unavailable")
    amount_minor = catalog.check_denomination(reward, body.get("amount"))
    payment = _payment(session, actor, body, reward, terms.unit_rates, amount_minor, payer_read)
    recipient = _recipient(payment.email, body) if reward.provider else None
    _check_member_limit(session, reward, payment.member_id)
    tier_grant = tiers.check_reward(session, reward, payment.member_id)
    catalog.take_stock(session, reward)

    redemption_id = uuid.uuid4()
    specs = [
        ledger.TransferSpec(
            debit=leg.account.id,
            credit=leg.program.redemption_account_id,
            amount=leg.points,
            code=TRANSFER_CODE,
            ledger=leg.program.id,
            caused_by=actor.ref,
            ref_type=TRANSFER_REF,
            ref_id=str(redemption_id),
        )
        for leg in payment.legs
    ]
    known = [leg.account for leg in payment.legs]
    first = payment.legs[0]
    row = dict(
        _UNSET,
        id=redemption_id,
        reward_id=reward.id,
        member_id=payment.member_id,
        program_id=first.program.id,
        points=first.points,
        amount_minor=amount_minor,
        currency=reward.currency if reward.provider else None,
        caused_by=actor.ref,
        created_at=now,
        provider=reward.provider,
        attempts=0,
        maybe_placed=False,
    )
    # One ledger call for every leg: all are made or none (and the member's accounts are
    # locked in ascending id order).
    if reward.provider is None:
        transfer_ids = ledger.post(session, specs, known=known)
        row.update(state=FULFILLED, resolved_at=now,
                   delivery_sealed=seal(_in_house_delivery(reward)))
        if tier_grant is not None:
            tiers.apply_reward(session, tier_grant)
    else:
        transfer_ids = ledger.reserve(session, specs, terms.hold, known=known)
        row.update(state=PENDING, recipient_sealed=seal(recipient),
                   relay_deadline=now + terms.hold - min(DEADLINE_MARGIN, terms.hold / 2))
    row["transfer_id"] = transfer_ids[0]
    conn = session.connection()
    if reward.provider is None:
        run(conn, _INSERT, row)
    else:  # the order and its relay message: one statement on PostgreSQL
        outbox.enqueue(session, RELAY_TOPIC, str(redemption_id), {"redemption_id": str(redemption_id)},
                       with_row=(Redemption.__table__, row))
    if len(payment.legs) > 1:
        conn.execute(_INSERT_LEGS, [
            {"redemption_id": redemption_id, "program_id": leg.program.id, "points": leg.points,
             "transfer_id": transfer_id}
            for leg, transfer_id in zip(payment.legs, transfer_ids)
        ])
    redemption = SimpleNamespace(**row)
    legs = tuple(LegView(leg.program.code, leg.points) for leg in payment.legs)
    return _view(redemption, reward, first.program.code, actor, legs)


def _visible(actor: Actor):
    """Orders with their reward and (first) program, as far as the caller may see them: a
    member their own; a partner those its programs' points paid for, wholly or in part; ops all."""
    q = (
        select(Redemption, Reward, Program)
        .join(Reward, Reward.id == Redemption.reward_id)
        .join(Program, Program.id == Redemption.program_id)
    )
    if actor.member_id is not None:
        return q.where(Redemption.member_id == actor.member_id)
    if "ops:read" in actor.scopes:
        return q
    leg_program = aliased(Program)
    paid_a_leg = (
        select(RedemptionLeg.redemption_id)
        .join(leg_program, leg_program.id == RedemptionLeg.program_id)
        .where(RedemptionLeg.redemption_id == Redemption.id, leg_program.partner_id == actor.partner_id)
        .exists()
    )
    return q.where(or_(Program.partner_id == actor.partner_id, paid_a_leg))


def _legs(session: Session, rows) -> dict[uuid.UUID, tuple[LegView, ...]]:
    """Each order's legs, in the order they were paid (one query for a page of orders); an
    order paid from one program is its one leg."""
    found: dict[uuid.UUID, list[LegView]] = {}
    for redemption_id, code, points in session.execute(
        select(RedemptionLeg.redemption_id, Program.code, RedemptionLeg.points)
        .join(Program, Program.id == RedemptionLeg.program_id)
        .where(RedemptionLeg.redemption_id.in_([r.id for r, _, _ in rows]))
        .order_by(RedemptionLeg.transfer_id)  # the order of the ledger call: the order paid
    ):
        found.setdefault(redemption_id, []).append(LegView(code, points))
    return {r.id: tuple(found.get(r.id, ())) or (LegView(p.code, r.points),) for r, _, p in rows}


def get(session: Session, actor: Actor, redemption_id: uuid.UUID) -> RedemptionView:
    row = session.execute(_visible(actor).where(Redemption.id == redemption_id)).first()
    if row is None:
        raise NotFound(f"no redemption {redemption_id}", slug="redemption-not-found")
    redemption, reward, program = row
    return _view(redemption, reward, program.code, actor, _legs(session, [row])[redemption.id])


def list_redemptions(session: Session, actor: Actor, cursor: str | None, limit: int,
                     member_id: uuid.UUID | None = None, state: str | None = None) -> tuple[list[RedemptionView], str | None]:
    """Orders newest first, as `get` shows them but never with their delivery (a card's code
    or a voucher is shown by GET /redemptions/{id}, one order at a time)."""
    q = _visible(actor)
    if member_id is not None:
        q = q.where(Redemption.member_id == member_id)
    if state is not None:
        q = q.where(Redemption.state == state)
    rows, next_cursor = pagination.newest_first(session, q, Redemption.created_at, Redemption.id, cursor, limit,
                                                lambda row: (row[0].created_at, row[0].id))
    legs = _legs(session, rows) if rows else {}
    return [RedemptionView(r, reward, p.code, None, legs[r.id]) for r, reward, p in rows], next_cursor


def _view(redemption: Redemption, reward: Reward, program_code: str, actor: Actor,
          legs: tuple[LegView, ...]) -> RedemptionView:
    # A gift card's code is the member's money: only the member sees it. An in-house
    # voucher is also checked by the partner that issued it, so its partner sees it too.
    owner = actor.member_id == redemption.member_id
    may_see = owner or (reward.provider is None and actor.member_id is None and actor.partner_id is not None)
    delivery = unseal(redemption.delivery_sealed) if may_see else None
    return RedemptionView(redemption, reward, program_code, delivery, legs)


@dataclass(frozen=True)
class _Leg:
    """What one program pays: `points` out of the member's `account` in it."""

    program: SimpleNamespace  # id, code, point_value, redemption_account_id
    account: AccountInfo
    points: int


@dataclass(frozen=True)
class _Payment:
    member_id: uuid.UUID
    legs: list[_Leg]   # one, or (pooled) several, in the order paid
    email: str | None  # the member's email: in the (first) paying program's membership, else any


def _payment(session: Session, actor: Actor, body: dict, reward, rates: Mapping[str, Decimal],
             amount_minor: int | None, payer_read: _PayerRow | None) -> _Payment:
    """Whose points pay, and how many of which programs'. The schema cannot say "exactly
    one of `program` and `pay_with`", so it is said here. `payer_read`: `_payer`'s, which
    `_reward_and_payer` read for a payment from one program (None for any other body)."""
    if ("program" in body) == ("pay_with" in body):
        raise Invalid("pay from one program (`program`) or from several (`pay_with`): exactly one of them",
                      slug="invalid-payment")
    if "pay_with" in body:
        return _pooled(session, actor, body, reward, rates, amount_minor)
    payer = _payer(body, payer_read)
    if reward.program_id is not None and reward.program_id != payer.program.id:
        raise Invalid(f"{reward.code} is paid in another program's points", slug="wrong-program")
    points = catalog.price(reward, payer.program, rates, amount_minor)
    leg = _Leg(payer.program, payer.account, points)
    _check_price(reward, leg)
    return _Payment(payer.member_id, [leg], payer.email)


def _check_price(reward, leg: _Leg) -> None:
    if not 0 < leg.points <= catalog.MAX_POINTS:
        raise Invalid(f"{reward.code} cannot be priced in {leg.program.code}", slug="invalid-price")


@dataclass(frozen=True)
class _Payer:
    program: SimpleNamespace  # id, code, point_value, redemption_account_id, hosted_by
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
            .where(i_.c.program_id == p.c.id, i_.c.kind == bindparam("kind"), i_.c.value_index == bindparam("value"))
            .scalar_subquery()
        )
    other = m.alias("other")
    sealed = as_stored(i.c.value)  # opened in _payer
    email = func.coalesce(  # the paying program's first
        select(sealed).where(i.c.membership_id == m.c.id, i.c.kind == "email").scalar_subquery(),
        select(sealed).join_from(i, other, other.c.id == i.c.membership_id)
        .where(other.c.member_id == m.c.member_id, i.c.kind == "email").limit(1).scalar_subquery(),
    )
    q = (
        select(p.c.id, p.c.code, p.c.point_value, p.c.redemption_account_id, p.c.hosted_by, m.c.member_id,
               a.c.id, a.c.ledger, a.c.cached, a.c.no_overdraft, email)
        .select_from(p.outerjoin(m, (m.c.program_id == p.c.id) & match).outerjoin(a, a.c.id == m.c.account_id))
        .where(p.c.code == bindparam("program"))
    )
    return q.where(p.c.partner_id == bindparam("partner")) if partner_only else q


_PAYER = {(by_id, partner_only): _payer_statement(by_id, partner_only)
          for by_id in (False, True) for partner_only in (False, True)}


class _PayerRow(NamedTuple):
    """What `_payer` reads: how the member was named, and its statement's row (None: no
    such program of the caller's)."""
    kind: str | None
    row: tuple | None


def _payer(body: dict, read: _PayerRow) -> _Payer:
    """The program whose points pay, and the member's membership in it, from the row of
    `_payer_query`'s statement (read by `_reward_and_payer`). A partner spends only its own
    programs' points, for a member it names; a member spends their own. A partner-hosted
    program's points are kept by its partner: they never pay here."""
    kind, row = read
    if row is None:
        raise NotFound(f"no program {body['program']}", slug="program-not-found")
    program_id, code, point_value, redemption_account_id, hosted_by, member_id, *account, email = row
    program = SimpleNamespace(id=program_id, code=code, point_value=Decimal(point_value),
                              redemption_account_id=redemption_account_id, hosted_by=hosted_by)
    refuse_hosted(program)
    if kind is None:
        raise Invalid("name the member the points belong to", slug="member-required")
    if member_id is None:
        raise NotFound(f"no member of {code} with that {kind}", slug="member-not-found")
    return _Payer(program, member_id, AccountInfo(*account), _identifier_value.open(email))


def _payer_ref(session: Session | None, actor: Actor, body: dict) -> tuple[str | None, object]:
    """How the paying member is named: (kind, value), or (None, None) if it is not. The
    session is only needed for a pairwise subject (`_member_ref` looks it up)."""
    if actor.member_id is not None:
        return "member_id", actor.member_id
    if "member" in body:
        return _member_ref(session, actor, body["member"])
    return None, None


def _payer_query(actor: Actor, body: dict, kind: str | None, value: object) -> tuple[Select, dict]:
    """`_payer`'s statement and its parameters."""
    partner_only = actor.member_id is None
    params = {"program": body["program"], "value": value}
    if kind != "member_id":
        params["kind"] = kind
    if partner_only:
        params["partner"] = actor.partner_id
    return _PAYER[(kind == "member_id", partner_only)], params


def first_read(actor: Actor, body: dict) -> tuple[Select, dict] | None:
    """`redeem`'s first read, if it can be named before its transaction, so that it can be
    made ahead (hub.idempotency sends it with the key's lock): the reward and the payer of
    a redemption from one program, the member named by id or identifier. None otherwise."""
    member = body.get("member") or {}
    if not _one_program(body) or (actor.member_id is None and "subject" in member):
        return None
    return _reward_and_payer_query(actor, body, *_payer_ref(None, actor, body))


def _reward_and_payer(session: Session, actor: Actor, body: dict) -> tuple[SimpleNamespace, _PayerRow | None]:
    """The reward and, when one program pays (`program`, no `pay_with`), `_payer`'s row, in
    one round trip (`side_by_side`), or none if it was read ahead (`first_read`); else the
    reward alone. The errors keep `redeem`'s order: the reward's are raised here, the
    payer's when `_payer` reads its row."""
    code = body["reward"]
    if not _one_program(body):
        return catalog.reward_by_code(session, actor, code), None
    kind, value = _payer_ref(session, actor, body)
    statement, params = _reward_and_payer_query(actor, body, kind, value)
    row = prefetched(session, statement, params)
    if row is None:
        (row,), _ = run(session.connection(), statement, params)
    width = len(catalog.REWARD_COLUMNS)
    reward, payer_row = tuple(row[:width]), tuple(row[width:])
    return catalog.reward_from_row(code, reward), _PayerRow(kind, payer_row if payer_row[0] is not None else None)


def _one_program(body: dict) -> bool:
    """Whether one program pays (else `_payment` pools several, or refuses the body)."""
    return "program" in body and "pay_with" not in body


def _reward_and_payer_query(actor: Actor, body: dict, kind: str | None, value: object) -> tuple[Select, dict]:
    reward_statement, reward_params = catalog.reward_query(actor, body["reward"])
    payer_statement, payer_params = _payer_query(actor, body, kind, value)
    # Both may bind "partner": the same value, the actor's partner.
    return _REWARD_AND_PAYER[(reward_statement, payer_statement)], {**reward_params, **payer_params}


# Built once, here: `first_read`'s statement must be the very one `_reward_and_payer` asks
# hub.db.prefetched for (two threads' first calls of side_by_side could build two).
_REWARD_AND_PAYER = {(reward, payer): side_by_side(reward, payer)
                     for reward in catalog.REWARD_READS for payer in _PAYER.values()}


# --- pooling: one reward paid from several programs -----------------------------------------

@dataclass(frozen=True)
class _Source:
    """A program that may pay a leg, and the member's account in it (None: not a member)."""

    program: SimpleNamespace  # id, code, point_value, redemption_account_id, hosted_by
    account: AccountInfo | None
    available: int


def _pooled(session: Session, actor: Actor, body: dict, reward, rates: Mapping[str, Decimal],
            amount_minor: int | None) -> _Payment:
    """The legs of `pay_with`: the caller's own split, checked, or one the hub plans over the
    programs in the order asked (`order`) or cheapest first (every program the caller may
    spend). A plan, or a split, of one leg is an ordinary one-program payment."""
    if reward.program_id is not None:
        raise Invalid(f"{reward.code} is priced in one program's points: pay it with `program`",
                      slug="reward-not-poolable")
    price = catalog.price_in_units(reward, rates, amount_minor)
    if not price > 0:  # a unit rate of zero: nothing to split
        raise Invalid(f"{reward.code} has no price in units", slug="invalid-price")
    pay_with = body["pay_with"]
    split = pay_with.get("split")
    named = [leg["program"] for leg in split] if split is not None else pay_with.get("order")
    if named is not None and len(set(named)) != len(named):
        raise Invalid("name each program once", slug="duplicate-program")
    member_id = _pooling_member(session, actor, body, named)
    sources = _sources(session, actor, member_id, named)
    by_code = {s.program.code: s for s in sources}
    if split is not None:
        wanted = [(by_code[leg["program"]], leg["points"]) for leg in split]
        pooling.check_split(price, [(s.program.code, s.program.point_value, points) for s, points in wanted])
        for source, points in wanted:
            # The ledger refuses an overdraft anyway; this says which program falls short.
            if points > source.available:
                raise Conflict(f"the member has {source.available} {source.program.code} points available, "
                               f"the split takes {points}", slug="insufficient-points")
    else:
        candidates = [pooling.Source(s.program.code, s.program.point_value, s.available) for s in sources]
        if named is None:
            candidates = pooling.cheapest_first(candidates)
        planned = pooling.plan(price, candidates)
        if planned is None:
            codes = ", ".join(c.code for c in candidates) or "no program"
            raise Conflict(f"the member's available points ({codes}) together are worth less than the price, "
                           f"{price} units", slug="insufficient-points")
        wanted = [(by_code[leg.code], leg.points) for leg in planned]
    legs = [_Leg(source.program, source.account, points) for source, points in wanted]
    for leg in legs:
        _check_price(reward, leg)
    wants_email = reward.provider is not None and not body.get("recipient")
    email = _member_email(session, member_id, legs[0].program.id) if wants_email else None
    return _Payment(member_id, legs, email)


def _pooling_member(session: Session, actor: Actor, body: dict, named: list[str] | None) -> uuid.UUID:
    """Whose points: a member's own; a partner names the member, by member id, by its
    pairwise subject, or by an identifier in one of its programs (the named ones, if any)."""
    if actor.member_id is not None:
        return actor.member_id
    if "member" not in body:
        raise Invalid("name the member the points belong to", slug="member-required")
    kind, value = _member_ref(session, actor, body["member"])
    if kind == "subject":
        raise NotFound("no member with that subject", slug="member-not-found")
    if kind == "member_id":
        return value  # a member in none of the caller's programs: member-not-found in _sources
    p, m, i = _programs, _memberships, _identifiers
    q = (
        select(m.c.member_id).distinct()
        .join_from(i, m, m.c.id == i.c.membership_id).join(p, p.c.id == i.c.program_id)
        .where(p.c.partner_id == actor.partner_id, i.c.kind == kind, i.c.value_index == value)
    )
    if named is not None:
        q = q.where(p.c.code.in_(named))
    found = session.scalars(q.limit(2)).all()
    if not found:
        raise NotFound(f"no member with that {kind} in your programs", slug="member-not-found")
    if len(found) > 1:
        raise Invalid(f"that {kind} names different members in your programs: name the member by member_id",
                      slug="ambiguous-member")
    return found[0]


def _sources(session: Session, actor: Actor, member_id: uuid.UUID, named: list[str] | None) -> list[_Source]:
    """The programs named (in that order), or every program the caller may spend that the
    member belongs to; each with the member's account and available points, in one
    statement. A partner spends only its own programs' points; a member any of theirs.
    Partner-hosted programs keep their balances at the partner: they cannot pay a leg."""
    p, m, a = _programs, _memberships, _accounts
    q = select(
        p.c.id, p.c.code, p.c.point_value, p.c.redemption_account_id, p.c.hosted_by,
        a.c.id, a.c.ledger, a.c.cached, a.c.no_overdraft,
        a.c.credits_posted - a.c.debits_posted - a.c.debits_pending,
    ).select_from(
        p.outerjoin(m, (m.c.program_id == p.c.id) & (m.c.member_id == member_id)).outerjoin(a, a.c.id == m.c.account_id)
    )
    if actor.member_id is None:
        q = q.where(p.c.partner_id == actor.partner_id)
    if named is not None:
        q = q.where(p.c.code.in_(named))
    else:
        q = q.where(m.c.id.is_not(None), p.c.hosted_by.is_(None))
    found = {}
    for pid, code, value, redemption_account_id, hosted_by, account_id, *account, available in session.execute(q):
        program = SimpleNamespace(id=pid, code=code, point_value=Decimal(value),
                                  redemption_account_id=redemption_account_id, hosted_by=hosted_by)
        found[code] = _Source(program, AccountInfo(account_id, *account) if account_id is not None else None,
                              available or 0)
    if actor.member_id is None and not any(s.account for s in found.values()):
        raise NotFound("no such member in your programs", slug="member-not-found")
    if named is None:
        return list(found.values())
    for code in named:
        if code not in found:
            raise NotFound(f"no program {code}", slug="program-not-found")
    for code in named:
        if found[code].program.hosted_by:
            raise Invalid(f"{code}'s points are kept by its partner: they cannot pay here", slug="program-cannot-pay")
        if found[code].account is None:
            raise Invalid(f"the member has no membership in {code}", slug="not-a-member")
    return [found[code] for code in named]


def _member_email(session: Session, member_id: uuid.UUID, first_program_id: uuid.UUID) -> str | None:
    """The member's email: in the first paying program's membership, else in any (as for a
    one-program order)."""
    i, m = _identifiers, _memberships
    return session.scalar(
        select(i.c.value).join_from(i, m, m.c.id == i.c.membership_id)
        .where(m.c.member_id == member_id, i.c.kind == "email")
        .order_by(case((m.c.program_id == first_program_id, 0), else_=1), i.c.value_index)
        .limit(1)
    )


def _member_ref(session: Session, actor: Actor, ref: dict) -> tuple[str, object]:
    """The (kind, value) a partner names a member by: a member id (as a UUID), or an
    identifier (its blind index). Its pairwise subject (single sign-on) stands for the member it
    was issued for; an unknown one stays a subject, which no membership has."""
    ((kind, value),) = ref.items()
    if kind == "subject":
        member_id = subjects.member_for(session, str(actor.partner_id), value)
        return ("member_id", member_id) if member_id else (kind, value)
    return kind, uuid.UUID(value) if kind == "member_id" else blind.index(kind, value)


def _recipient(email: str | None, body: dict) -> dict:
    """Who receives the card or the donation receipt: as given, or the member's email."""
    given = body.get("recipient")
    if given:
        return {"email": normalise("email", given["email"]), "name": given.get("name", "")}
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
