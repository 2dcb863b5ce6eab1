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
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from hub import ledger, pagination
from hub.actor import Actor
from hub.db import insert_once, run, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.exchange import rates
from hub.exchange.hosted import HostedProgram, HostedUnavailable
from hub.exchange.models import COMPLETED, PENDING, Conversion, ConversionPair, ProgramRate
from hub.ledger.models import Account
from hub.ledger.service import AccountInfo
from hub.notify import outbox, webhooks
from hub.notify.breaker import Breaker
from hub.privacy.sealed import as_stored
from hub.programs.models import Membership, MembershipIdentifier, Program
from hub.programs.service import resolve_membership

TRANSFER_CODE = "conversion"
REMOTE_TOPIC = "exchange.remote_leg"
_QUOTE_PURPOSE = b"hub conversion quote v1"
_identifier_value = MembershipIdentifier.__table__.c.value.type
_conversions = Conversion.__table__
_INSERT_ONCE = insert_once(_conversions, ["quote_id"], _conversions.c.id)
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

    @classmethod
    def from_settings(cls, settings) -> "Terms":
        return cls(settings.secret_key, timedelta(seconds=settings.quote_ttl),
                   timedelta(seconds=settings.conversion_hold))


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
    # Which terms it was made on: each program's rate (its program_rates id) and the pair's
    # last change, so that a rate changed and changed back still refuses the quote.
    versions: tuple[int, int, int]

    def sign(self, secret_key: str) -> str:
        doc = {"q": str(self.id), "m": str(self.member_id), "f": self.from_code, "t": self.to_code,
               "p": self.points_in, "o": self.points_out, "fv": str(self.from_value), "tv": str(self.to_value),
               "b": self.fee_bps, "fee": str(self.fee_units), "x": int(self.expires_at.timestamp()),
               "v": list(self.versions)}
        body = _b64(json.dumps(doc, separators=(",", ":")).encode())
        return f"{body}.{_b64(_mac(secret_key, body))}"

    @classmethod
    def read(cls, secret_key: str, token: str) -> "Quote":
        body, _, mac = token.partition(".")
        # Bytes, so that any string (a form's, with non-ASCII characters) is just not ours.
        if not hmac.compare_digest(_b64(_mac(secret_key, body)).encode(), mac.encode("utf-8", "replace")):
            raise Invalid("this is not a quote the hub gave", slug="invalid-quote")
        doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return cls(uuid.UUID(doc["q"]), uuid.UUID(doc["m"]), doc["f"], doc["t"], doc["p"], doc["o"],
                   Decimal(doc["fv"]), Decimal(doc["tv"]), doc["b"], Decimal(doc["fee"]),
                   datetime.fromtimestamp(doc["x"], timezone.utc), tuple(doc["v"]))


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
    available: int  # the member's available points there (0 for a hosted program: not held here)
    remote_member: str | None  # the member's number at the partner (hosted programs)
    rate_id: int  # the program's current rate (program_rates.id)


@dataclass(frozen=True)
class _Pair:
    fee_bps: int
    min_points: int
    increment: int
    version: int  # its last change, in microseconds since the epoch


def _sides_statement():
    """Both programs (by code), the member's account in each with its balance, their number
    at a hosting partner, and the pair's terms (on the source's row): one round trip."""
    p, m, a, i = Program.__table__, Membership.__table__, Account.__table__, MembershipIdentifier.__table__
    cp, r = ConversionPair.__table__, ProgramRate.__table__
    remote = (select(as_stored(i.c.value)).where(i.c.membership_id == m.c.id, i.c.kind == "external_id")
              .limit(1).scalar_subquery())
    rate_id = select(func.max(r.c.id)).where(r.c.program_id == p.c.id).scalar_subquery()
    target_id = select(p.c.id).where(p.c.code == bindparam("to_code")).scalar_subquery()
    return (
        select(p.c.id, p.c.code, p.c.partner_id, p.c.point_value, p.c.clearing_account_id, p.c.hosted_by,
               a.c.id, a.c.ledger, a.c.cached, a.c.no_overdraft,
               a.c.credits_posted - a.c.debits_posted - a.c.debits_pending, remote, rate_id,
               cp.c.open, cp.c.fee_bps, cp.c.min_points, cp.c.increment, cp.c.updated_at)
        .select_from(
            p.outerjoin(m, and_(m.c.program_id == p.c.id, m.c.member_id == bindparam("member")))
            .outerjoin(a, a.c.id == m.c.account_id)
            .outerjoin(cp, and_(cp.c.from_program_id == p.c.id, cp.c.to_program_id == target_id))
        )
        .where(p.c.code.in_([bindparam("from_code"), bindparam("to_code")]))
    )


_SIDES = _sides_statement()


def _load(session: Session, actor: Actor, member_id: uuid.UUID, from_code: str,
          to_code: str) -> tuple[_Side, _Side, _Pair]:
    """The two sides and the pair's terms; refuses what cannot convert at all, or not by
    this caller (a partner converts out of its own programs only)."""
    rows, _ = run(session.connection(), _SIDES, {"member": member_id, "from_code": from_code, "to_code": to_code})
    sides, pair = {}, None
    for (pid, code, partner_id, value, clearing, hosted_by, *account, available, remote_member, rate_id,
         is_open, fee_bps, min_points, increment, updated_at) in rows:
        program = SimpleNamespace(id=pid, code=code, partner_id=partner_id, point_value=Decimal(value),
                                  clearing_account_id=clearing, hosted_by=hosted_by)
        sides[code] = _Side(program, AccountInfo(*account) if account[0] is not None else None,
                            available or 0, _identifier_value.open(remote_member), rate_id)
        if code == from_code and is_open:
            pair = _Pair(fee_bps, min_points, increment, _micros(updated_at))
    for code in (from_code, to_code):
        if code not in sides:
            raise NotFound(f"no program {code}", slug="program-not-found")
    if actor.member_id is None:
        if sides[from_code].program.partner_id != actor.partner_id:
            raise NotFound(f"no program {from_code}", slug="program-not-found")
        if sides[from_code].account is None:
            raise NotFound(f"no member of {from_code} with that member_id", slug="member-not-found")
    for code in (from_code, to_code):
        side = sides[code]
        if side.account is None:
            raise Invalid(f"the member has no membership in {code}: enrol first", slug="not-a-member")
        if side.program.hosted_by and not side.remote_member:
            raise Invalid(f"the member's {code} membership has no external_id to name them to the partner",
                          slug="not-a-member")
    if pair is None:
        raise Invalid(f"{from_code} cannot be converted into {to_code}", slug="conversion-closed")
    return sides[from_code], sides[to_code], pair


def _micros(at) -> int:
    """A timestamp as `run` returns it (a datetime, or SQLite's text) in microseconds."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return int(at.timestamp() * 1_000_000)


def _versions(source: _Side, target: _Side, pair: _Pair) -> tuple[int, int, int]:
    return source.rate_id, target.rate_id, pair.version


def _member_of(session: Session, actor: Actor, body: dict) -> uuid.UUID:
    """Whose points: a member converts their own; a partner names the member, and converts
    only out of its own programs (it spends its own programs' points, as for redemptions)."""
    if actor.member_id is not None:
        return actor.member_id
    if "member" not in body:
        raise Invalid("name the member the points belong to", slug="member-required")
    ((kind, value),) = body["member"].items()
    if kind == "member_id":  # no query: _load checks the program is the partner's and the membership
        return uuid.UUID(value)
    program = session.scalar(select(Program).where(Program.code == body["from"],
                                                   Program.partner_id == actor.partner_id))
    if program is None:
        raise NotFound(f"no program {body['from']}", slug="program-not-found")
    return resolve_membership(session, program, body["member"]).member_id


def quote(session: Session, actor: Actor, body: dict, terms: Terms) -> tuple[Quote, "RemoteCheck | None"]:
    """What converting `points` from one program into another gives now, signed. Out of a
    partner-hosted program, also the check of the member's balance at the partner, which the
    caller runs after its transaction (no database connection waits on a partner)."""
    from_code, to_code, points = body["from"], body["to"], body["points"]
    if from_code == to_code:
        raise Invalid("convert between two different programs", slug="same-program")
    member_id = _member_of(session, actor, body)
    source, target, pair = _load(session, actor, member_id, from_code, to_code)
    amounts = _amounts(pair, source, target, points)
    check = None
    if source.program.hosted_by:
        check = RemoteCheck(source.program.hosted_by, source.program.code, source.remote_member, points)
    elif source.available < points:
        raise ledger.InsufficientFunds(source.account.id)
    q = Quote(uuid.uuid4(), member_id, from_code, to_code, points, amounts.points_out,
              source.program.point_value, target.program.point_value, pair.fee_bps, amounts.fee_units,
              utcnow() + terms.quote_ttl, _versions(source, target, pair))
    return q, check


# Partner checks (quotes out of a hosted program) at once per process, and when a partner's
# breaker opens (consecutive failures) and for how long.
CHECKS_IN_FLIGHT = 4
CHECK_BREAKER_FAILURES = 5
CHECK_BREAKER_RESET = 30.0
_checks_in_flight = threading.BoundedSemaphore(CHECKS_IN_FLIGHT)
_breakers: dict[str, Breaker] = {}


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
        # A slow or failing partner must not hold the threads that serve everything else (the
        # API runs this on its request threads): a few checks at a time per process, and a
        # partner that keeps failing is not asked again for a while.
        breaker = _breakers.setdefault(self.connector, Breaker(CHECK_BREAKER_FAILURES, CHECK_BREAKER_RESET))
        if not breaker.admit():
            raise PartnerUnavailable(f"{self.program_code}'s partner is not answering: try again later")
        if not _checks_in_flight.acquire(blocking=False):
            breaker.abandon()
            raise PartnerUnavailable(f"{self.program_code}'s partner is busy: try again shortly")
        try:
            check = connector.validate(self.remote_member)
        except HostedUnavailable as exc:
            breaker.failure()
            raise PartnerUnavailable(f"{self.program_code}'s partner did not answer: {exc}") from exc
        except BaseException:
            breaker.abandon()
            raise
        finally:
            _checks_in_flight.release()
        breaker.success()
        if not check.valid:
            raise Invalid(f"{self.program_code}'s partner does not know this member", slug="not-a-member")
        if check.balance is not None and check.balance < self.points:
            raise Conflict(f"the member holds {check.balance} {self.program_code} points",
                           slug="insufficient-points")


def _amounts(pair: _Pair, source: _Side, target: _Side, points: int) -> rates.Amounts:
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
    source, target, pair = _load(session, actor, member_id, q.from_code, q.to_code)
    # Terms changed since the quote (a rate, even changed and changed back; the pair's fee,
    # minimum or step): refused. A change committed while this transaction runs orders after
    # it: the conversion read the terms first, as if it had committed first.
    if _versions(source, target, pair) != q.versions:
        raise Conflict("the rate or the pair's terms changed since the quote: ask for a new one",
                       slug="quote-stale")
    amounts = _amounts(pair, source, target, q.points_in)

    conversion_id = uuid.uuid4()
    row = dict(_UNSET, id=conversion_id, quote_id=q.id, member_id=member_id, from_program_id=source.program.id,
               to_program_id=target.program.id, points_in=q.points_in, points_out=q.points_out,
               from_value=q.from_value, to_value=q.to_value, fee_bps=q.fee_bps, fee_units=amounts.fee_units,
               units_out=amounts.units_out, attempts=0, remote_maybe_sent=False, caused_by=actor.ref,
               created_at=now)
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
    else:
        announce_completed(session, conversion_id, source.program.id, target.program.id)
    return ConversionView(Conversion(**row), q.from_code, q.to_code)


def announce_completed(session: Session, conversion_id: uuid.UUID, from_program_id: uuid.UUID,
                       to_program_id: uuid.UUID) -> None:
    """conversion.completed to the partners of both programs (one read when none listens)."""
    def data() -> dict:
        source, target = aliased(Program), aliased(Program)
        c = session.execute(
            select(Conversion.member_id, Conversion.points_in, Conversion.points_out,
                   source.code.label("from_program"), target.code.label("to_program"))
            .join(source, source.id == Conversion.from_program_id).join(target, target.id == Conversion.to_program_id)
            .where(Conversion.id == conversion_id)).one()
        return {"conversion_id": str(conversion_id), "member_id": str(c.member_id), "from_program": c.from_program,
                "to_program": c.to_program, "points_in": c.points_in, "points_out": c.points_out}

    webhooks.emit_for_programs(session, (from_program_id, to_program_id), "conversion.completed", data)


def _leg(side: _Side, points: int, *, debit: bool, conversion_id: uuid.UUID, actor: Actor) -> ledger.TransferSpec:
    member, clearing = side.account.id, side.program.clearing_account_id
    return ledger.TransferSpec(
        debit=member if debit else clearing, credit=clearing if debit else member, amount=points,
        code=TRANSFER_CODE, ledger=side.program.id, caused_by=actor.ref, ref_type="conversion",
        ref_id=str(conversion_id),
    )


def _insert_once(session: Session, row: dict) -> None:
    """Insert the conversion; a quote already executed (unique quote_id) refuses it. A
    concurrent execution of the same quote waits for the first to commit, then inserts
    nothing (no savepoint's two extra round trips)."""
    conn = session.connection()
    inserted, _ = run(conn, _INSERT_ONCE[conn.dialect.name], row)
    if not inserted:
        raise Conflict("this quote has already been used", slug="quote-used")


@dataclass(frozen=True)
class ConversionView:
    conversion: Conversion
    from_code: str
    to_code: str


def _visible(q, actor: Actor, source, target):
    """A member's own (through a partner's app, narrowed by sharing.through_brand: also only
    those of that partner's programs), a partner's (either side is its program), or all (ops)."""
    if actor.member_id is not None:
        q = q.where(Conversion.member_id == actor.member_id)
        if actor.partner_id is None:
            return q
    elif "ops:read" in actor.scopes:
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


def by_ids(session: Session, actor: Actor, ids: list[uuid.UUID]) -> dict[uuid.UUID, ConversionView]:
    """Several conversions at once, by id (those the caller may see): the member's dashboard
    names both programs of each conversion leg in their activity."""
    if not ids:
        return {}
    rows = session.execute(_query(actor).where(Conversion.id.in_(ids)))
    return {row[0].id: ConversionView(*row) for row in rows}


def list_conversions(session: Session, actor: Actor, cursor: str | None, limit: int,
                     member_id: uuid.UUID | None = None) -> tuple[list[ConversionView], str | None]:
    """Newest first: a member's own, a partner's (either side is its program), or all (ops)."""
    q = _query(actor)
    if member_id is not None:
        q = q.where(Conversion.member_id == member_id)
    rows, next_cursor = pagination.newest_first(session, q, Conversion.created_at, Conversion.id, cursor, limit,
                                                lambda row: (row[0].created_at, row[0].id))
    return [ConversionView(*row) for row in rows], next_cursor
