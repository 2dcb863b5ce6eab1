"""The pooled-spending arithmetic (hub/exchange/pooling.py): examples, then properties."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings, strategies as st

from hub.errors import Invalid
from hub.exchange.pooling import Leg, Source, check_split, cheapest_first, plan


def worth(legs, sources) -> Fraction:
    value = {s.code: Fraction(s.value) for s in sources}
    return sum((value[leg.code] * leg.points for leg in legs), Fraction(0))


# --- examples ----------------------------------------------------------------------------

def test_draws_in_order_and_rounds_only_the_last_leg_up():
    sources = [Source("A", Decimal("10"), 3), Source("B", Decimal("4"), 100)]
    # 3 A points pay 30 of 55 units; 25 more need ceil(25 / 4) = 7 B points (28 units).
    assert plan(Decimal("55"), sources) == [Leg("A", 3), Leg("B", 7)]


def test_gives_back_the_points_the_last_leg_s_rounding_made_superfluous():
    sources = [Source("CHEAP", Decimal("0.01"), 550), Source("DEAR", Decimal("1"), 100)]
    # Draining CHEAP pays 5.5 of 10 units; DEAR rounds 4.5 up to 5 points, so 50 CHEAP points
    # are not needed: 500 CHEAP + 5 DEAR is exactly 10 units.
    assert plan(Decimal("10"), sources) == [Leg("CHEAP", 500), Leg("DEAR", 5)]


def test_a_leg_given_back_entirely_is_dropped():
    sources = [Source("CHEAP", Decimal("0.01"), 1), Source("DEAR", Decimal("1"), 100)]
    assert plan(Decimal("10"), sources) == [Leg("DEAR", 10)]


def test_one_program_that_covers_the_price_pays_alone_and_empty_ones_are_skipped():
    sources = [Source("EMPTY", Decimal("1"), 0), Source("A", Decimal("3"), 10), Source("B", Decimal("1"), 10)]
    assert plan(Decimal("7"), sources) == [Leg("A", 3)]


def test_not_enough_together_is_none():
    assert plan(Decimal("100"), [Source("A", Decimal("10"), 5), Source("B", Decimal("1"), 49)]) is None
    assert plan(Decimal("1"), []) is None


def test_cheapest_first_spends_the_points_worth_least_first():
    sources = [Source("B", Decimal("2"), 1), Source("C", Decimal("0.5"), 1), Source("A", Decimal("2"), 1)]
    assert [s.code for s in cheapest_first(sources)] == ["C", "A", "B"]


def test_a_split_must_cover_the_price():
    with pytest.raises(Invalid) as err:
        check_split(Decimal("55"), [("A", Decimal("10"), 3), ("B", Decimal("4"), 6)])
    assert err.value.slug == "split-below-price" and "54" in err.value.detail


def test_a_split_may_not_take_a_point_it_does_not_need():
    check_split(Decimal("55"), [("A", Decimal("10"), 3), ("B", Decimal("4"), 7)])  # 58: every point needed
    with pytest.raises(Invalid) as err:  # 60: one A point fewer (50) no longer covers, one B point fewer (56) does
        check_split(Decimal("55"), [("A", Decimal("10"), 3), ("B", Decimal("4"), 8)])
    assert err.value.slug == "split-above-price" and "B" in err.value.detail


# --- properties --------------------------------------------------------------------------

# Point values as programs set them: decimals with up to 4 places, from 0.0001 to 1000 units.
values = st.integers(1, 10_000_000).map(lambda n: Decimal(n).scaleb(-4))
sources_st = st.lists(
    st.builds(Source, code=st.just(""), value=values, available=st.integers(0, 10**7)), max_size=6,
).map(lambda ss: [Source(f"P{i}", s.value, s.available) for i, s in enumerate(ss)])
prices = st.integers(1, 10**9).map(lambda n: Decimal(n).scaleb(-2))


@settings(max_examples=500, deadline=None)
@given(price=prices, sources=sources_st)
@example(price=Decimal("10"), sources=[Source("P0", Decimal("0.01"), 550), Source("P1", Decimal("1"), 100)])
def test_plan_properties(price, sources):
    legs = plan(price, sources)
    total_available = sum((Fraction(s.value) * s.available for s in sources), Fraction(0))
    if legs is None:
        assert total_available < Fraction(price)
        return
    by_code = {s.code: s for s in sources}
    position = {s.code: i for i, s in enumerate(sources)}
    paid = worth(legs, sources)
    # Covers the price, and never a point too many: every leg's rounding is less than one of
    # its points (the whole excess is less than one point of each leg).
    assert paid >= Fraction(price)
    for leg in legs:
        assert paid - Fraction(by_code[leg.code].value) < Fraction(price)
    # Never negative or zero, never more than the member holds, each program once.
    assert all(0 < leg.points <= by_code[leg.code].available for leg in legs)
    assert len({leg.code for leg in legs}) == len(legs)
    # Respects the order: legs come in the sources' order, nothing after the last leg's
    # program is used, and what the earlier programs keep is worth less than one point of the
    # last leg (the last program was needed).
    assert [position[leg.code] for leg in legs] == sorted(position[leg.code] for leg in legs)
    last = legs[-1]
    taken = {leg.code: leg.points for leg in legs}
    kept = sum((Fraction(s.value) * (s.available - taken.get(s.code, 0))
                for s in sources[:position[last.code]]), Fraction(0))
    assert kept < Fraction(by_code[last.code].value)
    # A planned split passes the check a member's own split must pass.
    check_split(price, [(leg.code, by_code[leg.code].value, leg.points) for leg in legs])


@settings(max_examples=300, deadline=None)
@given(price=prices, legs=st.lists(st.tuples(values, st.integers(1, 10**7)), min_size=1, max_size=5))
def test_check_split_accepts_exactly_the_covering_tight_splits(price, legs):
    named = [(f"P{i}", value, points) for i, (value, points) in enumerate(legs)]
    paid = sum((Fraction(v) * p for _, v, p in named), Fraction(0))
    covers = paid >= Fraction(price)
    tight = all(paid - Fraction(v) < Fraction(price) for _, v, _ in named)
    try:
        check_split(price, named)
    except Invalid as err:
        assert not (covers and tight)
        assert err.slug == ("split-below-price" if not covers else "split-above-price")
    else:
        assert covers and tight
