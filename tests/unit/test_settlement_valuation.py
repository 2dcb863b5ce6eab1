"""Settlement's rules: classifying transfers, closing points, money values and fees."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import Invalid
from hub.settlement import valuation as v
from hub.settlement.periods import Period

ACCOUNTS = v.SystemAccounts(issuance=1, redemption=2, clearing=3, breakage=4)
MEMBER, OTHER = 10, 11


@pytest.mark.parametrize(("debit", "credit", "category"), [
    (1, MEMBER, v.ISSUED),
    (MEMBER, 1, v.REVERSED),
    (MEMBER, 2, v.REDEEMED),
    (MEMBER, 3, v.CONVERTED_OUT),
    (3, MEMBER, v.CONVERTED_IN),
    (MEMBER, 4, v.BREAKAGE),
    (MEMBER, OTHER, None),  # member to member: no value moves
    (1, 3, None),  # between system accounts: not a member's points
])
def test_classify(debit, credit, category):
    assert v.classify(debit, credit, ACCOUNTS) == category


@pytest.mark.parametrize(("amount", "rounded"), [
    (Decimal("25.95"), 26), (Decimal("25.5"), 26), (Decimal("24.5"), 24), (Decimal("601.5"), 602),
    (Decimal("0.5"), 0), (Decimal("-0.5"), 0), (Decimal("7"), 7),
])
def test_minor_rounds_half_to_even(amount, rounded):
    assert v.minor(amount) == rounded


@pytest.mark.parametrize(("points", "per_point", "bps", "value", "fee"), [
    (173, Decimal("10"), 150, 1730, 26),
    (16040, Decimal("2.5"), 150, 40100, 602),
    (3, Decimal("10.5"), 0, 32, 0),  # 31.5 -> 32
    (1, Decimal("0.001"), 10_000, 0, 0),
])
def test_value_and_fee(points, per_point, bps, value, fee):
    exact = v.exact_value(points, per_point)
    assert (v.minor(exact), v.minor(v.exact_fee(exact, bps))) == (value, fee)


# Directions the ledger posts (hub.programs, hub.exchange, hub.rewards, hub.rules.expiry).
_MOVES = st.sampled_from([(1, "m"), ("m", 1), ("m", 2), ("m", 3), (3, "m"), ("m", 4), ("m", "m")])


@given(st.lists(st.tuples(_MOVES, st.integers(0, 4), st.integers(0, 4), st.integers(1, 1000)), max_size=60),
       st.integers(0, 10_000))
def test_closing_is_the_opening_plus_movements(moves, opening):
    """Whatever the mix, closing points equal what the members hold (opening held by one)."""
    members = [100 + i for i in range(5)]
    held = {m: 0 for m in members}
    held[members[0]] = opening
    movements: dict[str, int] = {}
    for (debit, credit), i, j, amount in moves:
        debit = members[i] if debit == "m" else debit
        credit = members[j if j != i else (j + 1) % 5] if credit == "m" else credit
        if debit in held:
            held[debit] -= amount
        if credit in held:
            held[credit] += amount
        category = v.classify(debit, credit, ACCOUNTS)
        if category:
            movements[category] = movements.get(category, 0) + amount
    assert v.closing(opening, movements) == sum(held.values())


def test_periods():
    p = Period.parse("2026-12")
    assert (p.starts_at, p.ends_at) == (datetime(2026, 12, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert (p.next().name, p.previous().name, Period.parse("2026-01").previous().name) == ("2027-01", "2026-11", "2025-12")
    grace = timedelta(minutes=15)
    assert not p.is_over(datetime(2027, 1, 1, 0, 14, tzinfo=timezone.utc), grace)
    assert p.is_over(datetime(2027, 1, 1, 0, 15, tzinfo=timezone.utc), grace)


@pytest.mark.parametrize("name", ["2026-13", "2026-1", "26-11", "2026-11-01", "", "2026-00", "0000-01", "9999-12"])
def test_malformed_periods_are_refused(name):
    with pytest.raises(Invalid):
        Period.parse(name)
