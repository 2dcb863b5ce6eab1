"""Program prices: what a point is worth in money, dated, and the hub's fee on issuance."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.audit import trail
from hub.errors import Conflict, Invalid, NotFound
from hub.programs.models import Program
from hub.settlement.models import ProgramPrice, SettlementPeriod
from hub.settlement.periods import FIRST_YEAR, LAST_YEAR

_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_FEE_BPS = 10_000


def set_price(session: Session, actor_ref: str, program_code: str, effective_from: datetime,
              currency: str, per_point: str, fee_bps: int) -> ProgramPrice:
    """Price `program_code`'s points from `effective_from` on; audited. Refused (409) inside a
    closed period: its statements were computed at the old price; and in a currency other than
    the program's other prices: a statement sums a program's values in one currency."""
    # Locked (PostgreSQL) so two first prices in different currencies cannot both pass the check.
    program = session.scalar(select(Program).where(Program.code == program_code).with_for_update())
    if program is None:
        raise NotFound(f"no program {program_code!r}")
    if effective_from.tzinfo is None:
        raise Invalid("effective_from needs a time zone (UTC)", slug="invalid-price")
    try:
        effective_from = effective_from.astimezone(timezone.utc)
    except OverflowError:
        effective_from = None
    if effective_from is None or not FIRST_YEAR <= effective_from.year <= LAST_YEAR:
        raise Invalid(f"effective_from must fall in the years {FIRST_YEAR} to {LAST_YEAR}", slug="invalid-price")
    if not _CURRENCY.match(currency or ""):
        raise Invalid(f"currency {currency!r} is not an ISO 4217 code", slug="invalid-price")
    amount = _per_point(per_point)
    if isinstance(fee_bps, bool) or not isinstance(fee_bps, int) or not 0 <= fee_bps <= MAX_FEE_BPS:
        raise Invalid(f"fee_bps must be an integer from 0 to {MAX_FEE_BPS}", slug="invalid-price")
    closed_until = session.scalar(select(func.max(SettlementPeriod.ends_at)))
    if closed_until is not None and effective_from < closed_until:
        raise Conflict(f"{effective_from.isoformat()} is inside a closed settlement period "
                       f"(closed until {closed_until.isoformat()})", slug="period-closed")
    other = session.scalar(select(ProgramPrice.currency).where(
        ProgramPrice.program_id == program.id, ProgramPrice.effective_from != effective_from,
        ProgramPrice.currency != currency).limit(1))
    if other is not None:
        raise Conflict(f"program {program.code} is priced in {other}, not {currency}: a program settles in one "
                       f"currency (a new settlement currency is a new program)", slug="price-currency-change")
    existing = session.scalar(select(ProgramPrice).where(
        ProgramPrice.program_id == program.id, ProgramPrice.effective_from == effective_from))
    before = None if existing is None else _audit(existing)
    price = existing or ProgramPrice(program_id=program.id, effective_from=effective_from)
    price.currency, price.per_point_minor, price.issuance_fee_bps = currency, amount, fee_bps
    price.created_by = actor_ref
    session.add(price)
    session.flush()
    trail.record(session, actor=actor_ref, action="settlement.price.set", target=f"program:{program.code}",
                 before=before, after=_audit(price))
    return price


def prices(session: Session, program_code: str) -> list[ProgramPrice]:
    program_id = session.scalar(select(Program.id).where(Program.code == program_code))
    if program_id is None:
        raise NotFound(f"no program {program_code!r}")
    return list(session.scalars(select(ProgramPrice).where(ProgramPrice.program_id == program_id)
                                .order_by(ProgramPrice.effective_from)))


def _per_point(text: str) -> Decimal:
    try:
        amount = Decimal(str(text))
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -6:
        raise Invalid(f"per_point {text!r} must be a decimal >= 0 with at most 6 decimals", slug="invalid-price")
    return amount


def _audit(price: ProgramPrice) -> dict:
    return {"effective_from": price.effective_from.isoformat(), "currency": price.currency,
            "per_point_minor": format(price.per_point_minor.normalize(), "f"),
            "issuance_fee_bps": price.issuance_fee_bps}
