"""Purchases rated by the program's rules through the API: the version in force at
occurred_at, the rating stored and shown, caps across purchases, targeted promotions and
their budgets (also under concurrency), batches, returns, the linter, and the preview."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from hub.db import utcnow
from hub import ledger
from hub.errors import Invalid
from hub.ledger.verify import verify
from hub.programs import earning
from hub.programs.models import Membership, PointTransaction, Program
from hub.rules import counters, versions
from hub.rules.counters import STRIPES, BudgetStripe, CapCounter
from hub.rules.models import Segment, SegmentMember
from tests.conftest import Api, assert_problem, token_for
from tests.integration.test_concurrency import actor_of

COFFEE_X2 = {"id": "coffee-x2", "kind": "multiplier", "multiplier": "2", "when": {"categories": ["coffee"]},
             "cap": {"per_transaction": 100}}


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def soon() -> str:
    """A moment just after a version published now takes effect (in whole seconds)."""
    return iso(utcnow() + timedelta(seconds=2))


def program_id(db, partner):
    with db.read() as s:
        return s.scalar(select(Program.id).where(Program.code == partner.program))


def publish(db, partner, document, **kw):
    pid = program_id(db, partner)
    return db.write(lambda s: versions.publish(s, pid, document, created_by="test", **kw))


def promotion(pid="promo", **extra):
    now = utcnow()
    return {"id": pid, "name": f"Promotion {pid}", "starts_at": iso(now - timedelta(days=1)),
            "ends_at": iso(now + timedelta(days=1)), **extra}


def post(partner, member, amount, **extra):
    body = partner.purchase_body(member, amount, **{"occurred_at": soon(), **extra})
    response = partner.api.post("/v1/transactions", body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_purchase_is_rated_by_the_version_in_force_at_its_time_and_shows_why(db, partner):
    member = partner.enrol()
    now = utcnow()
    publish(db, partner, {"earning": {"rules": [COFFEE_X2]}}, effective_from=now)
    publish(db, partner, {"earning": {"rules": [{**COFFEE_X2, "multiplier": "3"}]}},
            effective_from=now + timedelta(minutes=2))
    items = [{"category": "coffee", "amount": "10000"}]
    before = post(partner, member, "20000", items=items, occurred_at=iso(now - timedelta(hours=1)))
    first = post(partner, member, "20000", items=items, occurred_at=iso(now + timedelta(minutes=1)))
    second = post(partner, member, "20000", items=items, occurred_at=iso(now + timedelta(minutes=3)))
    assert (before["points"], first["points"], second["points"]) == (20, 30, 40)
    assert before["rating"] is None  # no rules then: the program's base rate
    assert first["rating"] == {"points": 30, "version": 1, "lines": [
        {"rule": "base", "kind": "base", "points": "20", "detail": "20000 IDR x 0.001 points per unit"},
        {"rule": "coffee-x2", "kind": "multiplier", "points": "10", "detail": "x2 (coffee-x2)"}]}
    shown = partner.api.get(f"/v1/transactions/{second['id']}").json()
    assert shown["rating"]["version"] == 2 and shown["points"] == 40
    with db.read() as s:
        assert s.scalar(select(PointTransaction.rule_version).where(
            PointTransaction.id == uuid.UUID(second["id"]))) == 2
    assert partner.balance(member)["posted"] == 90


def test_unknown_categories_earn_the_base_rate(db, partner):
    member = partner.enrol()
    publish(db, partner, {"earning": {"rules": [COFFEE_X2]}})
    txn = post(partner, member, "30000", items=[{"category": "never-heard-of", "amount": "30000"}])
    assert txn["points"] == 30


def test_a_per_member_cap_holds_across_purchases_and_periods_are_per_member(db, partner):
    alice, bob = partner.enrol(), partner.enrol()
    publish(db, partner, {"earning": {"rules": [
        {**COFFEE_X2, "cap": {"per_member": 15, "period": "month"}}]}})
    items = [{"category": "coffee", "amount": "10000"}]
    earned = [post(partner, alice, "10000", items=items)["points"] for _ in range(3)]
    assert earned == [20, 15, 10]  # the rule adds 10, then the 5 left of 15, then nothing
    assert post(partner, bob, "10000", items=items)["points"] == 20
    with db.read() as s:
        assert sorted(s.scalars(select(CapCounter.used).join(Membership).where(
            Membership.member_id.in_([uuid.UUID(alice), uuid.UUID(bob)]))).all()) == [10, 15]


def _set_tier(db, member_id, tier):
    db.write(lambda s: s.execute(update(Membership).where(
        Membership.member_id == uuid.UUID(member_id)).values(tier=tier)))


def test_a_promotion_targets_tiers(db, partner):
    gold, plain = partner.enrol(), partner.enrol()
    _set_tier(db, gold, "gold")
    publish(db, partner, {"promotions": [promotion(bonus=7, budget_points=100, target={"tiers": ["gold"]})]})
    assert post(partner, gold, "10000")["points"] == 17
    assert post(partner, plain, "10000")["points"] == 10


def test_a_promotion_targets_segments(db, partner):
    vip, plain = partner.enrol(), partner.enrol()

    def segment(s):
        partner_id = s.scalar(select(Program.partner_id).where(Program.code == partner.program))
        row = Segment(partner_id=partner_id, code="vip", name="VIPs", definition={})
        s.add(row)
        s.flush()
        s.add(SegmentMember(segment_id=row.id, member_id=uuid.UUID(vip)))

    db.write(segment)
    publish(db, partner, {"promotions": [promotion(multiplier="3", budget_points=100, target={"segments": ["vip"]})]})
    txn = post(partner, vip, "10000")
    assert txn["points"] == 30
    assert txn["rating"]["lines"][-1] == {"rule": "promo", "kind": "promotion", "points": "20", "detail": "Promotion promo"}
    assert post(partner, plain, "10000")["points"] == 10


def test_a_promotion_budget_is_spent_exactly(db, partner):
    members = [partner.enrol() for _ in range(4)]
    publish(db, partner, {"promotions": [promotion(bonus=10, budget_points=25)]})
    earned = [post(partner, m, "1000")["points"] for m in members]
    assert earned == [11, 11, 6, 1]
    with db.read() as s:
        assert s.scalar(select(func.sum(BudgetStripe.remaining)).where(
            BudgetStripe.program_id == program_id(db, partner))) == 0


def test_concurrent_purchases_never_overspend_a_budget(db, partner):
    # STRIPES stripes of 4 or 5 points: each pays one bonus alone (fast path), then the
    # budget's end is shared out with all its stripes locked in order (slow path).
    budget = 4 * STRIPES + 21
    members = [partner.enrol() for _ in range(budget // 4 + 10)]
    publish(db, partner, {"promotions": [promotion(bonus=4, budget_points=budget)]})
    actor = actor_of(partner, db)

    def buy(member):
        body = partner.purchase_body(member, "1000", occurred_at=soon())
        return db.write(lambda s: earning.earn(s, actor, [(0, body)]))[0].view.txn.points

    with ThreadPoolExecutor(6) as pool:
        earned = list(pool.map(buy, members))
    bonuses = [points - 1 for points in earned]  # 1 base point each, the rest from the budget
    assert sum(bonuses) == budget  # exactly the budget (purchases racing for its end may share it)
    assert all(0 <= b <= 4 for b in bonuses) and bonuses.count(4) >= budget // 4 - 6


def _stripes(db, partner) -> dict[int, int]:
    with db.read() as s:
        return dict(s.execute(select(BudgetStripe.stripe, BudgetStripe.remaining)
                              .where(BudgetStripe.program_id == program_id(db, partner))).all())


def _home(db, member) -> int:
    with db.read() as s:
        return counters.home_stripe(s.scalar(select(Membership.id).where(Membership.member_id == uuid.UUID(member))))


def test_a_budget_takes_the_next_stripe_when_the_home_one_is_short_or_held(db, partner):
    """While the budget lasts, an earn takes one stripe: its home one, or the next one that
    holds the want and (on PostgreSQL) that no other earn holds; it never waits for the
    holder, nor locks every stripe."""
    first, member = partner.enrol(), partner.enrol()
    publish(db, partner, {"promotions": [promotion(bonus=4, budget_points=100 * STRIPES)]})
    post(partner, first, "1000")  # makes the stripes
    home = _home(db, member)
    with db.engine.begin() as conn:  # the home stripe short of the want
        conn.execute(update(BudgetStripe).where(BudgetStripe.program_id == program_id(db, partner),
                                                BudgetStripe.stripe == home).values(remaining=3))
    before = _stripes(db, partner)
    assert post(partner, member, "1000")["points"] == 1 + 4
    taken = {k: before[k] - v for k, v in _stripes(db, partner).items() if before[k] != v}
    if db.dialect != "postgresql":  # one writer at a time: the stripes in order
        assert sum(taken.values()) == 4
    else:
        assert taken == {(home + 1) % STRIPES: 4}
        # another earn holds the stripe after it: the one after that
        with db.engine.connect() as holder, ThreadPoolExecutor(1) as pool:
            holder.execute(select(BudgetStripe).where(BudgetStripe.program_id == program_id(db, partner),
                                                      BudgetStripe.stripe == (home + 1) % STRIPES).with_for_update())
            before = _stripes(db, partner)
            assert pool.submit(post, partner, member, "1000").result(timeout=20)["points"] == 1 + 4
            holder.rollback()
        taken = {k: before[k] - v for k, v in _stripes(db, partner).items() if before[k] != v}
        assert taken == {(home + 2) % STRIPES: 4}


def test_concurrent_purchases_take_budget_stripes_without_the_slow_path(db, partner, monkeypatch):
    """Earns racing on one promotion far from its end each take one stripe in the one
    statement: none falls to the path that locks every stripe in order (on PostgreSQL; on
    SQLite, one writer at a time, that path is the only one), and the budget is exact."""
    members = [partner.enrol() for _ in range(16)]
    budget = 1000 * STRIPES
    publish(db, partner, {"promotions": [promotion(bonus=4, budget_points=budget)]})
    post(partner, members[0], "1000")  # makes the stripes
    actor = actor_of(partner, db)
    slow = []
    real = counters._take_in_order
    monkeypatch.setattr(counters, "_take_in_order", lambda *a: slow.append(a) or real(*a))

    def buy(n):
        body = partner.purchase_body(members[n % len(members)], "1000", occurred_at=soon())
        return db.write(lambda s: earning.earn(s, actor, [(0, body)]))[0].view.txn.points

    with ThreadPoolExecutor(16) as pool:
        earned = list(pool.map(buy, range(640)))
    assert earned == [5] * 640
    assert sum(_stripes(db, partner).values()) == budget - 4 * 641
    assert len(slow) == (0 if db.dialect == "postgresql" else 640)


def test_a_single_purchase_takes_its_counters_in_the_statement_that_posts_it(db, partner, monkeypatch):
    """On PostgreSQL a single rated purchase's cap and budget are taken by the statement that
    posts its earn (a round trip fewer). When they grant less than it claims, that statement
    posts nothing, and the purchase is rated again with what they granted and posted so."""
    first, member = partner.enrol(), partner.enrol()
    publish(db, partner, {
        "earning": {"rules": [{**COFFEE_X2, "cap": {"per_member": 25, "period": "month"}}]},
        "promotions": [promotion(bonus=3, budget_points=100 * STRIPES)],
    })
    post(partner, first, "1000")  # makes the stripes
    made = []  # the transfer each post_gated made (None: its counters fell short)
    real = ledger.post_gated

    def recording(*args, **kw):
        result = real(*args, **kw)
        made.append(result[0])
        return result

    monkeypatch.setattr(ledger, "post_gated", recording)
    in_one = []  # posts behind the gate in one statement (not the gate, then the post)
    one_statement = ledger.service._gated_apply_and_insert
    monkeypatch.setattr(ledger.service, "_gated_apply_and_insert", lambda *a: in_one.append(1) or one_statement(*a))
    items = [{"category": "coffee", "amount": "10000"}]
    earned = [post(partner, member, "10000", items=items)["points"] for _ in range(3)]
    assert earned == [10 + 10 + 3, 10 + 10 + 3, 10 + 5 + 3]  # the cap's last 5, then the budget's 3
    if db.dialect == "postgresql":
        assert [transfer_id is not None for transfer_id in made] == [True, True, False]
        assert len(in_one) == 3
    else:  # SQLite takes the counters first, as a batch does
        assert made == []
    assert partner.balance(member)["posted"] == sum(earned)
    assert sum(_stripes(db, partner).values()) == 100 * STRIPES - 3 * 4
    with db.read() as s:
        assert s.scalar(select(CapCounter.used).join(Membership).where(
            Membership.member_id == uuid.UUID(member))) == 25
        assert verify(s).ok


def test_a_batch_shares_counters_in_its_order(db, partner):
    member = partner.enrol()
    publish(db, partner, {
        "earning": {"rules": [{**COFFEE_X2, "cap": {"per_member": 25, "period": "day"}}]},
        "promotions": [promotion(bonus=5, budget_points=12)],
    })
    items = [{"category": "coffee", "amount": "10000"}]
    bodies = [partner.purchase_body(member, "10000", items=items, occurred_at=soon()) for _ in range(3)]
    response = partner.api.post("/v1/transactions/batch", {"items": bodies})
    assert response.status_code == 200, response.text
    earned = [r["transaction"]["points"] for r in response.json()["results"]]
    assert earned == [10 + 10 + 5, 10 + 10 + 5, 10 + 5 + 2]
    assert partner.balance(member)["posted"] == sum(earned)


@pytest.mark.parametrize("members", [3, counters.INLINE_CAPS + 4], ids=["caps-as-parameters", "caps-as-json"])
def test_a_batch_takes_each_members_cap_once(db, partner, members):
    """A batch of several members' purchases claims their caps in one statement (their
    counters as parameters, or as one JSON document past INLINE_CAPS), each member's twice
    over: the second purchase gets what the first left."""
    people = [partner.enrol() for _ in range(members)]
    publish(db, partner, {"earning": {"rules": [{**COFFEE_X2, "cap": {"per_member": 15, "period": "day"}}]}})
    items = [{"category": "coffee", "amount": "10000"}]
    bodies = [partner.purchase_body(m, "10000", items=items, occurred_at=soon()) for _ in range(2) for m in people]
    response = partner.api.post("/v1/transactions/batch", {"items": bodies})
    assert response.status_code == 200, response.text
    earned = [r["transaction"]["points"] for r in response.json()["results"]]
    assert earned == [10 + 10] * members + [10 + 5] * members
    with db.read() as s:
        used = s.scalars(select(CapCounter.used).join(Membership, Membership.id == CapCounter.membership_id)
                         .where(Membership.program_id == program_id(db, partner))).all()
    assert used == [15] * members


def test_a_return_reverses_the_rated_points_in_proportion(db, partner):
    member = partner.enrol()
    publish(db, partner, {"earning": {"rules": [COFFEE_X2]}})
    txn = post(partner, member, "20000", items=[{"category": "coffee", "amount": "20000"}])
    assert txn["points"] == 40
    response = partner.api.post("/v1/returns", {
        "purchase": {"id": txn["id"]}, "return_id": "r-1", "amount": "5000", "currency": "IDR",
        "occurred_at": txn["occurred_at"]})
    assert response.status_code == 201, response.text
    assert response.json()["points"] == 10
    assert partner.balance(member)["posted"] == 30


@pytest.mark.parametrize("document, path", [
    ({"earning": {"rules": [{"id": "x", "kind": "multiplier", "multiplier": "2"}]}}, "/earning/rules/0"),
    ({"earning": {"rules": [{**COFFEE_X2, "group": "g"}, {**COFFEE_X2, "id": "other", "group": "g", "multiplier": "3"}]}},
     "/earning/rules/1"),
    ({"promotions": [promotion(bonus=1)]}, "/promotions/0"),
])
def test_bad_rules_are_refused_with_the_path_of_the_problem(db, partner, document, path):
    with pytest.raises(Invalid) as raised:
        publish(db, partner, document)
    assert raised.value.slug == "invalid-rules"
    assert [e["path"] for e in raised.value.extra["errors"]] == [path]


def test_an_unbounded_multiplier_is_accepted_with_an_explicit_override(db, partner):
    member = partner.enrol()
    publish(db, partner, {"earning": {"rules": [
        {"id": "x", "kind": "multiplier", "multiplier": "2", "allow_unbounded": True}]}})
    assert post(partner, member, "10000")["points"] == 20


def _counts(db):
    with db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (PointTransaction, CapCounter, BudgetStripe))


def test_preview_rates_without_writing(db, partner, other_partner, ops, http):
    member = partner.enrol()
    _set_tier(db, member, "gold")
    now = utcnow()
    publish(db, partner, {
        "earning": {"rules": [{**COFFEE_X2, "cap": {"per_member": 15, "period": "month"}}]},
        "promotions": [promotion(bonus=5, budget_points=50, target={"tiers": ["gold"]})],
    })
    future = publish(db, partner, {"earning": {"rules": []}}, effective_from=now + timedelta(days=3))
    post(partner, member, "10000", items=[{"category": "coffee", "amount": "10000"}])  # 10 of the cap used
    before = _counts(db)
    path = f"/v1/programs/{partner.program}/rules/preview"
    body = {"amount": "10000", "currency": "IDR", "items": [{"category": "coffee", "amount": "10000"}]}
    as_member = partner.api.post(path, {**body, "member": {"member_id": member}})
    assert as_member.status_code == 200, as_member.text
    assert as_member.json()["points"] == 10 + 5 + 5  # 5 left of the cap, the gold promotion
    assert partner.api.post(path, body).json()["points"] == 20  # nobody: a fresh cap, no tier
    assert partner.api.post(path, {**body, "tier": "gold"}).json()["points"] == 25
    later = partner.api.post(path, {**body, "occurred_at": iso(now + timedelta(days=4))}).json()
    assert (later["points"], later["version"]) == (10, future.version)
    assert ops.post(path, body).status_code == 200
    assert _counts(db) == before
    assert_problem(other_partner.api.post(path, body), 404, "program-not-found")
    assert_problem(partner.api.post(f"/v1/programs/{partner.program}/rules/preview",
                                     {**body, "member": {"member_id": str(uuid.uuid4())}}), 404, "member-not-found")
    narrow = Api(http, token_for(http, partner.client_id, partner.secret, scope="members:read"))
    assert narrow.post(path, body).status_code == 403
