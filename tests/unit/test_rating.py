"""The rating engine, one rule kind and condition at a time (figures worked by hand), and the
linter's findings with their paths."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from hub.errors import Invalid
from hub.rules import document, rating
from hub.rules.rating import BUDGET, CAP, Claim, MemberFacts, PurchaseFacts, Usage
from hub.rules.versions import RuleSet

RATE = Decimal("0.001")  # 1 point per 1,000 IDR
# Sunday 1 November 2026, 10:00 UTC (17:00 in Jakarta)
SUNDAY = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)
MONDAY = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


def ruleset(document_: dict, version: int = 1) -> RuleSet:
    return RuleSet(uuid.uuid4(), version, SUNDAY, document_)


def rules(*rules_, **earning) -> RuleSet:
    return ruleset({"earning": {**earning, "rules": list(rules_)}})


def buy(amount_idr: int, *, at=SUNDAY, items=(), store=None, channel=None) -> PurchaseFacts:
    """Amounts in whole rupiah (IDR has 2 decimals in ISO 4217)."""
    return PurchaseFacts(amount_idr * 100, at, store, channel, tuple((c, a * 100) for c, a in items))


def points(rs, purchase, member=MemberFacts(), usage=rating.NO_USAGE) -> int:
    return rating.rate(RATE, "IDR", rs, purchase, member, usage).points


COFFEE_X2 = {"id": "coffee", "kind": "multiplier", "multiplier": "2", "when": {"categories": ["coffee"]}}


@pytest.mark.parametrize("name, rs, purchase, expected", [
    ("no rules: base rate, floored", None, buy(45_999), 45),
    ("empty document: base rate", ruleset({}), buy(45_999), 45),
    ("points_per_unit overrides the program's rate", rules(points_per_unit="0.002"), buy(45_999), 91),
    ("rounding nearest", rules(rounding="nearest"), buy(45_500), 46),
    ("rounding ceil", rules(rounding="ceil"), buy(45_001), 46),
    ("category multiplier on its line only", rules(COFFEE_X2), buy(50_000, items=[("coffee", 20_000)]), 70),
    ("unknown category earns the base rate", rules(COFFEE_X2), buy(50_000, items=[("mystery", 20_000)]), 50),
    ("uncovered amount is a line of no category", rules(COFFEE_X2), buy(50_000, items=[("coffee", 50_000)]), 100),
    ("store multiplier", rules({"id": "s", "kind": "multiplier", "multiplier": "3", "when": {"stores": ["S1"]}}),
     buy(10_000, store="S1"), 30),
    ("store multiplier, other store", rules({"id": "s", "kind": "multiplier", "multiplier": "3", "when": {"stores": ["S1"]}}),
     buy(10_000, store="S2"), 10),
    ("channel multiplier", rules({"id": "o", "kind": "multiplier", "multiplier": "1.5", "when": {"channel": "online"}}),
     buy(10_000, channel="online"), 15),
    ("channel multiplier, in store", rules({"id": "o", "kind": "multiplier", "multiplier": "1.5", "when": {"channel": "online"}}),
     buy(10_000, channel="in_store"), 10),
    ("day multiplier on its day", rules({"id": "w", "kind": "multiplier", "multiplier": "2", "when": {"days": ["sun"]}}),
     buy(10_000), 20),
    ("day multiplier off its day", rules({"id": "w", "kind": "multiplier", "multiplier": "2", "when": {"days": ["sun"]}}),
     buy(10_000, at=MONDAY), 10),
    ("time window in the section's time zone (17:00 Jakarta)",
     rules({"id": "h", "kind": "multiplier", "multiplier": "2", "when": {"time": {"from": "16:00", "to": "18:00"}}},
           timezone="Asia/Jakarta"), buy(10_000), 20),
    ("time window is [from, to)", rules({"id": "h", "kind": "multiplier", "multiplier": "2",
                                         "when": {"time": {"from": "08:00", "to": "10:00"}}}), buy(10_000), 10),
    ("time window across midnight", rules({"id": "n", "kind": "multiplier", "multiplier": "2",
                                           "when": {"time": {"from": "22:00", "to": "10:01"}}}), buy(10_000), 20),
    ("min_amount met", rules({"id": "b", "kind": "bonus", "bonus": 7, "when": {"min_amount": "10000"}}), buy(10_000), 17),
    ("min_amount not met", rules({"id": "b", "kind": "bonus", "bonus": 7, "when": {"min_amount": "10000.5"}}), buy(10_000), 10),
    ("bonus per purchase with a matching line", rules({"id": "b", "kind": "bonus", "bonus": 5, "when": {"categories": ["tea"]}}),
     buy(10_000, items=[("tea", 1_000)]), 15),
    ("bonus needs a matching line", rules({"id": "b", "kind": "bonus", "bonus": 5, "when": {"categories": ["tea"]}}),
     buy(10_000, items=[("coffee", 1_000)]), 10),
    ("multipliers outside groups stack additively",
     rules(COFFEE_X2, {"id": "sun", "kind": "multiplier", "multiplier": "3", "when": {"days": ["sun"]}}),
     buy(10_000, items=[("coffee", 10_000)]), 10 + 10 + 20),
    ("in a group the best multiplier of the highest priority wins",
     rules({**COFFEE_X2, "group": "g"}, {"id": "all", "kind": "multiplier", "multiplier": "5", "group": "g", "priority": 1}),
     buy(10_000, items=[("coffee", 10_000)]), 50),
    ("a group's higher priority wins even with a lower multiplier",
     rules({**COFFEE_X2, "group": "g", "priority": 2}, {"id": "all", "kind": "multiplier", "multiplier": "5", "group": "g"}),
     buy(10_000, items=[("coffee", 5_000)]), 10 + 5 + 5 * 4),
    ("multiplier 0 earns nothing on the line", rules({"id": "t", "kind": "multiplier", "multiplier": "0",
                                                      "when": {"categories": ["tobacco"]}}), buy(10_000, items=[("tobacco", 10_000)]), 0),
    ("per-transaction cap of a rule", rules({**COFFEE_X2, "cap": {"per_transaction": 3}}), buy(10_000, items=[("coffee", 10_000)]), 13),
    ("cap rule bounds the section's total", rules(COFFEE_X2, {"id": "max", "kind": "cap", "cap": {"per_transaction": 12}}),
     buy(10_000, items=[("coffee", 10_000)]), 12),
    ("cap rule only where its conditions hold", rules({"id": "max", "kind": "cap", "cap": {"per_transaction": 1},
                                                      "when": {"stores": ["S9"]}}), buy(10_000), 10),
])
def test_rule_kinds_and_conditions(name, rs, purchase, expected):
    assert points(rs, purchase) == expected, name


def test_tier_benefit_multiplies_after_caps_and_promotions_add_whole_points():
    rs = ruleset({
        "earning": {"rules": [{**COFFEE_X2, "cap": {"per_transaction": 5}}]},
        "tiers": {"levels": [{"code": "gold", "earn_multiplier": "1.5"}, {"code": "base"}]},
        "promotions": [{"id": "nov", "name": "November x2", "starts_at": "2026-11-01T00:00:00Z",
                        "ends_at": "2026-12-01T00:00:00Z", "multiplier": "2", "budget_points": 100}],
    })
    purchase = buy(10_500, items=[("coffee", 10_000)])
    gold = rating.rate(RATE, "IDR", rs, purchase, MemberFacts("gold"))
    # base 10.5, coffee +5 (capped from 10), tier x1.5 = 23.25 -> 23; promotion +10.5 -> 10
    assert gold.points == 33
    assert [(line.rule, line.points) for line in gold.lines] == [
        ("base", Decimal("10.5")), ("coffee", Decimal(5)), ("tier", Decimal("7.75")),
        ("rounding", Decimal("-0.25")), ("nov", Decimal(10))]
    assert sum(line.points for line in gold.lines) == gold.points
    assert gold.claims == (Claim(BUDGET, "nov", "", 100, 10),)
    assert points(rs, purchase, MemberFacts("base")) == 15 + 10  # a level without a multiplier


@pytest.mark.parametrize("target, member, expected", [
    ({}, MemberFacts(), 20),
    ({"tiers": ["gold"]}, MemberFacts("gold"), 20),
    ({"tiers": ["gold"]}, MemberFacts("silver"), 10),
    ({"segments": ["vip"]}, MemberFacts(segments=frozenset({"vip", "x"})), 20),
    ({"segments": ["vip"]}, MemberFacts("gold"), 10),
    ({"tiers": ["gold"], "segments": ["vip"]}, MemberFacts(segments=frozenset({"vip"})), 20),
])
def test_promotion_targeting(target, member, expected):
    rs = ruleset({"promotions": [{"id": "p", "name": "P", "starts_at": "2026-10-01T00:00:00Z",
                                  "ends_at": "2026-11-01T10:00:01Z", "multiplier": "2",
                                  "budget_points": 1000, "target": target}]})
    assert points(rs, buy(10_000), member) == expected


def test_promotion_window_is_start_inclusive_end_exclusive():
    promo = {"id": "p", "name": "P", "starts_at": "2026-11-01T10:00:00Z", "ends_at": "2026-11-02T10:00:00Z",
             "bonus": 4, "budget_points": 10}
    rs = ruleset({"promotions": [promo]})
    assert [points(rs, buy(10_000, at=at)) for at in (SUNDAY, MONDAY)] == [14, 10]


def test_counters_clip_what_they_no_longer_allow_and_claim_what_they_give():
    rs = rules({**COFFEE_X2, "cap": {"per_member": 8, "period": "month"}},
               {"id": "monthly", "kind": "cap", "cap": {"per_member": 100, "period": "month"}})
    purchase = buy(10_000, items=[("coffee", 10_000)])
    fresh = rating.rate(RATE, "IDR", rs, purchase, MemberFacts())
    assert fresh.points == 18
    assert fresh.claims == (Claim(CAP, "coffee", "2026-11", 8, 8), Claim(CAP, "monthly", "2026-11", 100, 18))
    used = Usage({(CAP, "coffee", "2026-11"): 3, (CAP, "monthly", "2026-11"): 11})
    assert points(rs, purchase, usage=used) == 11
    assert points(rs, purchase, usage=Usage({(CAP, "monthly", "2026-11"): 0})) == 0


def test_periods_are_local_calendar_periods():
    local = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)
    assert [rating.period_of(p, local) for p in ("day", "week", "month", "year")] == [
        "2026-12-31", "2026-W53", "2026-12", "2026"]


def test_budget_left_limits_the_promotion():
    rs = ruleset({"promotions": [{"id": "p", "name": "P", "starts_at": "2026-10-01T00:00:00Z",
                                  "ends_at": "2026-12-01T00:00:00Z", "bonus": 50, "budget_points": 120}]})
    r = rating.rate(RATE, "IDR", rs, buy(10_000), MemberFacts(), Usage({(BUDGET, "p", ""): 20}))
    assert (r.points, r.claims) == (30, (Claim(BUDGET, "p", "", 120, 20),))


def test_no_rules_rates_like_the_base_rule_and_refuses_absurd_figures():
    assert rating.rate(RATE, "IDR", None, buy(45_999), MemberFacts()).version is None
    with pytest.raises(Invalid):
        rating.rate(Decimal("1000000"), "IDR", None, buy(10**7), MemberFacts())


def test_rating_json_is_what_the_member_sees():
    r = rating.rate(RATE, "IDR", rules(COFFEE_X2), buy(1_500, items=[("coffee", 1_000)]), MemberFacts())
    assert r.as_json() == {"points": 2, "version": 1, "lines": [
        {"rule": "base", "kind": "base", "points": "1.5", "detail": "1500 IDR x 0.001 points per unit"},
        {"rule": "coffee", "kind": "multiplier", "points": "1", "detail": "x2 (coffee)"},
        {"rule": "rounding", "kind": "rounding", "points": "-0.5", "detail": "rounded (floor)"}]}


# --- linter ------------------------------------------------------------------------------

def paths(doc: dict) -> list[str]:
    return [f.path for f in document.findings(doc)]


UNBOUNDED = {"id": "x", "kind": "multiplier", "multiplier": "2"}
PROMO = {"id": "p", "name": "P", "starts_at": "2026-11-01T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z", "bonus": 5}


@pytest.mark.parametrize("doc, expected", [
    ({"earning": {"rules": [UNBOUNDED]}}, ["/earning/rules/0"]),
    ({"earning": {"rules": [{**UNBOUNDED, "allow_unbounded": True}]}}, []),
    ({"earning": {"rules": [{**UNBOUNDED, "cap": {"per_member": 10, "period": "week"}}]}}, []),
    ({"earning": {"rules": [UNBOUNDED, {"id": "c", "kind": "cap", "cap": {"per_transaction": 100}}]}}, []),
    ({"earning": {"rules": [UNBOUNDED, {"id": "c", "kind": "cap", "cap": {"per_transaction": 100},
                                        "when": {"channel": "online"}}]}}, ["/earning/rules/0"]),
    ({"earning": {"rules": [{"id": "d", "kind": "multiplier", "multiplier": "0.5"}]}}, []),
    ({"earning": {"rules": [COFFEE_X2 | {"cap": {"per_transaction": 9}}, {**COFFEE_X2, "cap": {"per_transaction": 9}}]}},
     ["/earning/rules/1", "/earning/rules/1/id"]),
    ({"earning": {"rules": [{**COFFEE_X2, "group": "g", "cap": {"per_transaction": 9}},
                            {"id": "b", "kind": "multiplier", "multiplier": "3", "group": "g",
                             "cap": {"per_transaction": 9}}]}}, ["/earning/rules/1"]),
    ({"earning": {"rules": [{**COFFEE_X2, "group": "g", "cap": {"per_transaction": 9}},
                            {"id": "b", "kind": "multiplier", "multiplier": "3", "group": "g", "priority": 1,
                             "cap": {"per_transaction": 9}}]}}, []),
    ({"earning": {"rules": [{**COFFEE_X2, "group": "g", "cap": {"per_transaction": 9}},
                            {"id": "b", "kind": "multiplier", "multiplier": "3", "group": "g",
                             "when": {"categories": ["tea"]}, "cap": {"per_transaction": 9}}]}}, []),
    ({"earning": {"rules": [{**COFFEE_X2, "cap": {"per_transaction": 0}}]}}, ["/earning/rules/0/cap"]),
    ({"earning": {"rules": [{"id": "b", "kind": "bonus", "bonus": 1,
                             "when": {"time": {"from": "10:00", "to": "10:00"}}}]}}, ["/earning/rules/0/when/time"]),
    ({"earning": {"timezone": "Mars/Olympus"}}, ["/earning/timezone"]),
    ({"earning": {"rules": [{"id": "b", "kind": "bonus"}]}}, ["/earning/rules/0"]),
    ({"promotions": [PROMO]}, ["/promotions/0"]),
    ({"promotions": [{**PROMO, "allow_unbounded": True}]}, []),
    ({"promotions": [{**PROMO, "budget_points": 10, "ends_at": "2026-11-01T00:00:00Z"}]}, ["/promotions/0/ends_at"]),
    ({"promotions": [{**PROMO, "budget_points": 10}, {**PROMO, "budget_points": 10}]}, ["/promotions/1/id"]),
    ({"promotions": [{**PROMO, "budget_points": 10, "starts_at": "2026-11-01T00:00:00"}]}, ["/promotions/0/starts_at"]),
])
def test_linter_findings_have_paths(doc, expected):
    assert sorted(paths(doc)) == expected
