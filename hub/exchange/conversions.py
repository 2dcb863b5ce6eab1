"""Quotes and conversions: a member's points of program A turned into points of program B.

A quote is a signed, self-contained offer (no row is written for it): who converts, from and
to which program, how many points, at which values and fee, what they get, until when.
Executing it recomputes the terms from the current rates and pair and refuses when anything
moved (rate changed, pair closed or re-priced) or when it has expired; a quote executes at
most once (conversions.quote_id is unique).

A local conversion is one linked ledger move, in one transaction: the member's account in A
pays A's clearing account, and B's clearing account pays the member's account in B. Locks
on the two member accounts are taken in ascending id order (hub.ledger), so two opposite
conversions of one member cannot deadlock. A conversion into or out of a partner-hosted
program reserves the local leg and relays the remote one (hub/exchange/saga.py).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from hub import ledger, pagination
from hub.actor import Actor
from hub.db import run, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.exchange import rates
from hub.exchange.hosted import HostedProgram, HostedUnavailable
from hub.exchange.models import COMPLETED, PENDING, Conversion, ConversionPair
from hub.ledger.models import Account
from hub.ledger.service import AccountInfo
from hub.notify import outbox
from hub.programs.models import Membership, MembershipIdentifier, Program
from hub.programs.service import resolve_membership

TRANSFER_CODE = "conversion"
REMOTE_TOPIC = "exchange.remote_leg"
_QUOTE_PURPOSE = b"hub conversion quote v1"
_conversions = Conversion.__table__
_INSERT = insert(_conversions)
_UNSET = dict.fromkeys(c.name for c in _conversions.c)


class PartnerUnavailable(Conflict):
    status = 503
    slug = "partner-unavailable"
    title = "Partner unavailable"


@dataclass(frozen=True)
class Terms:
    """What the hub's settings say about conversions."""

    secret_key: str
    quote_ttl: timedelta
    hold: timedelta  # how long a hosted conversion's local leg stays reserved at most


@dataclass(frozen=True)
class Quote:
    id: uuid.UUID
    member_id: uuid.UUID
    from_code: str
    to_code: str
    points_in: int
    points_out: int
    from_value: Decimal
    to_value: Decimal
    fee_bps: int
    fee_units: Decimal
    expires_at: datetime

    def sign(self, secret_key: str) -> str:
        doc = {"q": str(self.id), "m": str(self.member_id), "f": self.from_code, "t": self.to_code,
               "p": self.points_in, "o": self.points_out, "fv": str(self.from_value), "tv": str(self.to_value),
               "b": self.fee_bps, "fee": str(self.fee_units), "x": int(self.expires_at.timestamp())}
        body = _b64(json.dumps(doc, separators=(",", ":")).encode())
        return f"{body}.{_b64(_mac(secret_key, body))}"

    @classmethod
    def read(cls, secret_key: str, token: str) -> "Quote":
        body, _, mac = token.partition(".")
        if not hmac.compare_digest(_b64(_mac(secret_key, body)), mac):
            raise Invalid("this is not a quote the hub gave", slug="invalid-quote")
        doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return cls(uuid.UUID(doc["q"]), uuid.UUID(doc["m"]), doc["f"], doc["t"], doc["p"], doc["o"],
                   Decimal(doc["fv"]), Decimal(doc["tv"]), doc["b"], Decimal(doc["fee"]),
                   datetime.fromtimestamp(doc["x"], timezone.utc))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret_key: str, body: str) -> bytes:
    key = hmac.new(secret_key.encode(), _QUOTE_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class _Side:
    """One program of a conversion, and the member's membership in it (if any)."""

    program: SimpleNamespace  # id, code, partner_id, point_value, clearing_account_id, hosted_by
    account: AccountInfo | None
    remote_member: str | None  # the member's number at the partner (hosted programs)


def _load_sides(session: Session, member_id: uuid.UUID, from_code: str, to_code: str) -> tuple[_Side, _Side]:
    p, m, a, i = Program.__table__, Membership.__table__, Account.__table__, MembershipIdentifier.__table__
    remote = (select(i.c.value).where(i.c.membership_id == m.c.id, i.c.kind == "external_id")
              .limit(1).scalar_subquery())
    q = (
        select(p.c.id, p.c.code, p.c.partner_id, p.c.point_value, p.c.clearing_account_id, p.c.hosted_by,
               a.c.id, a.c.ledger, a.c.cached, a.c.no_overdraft, remote)
        .select_from(p.outerjoin(m, and_(m.c.program_id == p.c.id, m.c.member_id == member_id))
                     .outerjoin(a, a.c.id == m.c.account_id))
        .where(p.c.code.in_((from_code, to_code)))
    )
    sides = {}
    for pid, code, partner_id, value, clearing, hosted_by, *account, remote_member in session.execute(q):
        program = SimpleNamespace(id=pid, code=code, partner_id=partner_id, point_value=Decimal(value),
                                  clearing_account_id=clearing, hosted_by=hosted_by)
        sides[code] = _Side(program, AccountInfo(*account) if account[0] is not None else None, remote_member)
    for code in (from_code, to_code):
        if code not in sides:
            raise NotFound(f"no program {code}", slug="program-not-found")
    for code in (from_code, to_code):
        side = sides[code]
        if side.account is None:
            raise Invalid(f"the member has no membership in {code}: enrol first", slug="not-a-member")
        if side.program.hosted_by and not side.remote_member:
            raise Invalid(f"the member's {code} membership has no external_id to name them to the partner",
                          slug="not-a-member")
    return sides[from_code], sides[to_code]


def _pair(session: Session, source: _Side, target: _Side) -> ConversionPair:
    pair = session.get(ConversionPair, (source.program.id, target.program.id))
    if pair is None or not pair.open:
        raise Invalid(f"{source.program.code} cannot be converted into {target.program.code}",
                      slug="conversion-closed")
    return pair


def _member_of(session: Session, actor: Actor, body: dict) -> uuid.UUID:
    """Whose points: a member converts their own; a partner names the member, and converts
    only out of its own programs (it spends its own programs' points, as for redemptions)."""
    if actor.member_id is not None:
        return actor.member_id
    program = session.scalar(select(Program).where(Program.code == body["from"],
                                                   Program.partner_id == actor.partner_id))
    if program is None:
        raise NotFound(f"no program {body['from']}", slug="program-not-found")
    if "member" not in body:
        raise Invalid("name the member the points belong to", slug="member-required")
    return resolve_membership(session, program, body["member"]).member_id


def quote(session: Session, actor: Actor, body: dict, terms: Terms) -> tuple[Quote, "RemoteCheck | None"]:
    """What converting `points` from one program into another gives now, signed. Out of a
    partner-hosted program, also the check of the member's balance at the partner, which the
    caller runs after its transaction (no database connection waits on a partner)."""
    from_code, to_code, points = body["from"], body["to"], body["points"]
    if from_code == to_code:
        raise Invalid("convert between two different programs", slug="same-program")
    member_id = _member_of(session, actor, body)
    source, target = _load_sides(session, member_id, from_code, to_code)
    pair = _pair(session, source, target)
    amounts = _amounts(pair, source, target, points)
    check = None
    if source.program.hosted_by:
        check = RemoteCheck(source.program.hosted_by, source.program.code, source.remote_member, points)
    elif ledger.balance(session, source.account.id).available < points:
        raise ledger.InsufficientFunds(source.account.id)
    q = Quote(uuid.uuid4(), member_id, from_code, to_code, points, amounts.points_out,
              source.program.point_value, target.program.point_value, pair.fee_bps, amounts.fee_units,
              utcnow() + terms.quote_ttl)
    return q, check


@dataclass(frozen=True)
class RemoteCheck:
    """Whether a hosted program's partner knows the member and they hold enough points."""

    connector: str
    program_code: str
    remote_member: str
    points: int

    def run(self, hosted: dict[str, HostedProgram]) -> None:
        connector = hosted.get(self.connector)
        if connector is None:
            raise PartnerUnavailable(f"{self.program_code}'s partner connector is not configured")
        try:
            check = connector.validate(self.remote_member)
        except HostedUnavailable as exc:
            raise PartnerUnavailable(f"{self.program_code}'s partner did not answer: {exc}") from exc
        if not check.valid:
            raise Invalid(f"{self.program_code}'s partner does not know this member", slug="not-a-member")
        if check.balance is not None and check.balance < self.points:
            raise Conflict(f"the member holds {check.balance} {self.program_code} points",
                           slug="insufficient-points")


def _amounts(pair: ConversionPair, source: _Side, target: _Side, points: int) -> rates.Amounts:
    code = source.program.code
    if points < pair.min_points:
        raise Invalid(f"{code} converts at least {pair.min_points} points", slug="below-minimum")
    if points % pair.increment:
        raise Invalid(f"{code} converts in steps of {pair.increment} points", slug="off-increment")
    amounts = rates.convert(points, source.program.point_value, target.program.point_value, pair.fee_bps)
    if amounts.points_out < 1:
        raise Invalid(f"{points} {code} points buy no {target.program.code} point", slug="below-minimum")
    if amounts.points_out > rates.MAX_POINTS:
        raise Invalid(f"{points} {code} points buy more {target.program.code} points than one conversion may move",
                      slug="above-maximum")
    return amounts


def execute(session: Session, actor: Actor, body: dict, terms: Terms) -> "ConversionView":
    """Carry out a quote: at once for local programs, as a saga with a hosted one."""
    q = Quote.read(terms.secret_key, body["quote"])
    member_id = actor.member_id
    if member_id is None:
        member_id = _member_of(session, actor, {"from": q.from_code, "member": {"member_id": str(q.member_id)}})
    if member_id != q.member_id:
        raise Invalid("this quote was made for another member", slug="invalid-quote")
    now = utcnow()
    if now >= q.expires_at:
        raise Conflict("the quote has expired: ask for a new one", slug="quote-expired")
    source, target = _load_sides(session, member_id, q.from_code, q.to_code)
    pair = _pair(session, source, target)
    amounts = _amounts(pair, source, target, q.points_in)
    if (source.program.point_value, target.program.point_value, pair.fee_bps, amounts.points_out) != (
            q.from_value, q.to_value, q.fee_bps, q.points_out):
        raise Conflict("the rate or the fee changed since the quote: ask for a new one", slug="quote-stale")

    conversion_id = uuid.uuid4()
    row = dict(_UNSET, id=conversion_id, quote_id=q.id, member_id=member_id, from_program_id=source.program.id,
               to_program_id=target.program.id, points_in=q.points_in, points_out=q.points_out,
               from_value=q.from_value, to_value=q.to_value, fee_bps=q.fee_bps, fee_units=amounts.fee_units,
               units_out=amounts.units_out, attempts=0, caused_by=actor.ref, created_at=now)
    debit = _leg(source, q.points_in, debit=True, conversion_id=conversion_id, actor=actor)
    credit = _leg(target, q.points_out, debit=False, conversion_id=conversion_id, actor=actor)
    known = [s.account for s in (source, target)]
    if source.program.hosted_by or target.program.hosted_by:
        hosted_side = "from" if source.program.hosted_by else "to"
        local = credit if hosted_side == "from" else debit
        (transfer_id,) = ledger.reserve(session, [local], terms.hold, known=known)
        row.update(state=PENDING, hosted_side=hosted_side,
                   remote_member=(source if hosted_side == "from" else target).remote_member,
                   relay_deadline=now + terms.hold - min(timedelta(hours=1), terms.hold / 2))
        row["credit_transfer_id" if hosted_side == "from" else "debit_transfer_id"] = transfer_id
    else:
        row["debit_transfer_id"], row["credit_transfer_id"] = ledger.post(session, [debit, credit], known=known)
        row.update(state=COMPLETED, resolved_at=now)
    _insert_once(session, row)
    if row["hosted_side"]:
        outbox.enqueue(session, REMOTE_TOPIC, str(conversion_id), {"conversion_id": str(conversion_id)})
    return ConversionView(Conversion(**row), q.from_code, q.to_code)


def _leg(side: _Side, points: int, *, debit: bool, conversion_id: uuid.UUID, actor: Actor) -> ledger.TransferSpec:
    member, clearing = side.account.id, side.program.clearing_account_id
    return ledger.TransferSpec(
        debit=member if debit else clearing, credit=clearing if debit else member, amount=points,
        code=TRANSFER_CODE, ledger=side.program.id, caused_by=actor.ref, ref_type="conversion",
        ref_id=str(conversion_id),
    )


def _insert_once(session: Session, row: dict) -> None:
    """Insert the conversion; a quote already executed (unique quote_id) refuses it. The
    savepoint keeps the outer transaction usable for the problem's answer."""
    try:
        with session.begin_nested():
            run(session.connection(), _INSERT, row)
    except IntegrityError as exc:
        raise Conflict("this quote has already been used", slug="quote-used") from exc


def _cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) a page ends at; anything not issued by list_conversions is a 422."""
    after = pagination.decode(cursor)
    if after is None:
        return None
    try:
        at, last = after
        at = datetime.fromisoformat(at)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(last)
    except (TypeError, ValueError) as exc:
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor") from exc


@dataclass(frozen=True)
class ConversionView:
    conversion: Conversion
    from_code: str
    to_code: str


def _visible(q, actor: Actor, source, target):
    if actor.member_id is not None:
        return q.where(Conversion.member_id == actor.member_id)
    if "ops:read" in actor.scopes:
        return q
    return q.where(or_(source.partner_id == actor.partner_id, target.partner_id == actor.partner_id))


def _query(actor: Actor):
    source, target = aliased(Program), aliased(Program)
    q = (select(Conversion, source.code, target.code)
         .join(source, source.id == Conversion.from_program_id)
         .join(target, target.id == Conversion.to_program_id))
    return _visible(q, actor, source, target)


def get(session: Session, actor: Actor, conversion_id: uuid.UUID) -> ConversionView:
    row = session.execute(_query(actor).where(Conversion.id == conversion_id)).first()
    if row is None:
        raise NotFound(f"no conversion {conversion_id}", slug="conversion-not-found")
    return ConversionView(*row)


def list_conversions(session: Session, actor: Actor, cursor: str | None, limit: int,
                     member_id: uuid.UUID | None = None) -> tuple[list[ConversionView], str | None]:
    """Newest first: a member's own, a partner's (either side is its program), or all (ops)."""
    q = _query(actor).order_by(Conversion.created_at.desc(), Conversion.id.desc()).limit(limit + 1)
    if member_id is not None:
        q = q.where(Conversion.member_id == member_id)
    after = _cursor(cursor)
    if after is not None:
        at, last = after
        q = q.where(or_(Conversion.created_at < at, and_(Conversion.created_at == at, Conversion.id < last)))
    rows = [ConversionView(*row) for row in session.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = pagination.encode([rows[-1].conversion.created_at.isoformat(), str(rows[-1].conversion.id)]) \
        if more else None
    return rows, next_cursor
