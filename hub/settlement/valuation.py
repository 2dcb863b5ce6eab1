"""The pure rules of settlement: which category a transfer is, and what points are worth.

Kept free of the database so that they are tested table-driven (tests/unit); the close's
SQL (hub.settlement.statements) applies the same classification as a CASE."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

ISSUED = "issued"
REVERSED = "reversed"
REDEEMED = "redeemed"
CONVERTED_OUT = "converted_out"
CONVERTED_IN = "converted_in"
BREAKAGE = "breakage"
# Movements in the order a statement lists them, with the sign they take in closing points.
MOVEMENTS = {ISSUED: 1, REVERSED: -1, REDEEMED: -1, CONVERTED_OUT: -1, CONVERTED_IN: 1, BREAKAGE: -1}


@dataclass(frozen=True)
class SystemAccounts:
    """A program's system accounts (hub.programs.models.Program)."""

    issuance: int
    redemption: int
    clearing: int
    breakage: int

    def all(self) -> set[int]:
        return {self.issuance, self.redemption, self.clearing, self.breakage}


def classify(debit: int, credit: int, accounts: SystemAccounts) -> str | None:
    """The category of a posted transfer from `debit` to `credit` on the program, or None when
    it moves no value (member to member, or between system accounts)."""
    system = accounts.all()
    if (debit in system) == (credit in system):
        return None
    if debit == accounts.issuance:
        return ISSUED
    if credit == accounts.issuance:
        return REVERSED
    if credit == accounts.redemption:
        return REDEEMED
    if credit == accounts.clearing:
        return CONVERTED_OUT
    if debit == accounts.clearing:
        return CONVERTED_IN
    if credit == accounts.breakage:
        return BREAKAGE
    return None


def closing(opening: int, movements: dict[str, int]) -> int:
    """Points outstanding at the end: the opening plus each movement with its sign."""
    return opening + sum(MOVEMENTS[category] * points for category, points in movements.items())


def exact_value(points: int, per_point_minor: Decimal) -> Decimal:
    return points * per_point_minor


def exact_fee(value: Decimal, fee_bps: int) -> Decimal:
    return value * fee_bps / 10_000


def minor(amount: Decimal) -> int:
    """Round to whole minor units, half to even (banker's rounding: no drift either way)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
