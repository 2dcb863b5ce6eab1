"""Rates and pairs: what a program's point is worth, and the terms of each conversion pair.

A program's point value in coalition units is dated: every change adds a row to its history
(program_rates) and updates programs.point_value, which always holds the newest value, in
the same transaction. A pair (one direction) may charge a fee in basis points and ask for a
minimum and an increment of source points; no pair row, or a closed one, refuses.

The arithmetic is exact (fractions, never floats) and always rounds the member's side down,
so a conversion never creates value: points_out * to_value + fee <= points_in * from_value.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from hub import pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import utcnow
from hub.errors import Invalid, NotFound
from hub.exchange.models import ConversionPair, ProgramRate
from hub.programs.models import Program

MAX_FEE_BPS = 10_000
MAX_POINTS = 10**12


@dataclass(frozen=True)
class Amounts:
    points_out: int
    fee_units: Decimal   # the fee, in coalition units
    units_out: Decimal   # the value credited: points_out * to_value
    kept_units: Decimal  # what rounding down kept for the coalition (breakage)


def convert(points_in: int, from_value: Decimal, to_value: Decimal, fee_bps: int) -> Amounts:
    """What `points_in` source points become: the fee is taken from their value, and the
    rest buys whole target points, rounded down."""
    gross = Fraction(points_in) * Fraction(from_value)
    fee = gross * Fraction(fee_bps, MAX_FEE_BPS)
    net = gross - fee
    points_out = int(net / Fraction(to_value))  # floor: both are positive
    units_out = Fraction(points_out) * Fraction(to_value)
    return Amounts(points_out, _decimal(fee), _decimal(units_out), _decimal(net - units_out))


def _decimal(value: Fraction) -> Decimal:
    """An exact decimal: every value here is a product of decimals and of n/10000."""
    decimal = Decimal(value.numerator) / Decimal(value.denominator)
    if Fraction(decimal) != value:  # cannot happen with decimal inputs; refuse rather than round
        raise ArithmeticError(f"{value} has no exact decimal")
    return decimal.normalize()


@dataclass(frozen=True)
class PairView:
    from_code: str
    to_code: str
    from_value: Decimal
    to_value: Decimal
    open: bool
    fee_bps: int
    min_points: int
    increment: int
    updated_at: datetime

    @property
    def rate(self) -> Amounts:
        """What one increment of source points buys (the published example)."""
        return convert(self.increment, self.from_value, self.to_value, self.fee_bps)


def check_value(point_value: Decimal) -> None:
    if not (point_value.is_finite() and point_value > 0):
        raise Invalid("point_value must be a number greater than zero", slug="invalid-rate")


def set_rate(session: Session, program_code: str, point_value: Decimal, set_by: str) -> ProgramRate:
    """A new point value for a program, effective now. Quotes made on the old value are
    refused from now on (hub.exchange.conversions checks the value at execution)."""
    check_value(point_value)
    program = _program(session, program_code, lock=True)
    now = utcnow()
    rate = ProgramRate(program_id=program.id, point_value=point_value, valid_from=now, set_by=set_by)
    session.add(rate)
    trail.record(session, actor=set_by, action="rate.set", target=f"program:{program_code}",
                 before={"point_value": str(program.point_value)}, after={"point_value": str(point_value)})
    program.point_value = point_value
    session.flush()
    return rate


def rate_history(session: Session, program_code: str, cursor: str | None,
                 limit: int) -> tuple[list[ProgramRate], str | None]:
    """A program's rates, newest first (ids grow with valid_from: a rate takes effect when
    it is set)."""
    before = pagination.id_cursor(cursor)
    program = _program(session, program_code)
    q = select(ProgramRate).where(ProgramRate.program_id == program.id)
    if before is not None:
        q = q.where(ProgramRate.id < before)
    rows = list(session.scalars(q.order_by(ProgramRate.id.desc()).limit(limit + 1)))
    return rows[:limit], pagination.encode(rows[limit - 1].id) if len(rows) > limit else None


def set_pair(
    session: Session,
    from_code: str,
    to_code: str,
    *,
    open: bool,
    fee_bps: int = 0,
    min_points: int = 1,
    increment: int = 1,
    updated_by: str,
) -> "PairView":
    """Open, close or re-price one direction of a pair (the other direction is its own); the
    pair as it now stands."""
    if from_code == to_code:
        raise Invalid("a pair joins two different programs", slug="same-program")
    if not 0 <= fee_bps < MAX_FEE_BPS:
        raise Invalid("fee_bps must be 0..9999", slug="invalid-pair")
    if not (0 < increment <= MAX_POINTS and 0 < min_points <= MAX_POINTS):
        raise Invalid("minimum and increment must be positive", slug="invalid-pair")
    source, target = _program(session, from_code), _program(session, to_code)
    if source.hosted_by and target.hosted_by:
        raise Invalid("both programs are hosted by their partners: convert through a hub program",
                      slug="unsupported-pair")
    pair = session.get(ConversionPair, (source.id, target.id), with_for_update=True)
    before = None if pair is None else _terms(pair)
    if pair is None:
        pair = ConversionPair(from_program_id=source.id, to_program_id=target.id)
        session.add(pair)
    pair.open, pair.fee_bps, pair.min_points, pair.increment = open, fee_bps, min_points, increment
    pair.updated_by, pair.updated_at = updated_by, utcnow()
    trail.record(session, actor=updated_by, action="pair.set", target=f"pair:{from_code}>{to_code}",
                 before=before, after=_terms(pair))
    session.flush()
    return PairView(source.code, target.code, source.point_value, target.point_value, pair.open, pair.fee_bps,
                    pair.min_points, pair.increment, pair.updated_at)


def _terms(pair: ConversionPair) -> dict:
    return {"open": pair.open, "fee_bps": pair.fee_bps, "min_points": pair.min_points, "increment": pair.increment}


def list_pairs(session: Session, actor: Actor, program_code: str | None = None,
               include_closed: bool = False) -> list[PairView]:
    """Pairs with their current rates, by source then target code. Rates are public to every
    caller of the API (members compare them), so no tenancy filter."""
    source, target = aliased(Program), aliased(Program)
    q = (
        select(ConversionPair, source.code, target.code, source.point_value, target.point_value)
        .join(source, source.id == ConversionPair.from_program_id)
        .join(target, target.id == ConversionPair.to_program_id)
        .order_by(source.code, target.code)
    )
    if not include_closed:
        q = q.where(ConversionPair.open.is_(True))
    if program_code:
        q = q.where((source.code == program_code) | (target.code == program_code))
    return [
        PairView(from_code, to_code, from_value, to_value, pair.open, pair.fee_bps, pair.min_points,
                 pair.increment, pair.updated_at)
        for pair, from_code, to_code, from_value, to_value in session.execute(q)
    ]


def _program(session: Session, code: str, lock: bool = False) -> Program:
    q = select(Program).where(Program.code == code)
    program = session.scalar(q.with_for_update() if lock else q)
    if program is None:
        raise NotFound(f"no program {code}", slug="program-not-found")
    return program
