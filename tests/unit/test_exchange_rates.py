"""The conversion arithmetic (hub.exchange.rates.convert): exact, rounding for the coalition."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, strategies as st

from hub.exchange.rates import MAX_FEE_BPS, convert

# Point values as the API takes them: up to 12 integer digits and 8 decimals, above zero.
values = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000"), places=8)
points = st.integers(min_value=1, max_value=10**9)
fees = st.integers(min_value=0, max_value=MAX_FEE_BPS - 1)


def test_a_worked_example():
    # 1,000 points worth 10 units, 1% fee: 9,900 units buy 2,475 points worth 4.
    amounts = convert(1000, Decimal("10"), Decimal("4"), 100)
    assert (amounts.points_out, amounts.fee_units, amounts.units_out, amounts.kept_units) == (
        2475, Decimal("100"), Decimal("9900"), Decimal("0"))
    # Rounding down keeps the remainder: 10 units buy 3 points worth 3 (1 unit kept).
    assert convert(1, Decimal("10"), Decimal("3"), 0).points_out == 3
    assert convert(1, Decimal("10"), Decimal("3"), 0).kept_units == Decimal("1")


@given(points, values, values, fees)
def test_value_is_conserved_and_never_created(points_in, from_value, to_value, fee_bps):
    amounts = convert(points_in, from_value, to_value, fee_bps)
    assert amounts.points_out >= 0 and amounts.fee_units >= 0 and amounts.kept_units >= 0
    # What the member gets, the fee and what rounding kept are exactly what they gave.
    assert amounts.units_out + amounts.fee_units + amounts.kept_units == points_in * from_value
    # Rounding keeps less than one target point.
    assert amounts.kept_units < to_value


@given(points, values, values, fees, fees)
def test_there_and_back_never_yields_more_points(points_in, a_value, b_value, fee_ab, fee_ba):
    there = convert(points_in, a_value, b_value, fee_ab).points_out
    back = convert(there, b_value, a_value, fee_ba).points_out if there else 0
    assert back <= points_in
