"""Properties of the rating engine over generated rule documents and purchases."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.rules import rating
from hub.rules.rating import CAP, MemberFacts, PurchaseFacts, Usage
from hub.rules.versions import RuleSet

CATEGORIES = ["coffee", "tea", "food", "merch"]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)

multipliers = st.sampled_from(["0", "0.5", "1", "1.25", "2", "3", "10"])
caps = st.one_of(
    st.none(),
    st.fixed_dictionaries({"per_transaction": st.integers(0, 50)}),
    st.fixed_dictionaries({"per_member": st.integers(0, 80), "period": st.sampled_from(["day", "week", "month", "year"])}),
)
whens = st.fixed_dictionaries({}, optional={
    "categories": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True),
    "channel": st.sampled_from(["online", "in_store"]),
    "days": st.lists(st.sampled_from(rating.DAYS), min_size=1, max_size=3, unique=True),
    "stores": st.lists(st.sampled_from(["S1", "S2"]), min_size=1, unique=True),
})


@st.composite
def rule_lists(draw):
    out = []
    for i in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["multiplier", "bonus", "cap"]))
        rule = {"id": f"r{i}", "kind": kind, "priority": draw(st.integers(0, 2)), "when": draw(whens)}
        if kind == "multiplier":
            rule["multiplier"] = draw(multipliers)
            group = draw(st.sampled_from([None, "g1", "g2"]))
            if group:
                rule["group"] = group
        elif kind == "bonus":
            rule["bonus"] = draw(st.integers(0, 20))
        cap = draw(caps)
        if kind == "cap" and cap is None:
            cap = {"per_transaction": draw(st.integers(0, 40))}
        if cap is not None:
            rule["cap"] = cap
        out.append(rule)
    return out


promotions = st.lists(st.fixed_dictionaries({
    "name": st.just("promo"),
    "multiplier": multipliers,
    "budget_points": st.integers(0, 30),
    "when": whens,
    "target": st.sampled_from([{}, {"tiers": ["gold"]}, {"segments": ["vip"]}]),
}), max_size=3)


@st.composite
def purchases(draw):
    amount = draw(st.integers(1, 10**7))
    items, left = [], amount
    for _ in range(draw(st.integers(0, 3))):
        if left == 0:
            break
        part = draw(st.integers(0, left))
        items.append((draw(st.sampled_from(CATEGORIES + ["unknown"])), part))
        left -= part
    return PurchaseFacts(
        amount, START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 365))),
        draw(st.sampled_from([None, "S1", "S2"])), draw(st.sampled_from([None, "online", "in_store"])),
        tuple(items),
    )


members = st.builds(MemberFacts, st.sampled_from([None, "gold", "silver"]),
                    st.sampled_from([frozenset(), frozenset({"vip"})]))


def document(rules, promos, rounding="floor") -> dict:
    return {
        "earning": {"rules": rules, "rounding": rounding},
        "promotions": [{**p, "id": f"p{i}", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z"}
                       for i, p in enumerate(promos)],
        "tiers": {"levels": [{"code": "gold", "earn_multiplier": "1.5"}, {"code": "silver"}]},
    }


def rate(doc: dict, purchase, member, usage=rating.NO_USAGE):
    return rating.rate(Decimal("0.001"), "IDR", RuleSet(uuid.uuid4(), 1, START, doc), purchase, member, usage)


@settings(max_examples=300, deadline=None)
@given(rule_lists(), promotions, purchases(), members, st.sampled_from(["floor", "nearest", "ceil"]))
def test_points_are_never_negative_and_lines_add_up(rules, promos, purchase, member, rounding):
    result = rate(document(rules, promos, rounding), purchase, member)
    assert result.points >= 0
    assert sum(line.points for line in result.lines) == result.points


@settings(max_examples=300, deadline=None)
@given(rule_lists(), promotions, purchases(), members, st.randoms(use_true_random=False))
def test_order_of_rules_in_the_document_does_not_change_the_points(rules, promos, purchase, member, rnd):
    shuffled_rules, shuffled_promos = list(rules), list(enumerate(promos))
    rnd.shuffle(shuffled_rules)
    rnd.shuffle(shuffled_promos)
    first = rate(document(rules, promos), purchase, member)
    doc = document(shuffled_rules, [p for _, p in shuffled_promos])
    # the promotions keep their ids whatever their place
    doc["promotions"] = [{**p, "id": f"p{i}", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z"}
                         for i, p in shuffled_promos]
    second = rate(doc, purchase, member)
    assert second.points == first.points
    assert sorted(second.lines, key=repr) == sorted(first.lines, key=repr)


@settings(max_examples=300, deadline=None)
@given(rule_lists(), promotions, st.lists(purchases(), min_size=1, max_size=6), members)
def test_caps_and_budgets_are_never_exceeded(rules, promos, bought, member):
    """Purchases one after another, each taking what it claims from the counters (as the
    earn path does): no counter ever gives more than its limit, and a rule's award never
    passes its per-transaction cap."""
    doc = document(rules, promos)
    used: dict[tuple, int] = {}
    limits: dict[tuple, int] = {}
    for purchase in bought:
        remaining = {k: limits[k] - n for k, n in used.items()}
        result = rate(doc, purchase, member, Usage(remaining))
        for claim in result.claims:
            key = (claim.counter, claim.key, claim.period)
            limits[key] = claim.limit
            used[key] = used.get(key, 0) + claim.points
            assert used[key] <= claim.limit
        per_transaction = {r["id"]: r["cap"]["per_transaction"] for r in rules
                           if r["kind"] != "cap" and "per_transaction" in (r.get("cap") or {})}
        for line in result.lines:
            if line.rule in per_transaction:
                assert line.points <= per_transaction[line.rule]
    assert all(k[0] in (CAP, rating.BUDGET) for k in used)


@settings(max_examples=200, deadline=None)
@given(purchases(), st.sampled_from(["0.001", "0.01", "1", "2.5", "0.0037"]), members)
def test_no_rules_is_the_base_rate(purchase, rate_, member):
    expected = int((Decimal(purchase.amount_minor) / 100 * Decimal(rate_)).to_integral_value(rounding=ROUND_FLOOR))
    for rules in (None, RuleSet(uuid.uuid4(), 1, START, {})):
        assert rating.rate(Decimal(rate_), "IDR", rules, purchase, member).points == expected

