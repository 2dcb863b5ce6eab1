"""Table-driven tests of the engagement rules that need no database: which purchases count
toward a challenge, the offers' relevance scores and their order, promotion targeting, and
how member attributes are normalised."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from hub.errors import Invalid
from hub.rules import attributes, challenges
from hub.rules.challenges import Goal, Open
from hub.rules.offers import (
    Offer,
    challenge_score,
    promotion_reason,
    promotion_score,
    promotions_in_force,
    rank,
    reward_score,
)
from hub.rules.versions import RuleSet

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
START, END = NOW - timedelta(days=10), NOW + timedelta(days=10)


def _open(**goal) -> Open:
    return Open(uuid.uuid4(), "C", START, END, Goal(**{"kind": "purchases", "target": 3, **goal}))


@pytest.mark.parametrize("goal, purchase, counts", [
    ({}, ("KOPI", "IDR", 100, NOW), True),
    ({}, ("KOPI", "IDR", 100, START), True),  # the start is in the window
    ({}, ("KOPI", "IDR", 100, END), False),  # the end is not
    ({}, ("KOPI", "IDR", 100, START - timedelta(seconds=1)), False),
    ({"programs": frozenset({"KOPI", "MILES"})}, ("MILES", "IDR", 100, NOW), True),
    ({"programs": frozenset({"KOPI"})}, ("BOOK", "IDR", 100, NOW), False),
    ({"currency": "IDR", "min_amount": 5000}, ("KOPI", "IDR", 5000, NOW), True),
    ({"currency": "IDR", "min_amount": 5000}, ("KOPI", "IDR", 4999, NOW), False),
    ({"currency": "IDR", "min_amount": 1}, ("KOPI", "SGD", 5000, NOW), False),  # another currency
])
def test_which_purchases_count_toward_a_challenge(goal, purchase, counts):
    assert _open(**goal).counts(*purchase) is counts


@pytest.mark.parametrize("doc", [
    {"kind": "purchases", "target": 3},
    {"kind": "spend", "target": 100, "currency": "IDR", "programs": ["B", "A"], "min_amount": 5},
])
def test_a_goal_round_trips_through_its_document(doc):
    assert Goal.of(doc).as_dict() == {**doc, **({"programs": sorted(doc["programs"])} if "programs" in doc else {})}


@pytest.mark.parametrize("price, available, expected", [
    (800, 1000, (800, "affordable")),
    (1000, 1000, (800, "affordable")),
    (1600, 800, (400, "almost_affordable")),  # exactly half held
    (1600, 1000, (500, "almost_affordable")),
    (1600, 1599, (799, "almost_affordable")),
    (1600, 799, None),  # under half: not offered
    (1600, 0, None),
])
def test_reward_relevance(price, available, expected):
    assert reward_score(price, available) == expected


@pytest.mark.parametrize("reason, ends_in, expected", [
    ("segment", timedelta(days=10), 700),
    ("tier", timedelta(days=10), 650),
    ("everyone", None, 500),
    ("everyone", timedelta(days=3), 600),  # ending soon
    ("segment", timedelta(hours=1), 800),
])
def test_promotion_relevance(reason, ends_in, expected):
    assert promotion_score(reason, NOW + ends_in if ends_in else None, NOW) == expected


@pytest.mark.parametrize("progress, target, ends_in, expected", [
    (None, 3, timedelta(days=10), 300),  # a partner's view: progress unknown
    (0, 3, timedelta(days=10), 300),
    (2, 4, timedelta(days=10), 550),
    (1, 3, timedelta(days=10), 466),
    (5, 4, timedelta(days=10), 800),  # capped at the goal
    (2, 4, timedelta(days=1), 650),
])
def test_challenge_relevance(progress, target, ends_in, expected):
    assert challenge_score(progress, target, NOW + ends_in, NOW) == expected


def _rules(*promotions: dict) -> RuleSet:
    return RuleSet(uuid.uuid4(), 1, START, {"promotions": [
        {"id": f"P{i}", "name": "Promotion", "starts_at": START.isoformat(), "ends_at": END.isoformat(),
         "bonus": 10, "budget_points": 100, **p} for i, p in enumerate(promotions)]})


@pytest.mark.parametrize("target, tier, segments, expected", [
    (None, None, set(), "everyone"),
    ({}, "GOLD", set(), "everyone"),
    ({"tiers": ["GOLD"]}, "GOLD", set(), "tier"),
    ({"tiers": ["GOLD"]}, "SILVER", set(), None),
    ({"tiers": ["GOLD"]}, None, set(), None),
    ({"segments": ["VIP"]}, None, {"VIP", "NEW"}, "segment"),
    ({"segments": ["VIP"]}, "GOLD", {"NEW"}, None),
    ({"tiers": ["GOLD"], "segments": ["VIP"]}, "GOLD", {"VIP"}, "segment"),  # the narrower reason
    ({"tiers": ["GOLD"], "segments": ["VIP"]}, "GOLD", set(), "tier"),  # either takes the member in
    ({"tiers": ["GOLD"], "segments": ["VIP"]}, None, {"VIP"}, "segment"),
])
def test_promotion_targeting(target, tier, segments, expected):
    (promotion,) = promotions_in_force(_rules({"target": target} if target is not None else {}), NOW)
    assert promotion_reason(promotion, tier, segments) == expected


def test_offers_are_ordered_by_score_then_soonest_end_then_kind_then_code():
    soon, later = NOW + timedelta(days=1), NOW + timedelta(days=5)
    offers = [
        Offer("reward", "B", "b", "KOPI", 800, "affordable"),
        Offer("reward", "A", "a", "KOPI", 800, "affordable"),
        Offer("challenge", "C", "c", None, 800, "challenge", later),
        Offer("promotion", "P", "p", "KOPI", 800, "everyone", later),
        Offer("promotion", "Q", "q", "KOPI", 800, "everyone", soon),
        Offer("reward", "Z", "z", "KOPI", 900, "affordable"),
    ]
    expected = ["Z", "Q", "P", "C", "A", "B"]
    assert [o.code for o in rank(offers)] == expected
    assert [o.code for o in rank(list(reversed(offers)))] == expected


@pytest.mark.parametrize("name, value, stored", [
    ("city", "  Jakarta ", "jakarta"),
    ("interests", "Coffee", "coffee"),
    ("preferred_language", "id", "id"),
    ("birth_month", 11, "11"),
])
def test_attributes_are_stored_normalised(name, value, stored):
    assert attributes.normalise(name, value) == stored


@pytest.mark.parametrize("name, value", [
    ("birth_month", 0), ("birth_month", 13), ("birth_month", "11"), ("birth_month", True),
    ("city", ""), ("city", "   "), ("city", "x" * 101), ("interests", 3),
])
def test_bad_attribute_values_are_refused(name, value):
    with pytest.raises(Invalid) as refused:
        attributes.normalise(name, value)
    assert refused.value.slug == "invalid-attribute"


def test_the_earn_path_makes_no_query_for_purchases_no_open_challenge_counts(monkeypatch):
    """The handler decides from its cache alone: the session (None here) is never touched."""
    purchase = SimpleNamespace(program_code="KOPI", currency="IDR", amount_minor=100, occurred_at=NOW,
                               member_id=uuid.uuid4())
    for cached in ((), (_open(programs=frozenset({"MILES"})),)):
        monkeypatch.setattr(challenges, "_cache", (challenges.time.monotonic(), cached))
        challenges.on_purchases(None, None, [purchase])


@pytest.mark.parametrize("starts, ends, running", [
    (NOW - timedelta(days=1), NOW + timedelta(days=1), True),
    (NOW, NOW + timedelta(days=1), True),  # starts now
    (NOW - timedelta(days=1), NOW, False),  # ended now
    (NOW + timedelta(hours=1), NOW + timedelta(days=1), False),  # not yet
])
def test_promotions_in_force_run_from_start_to_end(starts, ends, running):
    rules = _rules({"starts_at": starts.isoformat(), "ends_at": ends.isoformat()})
    assert [p.id for p in promotions_in_force(rules, NOW)] == (["P0"] if running else [])


def test_rules_without_promotions_offer_none():
    assert promotions_in_force(None, NOW) == []
    assert promotions_in_force(RuleSet(uuid.uuid4(), 1, START, {"welcome": {"points": 5}}), NOW) == []
