"""The frequency rules' pure parts, table-driven: their sections' schemas and linters (every
finding with its path), which purchases qualify, and periods in a program's time zone."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from hub.rules import document, periods, stamps
from hub.rules.effects import Item, PostedPurchase
from hub.rules.versions import RuleSet

CARD = {"id": "coffee", "name": "Coffee", "stamps": 10, "reward": {"bonus_points": 100}}
STREAK = {"id": "weekly", "period": "week", "length": 4, "bonus_points": 50}
REFERRAL = {"referrer_points": 100, "referee_points": 50, "max_per_referrer": {"count": 3, "per": "month"}}


@pytest.mark.parametrize("doc, expected", [
    # Well-formed documents: nothing found.
    ({"stamp_cards": [CARD], "streaks": [STREAK], "welcome": {"points": 10}, "referral": REFERRAL,
      "engagement": {"review": {"points": 5, "daily_cap": 2}, "app_download": {"points": 50, "once": True}}}, []),
    ({"referral": {"referrer_points": 1, "referee_points": 0, "allow_unbounded": True}}, []),
    ({"engagement": {"survey": {"points": 5, "allow_unbounded": True}}}, []),
    # Schema errors, at their paths.
    ({"stamp_cards": [{**CARD, "reward": {"bonus_points": 1, "reward_code": "X"}}]}, ["/stamp_cards/0/reward"]),
    ({"stamp_cards": [{**CARD, "when": {"channel": "phone"}}]}, ["/stamp_cards/0/when/channel"]),
    ({"streaks": [{**STREAK, "period": "year"}]}, ["/streaks/0/period"]),
    ({"welcome": {"points": -1}}, ["/welcome/points"]),
    ({"referral": {**REFERRAL, "max_per_referrer": {"count": 3, "per": "week"}}}, ["/referral/max_per_referrer/per"]),
    ({"engagement": {"tweet": {"points": 1, "once": True}}}, ["/engagement"]),
    # The linters: what a schema cannot say.
    ({"stamp_cards": [CARD, {**CARD, "name": "again"}]}, ["/stamp_cards/1/id"]),
    ({"stamp_cards": [{**CARD, "stamps": 1}]}, ["/stamp_cards/0/stamps"]),
    ({"stamp_cards": [{**CARD, "reward": {"bonus_points": 0}}]}, ["/stamp_cards/0/reward/bonus_points"]),
    ({"streaks": [STREAK, STREAK]}, ["/streaks/1/id"]),
    ({"streaks": [{**STREAK, "length": 1}]}, ["/streaks/0/length"]),
    ({"streaks": [{**STREAK, "bonus_points": 0}]}, ["/streaks/0/bonus_points"]),
    ({"welcome": {"points": 0}}, ["/welcome/points"]),
    ({"referral": {"referrer_points": 1, "referee_points": 1}}, ["/referral/max_per_referrer"]),
    ({"referral": {**REFERRAL, "referrer_points": 0, "referee_points": 0}}, ["/referral/referrer_points"]),
    ({"engagement": {"review": {"points": 5}}}, ["/engagement/review/daily_cap"]),
    ({"engagement": {"review": {"points": 0, "once": True}}}, ["/engagement/review/points"]),
])
def test_sections_are_checked_with_the_path_of_each_finding(doc, expected):
    assert [f.path for f in document.findings(doc)] == expected


def purchase(amount_minor=10_000, channel=None, store=None, categories=(), currency="IDR", rules=None,
             at=datetime(2026, 11, 24, 12, tzinfo=timezone.utc)) -> PostedPurchase:
    return PostedPurchase(
        txn_id=uuid.uuid4(), partner_txn_id="t", program_id=uuid.uuid4(), program_code="P", issuance_account_id=1,
        membership_id=uuid.uuid4(), member_id=uuid.uuid4(), account_id=2, amount_minor=amount_minor,
        currency=currency, occurred_at=at, store_id=store, channel=channel,
        items=tuple(Item(c, 100) for c in categories), points=0, rules=rules)


@pytest.mark.parametrize("when, p, qualifies", [
    ({}, purchase(), True),
    ({"min_amount": "100"}, purchase(amount_minor=10_000), True),  # IDR has 2 decimals: 100.00
    ({"min_amount": "100.01"}, purchase(amount_minor=10_000), False),
    ({"min_amount": "1.5"}, purchase(amount_minor=1, currency="JPY"), False),  # a finer threshold rounds up
    ({"min_amount": "1.5"}, purchase(amount_minor=2, currency="JPY"), True),
    ({"channel": "online"}, purchase(channel="online"), True),
    ({"channel": "online"}, purchase(channel=None), False),
    ({"stores": ["s1", "s2"]}, purchase(store="s2"), True),
    ({"stores": ["s1"]}, purchase(store=None), False),
    ({"categories": ["coffee"]}, purchase(categories=("cake", "coffee")), True),
    ({"categories": ["coffee"]}, purchase(categories=("cake",)), False),
    ({"categories": ["coffee"]}, purchase(), False),  # no lines: no category
    ({"categories": ["coffee"], "channel": "in_store"}, purchase(categories=("coffee",), channel="online"), False),
])
def test_which_purchases_earn_a_stamp(when, p, qualifies):
    assert stamps._qualifies(p, when) is qualifies


JAKARTA = RuleSet(uuid.uuid4(), 1, datetime(2026, 1, 1, tzinfo=timezone.utc), {"earning": {"timezone": "Asia/Jakarta"}})


@pytest.mark.parametrize("at, period, rules, expected", [
    (datetime(1970, 1, 1, tzinfo=timezone.utc), "day", None, 0),
    (datetime(1970, 1, 2, 23, 59, tzinfo=timezone.utc), "day", None, 1),
    # 17:30 UTC on the 1st is already the 2nd in Jakarta (UTC+7).
    (datetime(1970, 1, 1, 17, 30, tzinfo=timezone.utc), "day", JAKARTA, 1),
    # Weeks start on Monday: 1970-01-04 was a Sunday, the 5th a Monday.
    (datetime(1970, 1, 4, tzinfo=timezone.utc), "week", None, 0),
    (datetime(1970, 1, 5, tzinfo=timezone.utc), "week", None, 1),
    (datetime(2026, 11, 30, 20, tzinfo=timezone.utc), "month", None, 56 * 12 + 10),
    (datetime(2026, 11, 30, 20, tzinfo=timezone.utc), "month", JAKARTA, 56 * 12 + 11),  # December there
])
def test_periods_are_numbered_in_the_programs_time_zone(at, period, rules, expected):
    assert periods.index(at, period, rules) == expected


@pytest.mark.parametrize("period, rules, expected", [
    ("month", None, datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("year", None, datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ("month", JAKARTA, datetime(2026, 11, 30, 17, tzinfo=timezone.utc)),  # 1 December 00:00 in Jakarta
])
def test_a_cap_period_starts_at_local_midnight(period, rules, expected):
    assert periods.start(datetime(2026, 11, 30, 20, tzinfo=timezone.utc), period, rules) == expected
