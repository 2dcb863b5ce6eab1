"""Pooled spending: one price in coalition units paid with points of several programs.

Two rules decide every split, the member's own or one the hub plans:

- rounding favours the coalition: legs are whole points, and together they are worth at
  least the price (a leg's worth is its points x its program's point value);
- the hub takes no point it does not need: no leg could give up one point and still leave
  the price covered ("tight"). So the whole excess is less than one point of every leg.

A planned split draws from the programs in the order given, from each as much as is still
needed (rounded up to whole points) or all it holds, until the price is covered. Only the
last leg rounds up; the whole points its rounding makes superfluous are then given back to
the earlier legs (the latest first), which keeps the split tight. So every program before
the last one used is drained, except for points worth less than one point of the last.

Pure arithmetic (exact fractions, never floats); no database here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from hub.errors import Invalid


@dataclass(frozen=True)
class Source:
    """A program the member may pay with."""

    code: str
    value: Decimal   # one point's worth in coalition units (> 0)
    available: int   # points the member can spend now


@dataclass(frozen=True)
class Leg:
    code: str
    points: int


def cheapest_first(sources: Sequence[Source]) -> list[Source]:
    """The points worth least per point first (ties by program code, so the order is
    stable): the member keeps their most valuable points."""
    return sorted(sources, key=lambda s: (s.value, s.code))


def plan(price: Decimal, sources: Sequence[Source]) -> list[Leg] | None:
    """A tight split of `price` drawn from `sources` in their order, or None when all their
    available points together are worth less than the price."""
    remaining = Fraction(price)
    drawn: list[tuple[Source, int]] = []
    for source in sources:
        if remaining <= 0:
            break
        if source.available <= 0:
            continue
        value = Fraction(source.value)
        points = min(_ceil(remaining / value), source.available)
        drawn.append((source, points))
        remaining -= points * value
    if remaining > 0:
        return None
    # -remaining is the last leg's rounding (less than one of its points): whole points of
    # earlier legs inside it are not needed.
    excess = -remaining
    for i in range(len(drawn) - 2, -1, -1):
        source, points = drawn[i]
        value = Fraction(source.value)
        back = min(int(excess // value), points)
        drawn[i] = (source, points - back)
        excess -= back * value
    return [Leg(source.code, points) for source, points in drawn if points > 0]


def check_split(price: Decimal, legs: Sequence[tuple[str, Decimal, int]]) -> None:
    """Refuse a member's split (program code, point value, points) that does not cover the
    price, or that is not tight."""
    worth = sum((Fraction(value) * points for _, value, points in legs), Fraction(0))
    if worth < Fraction(price):
        raise Invalid(f"the split is worth {_units(worth)} units; the price is {price} units",
                      slug="split-below-price")
    for code, value, _ in legs:
        if worth - Fraction(value) >= Fraction(price):
            raise Invalid(f"the split is worth {_units(worth)} units for a price of {price}: it still covers "
                          f"the price with one {code} point fewer", slug="split-above-price")


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def _units(value: Fraction) -> str:
    """For messages: exact when it is a short decimal, else to 6 places."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return f"{exact.normalize():f}" if Fraction(exact) == value else f"{exact:.6f}"
