"""Pooled redemptions through the API: one reward paid with points of several programs.

The relay runs in-process with a scripted provider, as in test_redemptions.py. Point values
are chosen so that the arithmetic is easy to follow: program A's point is worth 10 coalition
units, program B's 4; a USD 10 gift card costs 160,000 units (HUB_UNIT_RATES USD=16000).
"""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.actor import Actor
from hub.api import runtime
from hub.db import utcnow
from hub.errors import Conflict
from hub.ledger import InsufficientFunds
from hub.ledger.models import Transfer
from hub.ledger.verify import verify
from hub.programs.models import Partner as PartnerRow, Program
from hub.rewards import redemptions, relay
from hub.rewards.models import Redemption, RedemptionLeg, Reward
from hub.rewards.providers import Outcome, Status
from tests.conftest import assert_problem, unique_code
from tests.integration.test_conversions import join
from tests.integration.test_redemptions import (  # noqa: F401  (provider and together are fixtures)
    CARD,
    POLICY,
    in_house,
    member_api,
    pairwise_subject,
    provider,
    reward_code,
    run_relay,
    together,
    wave_path,
)


class Pool:
    """A partner with two programs (A: 10 units a point, B: 4), and helpers."""

    def __init__(self, ops, partner):
        self.ops, self.partner = ops, partner
        self.a = partner.program
        self.b = self.add_program("4")
        self.emails: dict[str, str] = {}

    def add_program(self, point_value: str) -> str:
        code = unique_code("G")
        response = self.ops.post("/v1/programs", {
            "partner": self.partner.code, "code": code, "name": f"Program {code}", "point_value": point_value,
            "earn_rule": {"currency": "IDR", "points_per_unit": "0.001"}})
        assert response.status_code == 201, response.text
        return code

    def member(self, a: int = 0, b: int = 0) -> str:
        """A member of both programs holding `a` A points and `b` B points."""
        email = f"m{uuid.uuid4().hex[:8]}@example.com"
        member = self.partner.enrol(email=email)
        self.emails[member] = email
        enrolled = self.partner.api.post("/v1/members", {"program": self.b, "member_id": member})
        assert enrolled.status_code == 201, enrolled.text
        for program, points in ((self.a, a), (self.b, b)):
            if points:
                self.earn(program, member, points)
        return member

    def earn(self, program: str, member: str, points: int) -> None:
        body = {**self.partner.purchase_body(member, str(points * 1000)), "program": program}
        response = self.partner.api.post("/v1/transactions", body)
        assert response.status_code == 201 and response.json()["points"] == points, response.text

    def balances(self, member: str) -> dict[str, dict]:
        response = self.partner.api.get(f"/v1/members/{member}/balances")
        assert response.status_code == 200, response.text
        return {item["program"]: item for item in response.json()["items"]}

    def available(self, member: str) -> dict[str, int]:
        return {code: item["available"] for code, item in self.balances(member).items()}

    def redeem(self, member: str, reward: str, pay_with: dict, **extra):
        body = {"reward": reward, "pay_with": pay_with, "member": {"member_id": member}, **extra}
        return self.partner.api.post("/v1/redemptions", body, key=uuid.uuid4().hex)

    def coalition_reward(self, units: str, **extra) -> str:
        """An in-house reward priced in coalition units (only ops price in units)."""
        code = unique_code("R")
        response = self.ops.post("/v1/rewards", {"code": code, "kind": "free_product", "name": "Coalition cake",
                                                 "units": units, **extra})
        assert response.status_code == 201, response.text
        return code


@pytest.fixture
def pool(ops, partner) -> Pool:
    return Pool(ops, partner)


def legs(order: dict) -> list[tuple[str, int]]:
    return [(leg["program"], leg["points"]) for leg in order["legs"]]


def assert_verified(db) -> None:
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations


def transfers_of(db, order_id: str) -> list[tuple[uuid.UUID, int, str]]:
    """(ledger, amount, phase) of every transfer the order made, oldest first."""
    with db.read() as s:
        return [tuple(r) for r in s.execute(
            select(Transfer.ledger, Transfer.amount, Transfer.phase)
            .where(Transfer.ref_type == "redemption", Transfer.ref_id == order_id).order_by(Transfer.id))]


# --- relayed rewards: reserved together, posted or voided together --------------------------

def test_an_explicit_split_reserves_every_leg_and_the_relay_posts_them_all(pool, provider, db, http):
    member = pool.member(a=1_000, b=50_000)
    card = reward_code(db, provider)
    # 1,000 A (10,000 units) + 37,500 B (150,000 units) = the card's 160,000 units exactly.
    split = {"split": [{"program": pool.a, "points": 1_000}, {"program": pool.b, "points": 37_500}]}
    response = pool.redeem(member, card, split, amount="10.00")
    assert response.status_code == 202, response.text
    order = response.json()
    assert order["state"] == "pending"
    assert legs(order) == [(pool.a, 1_000), (pool.b, 37_500)]
    assert (order["program"], order["points"]) == (pool.a, 1_000)  # the first leg
    held = pool.balances(member)
    assert (held[pool.a]["available"], held[pool.a]["posted"]) == (0, 1_000)
    assert (held[pool.b]["available"], held[pool.b]["posted"]) == (12_500, 50_000)
    assert_verified(db)

    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-1", delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    assert len(provider.calls) == 1  # one order at the provider, whatever the legs
    after = pool.balances(member)
    assert (after[pool.a]["posted"], after[pool.a]["available"]) == (0, 0)
    assert (after[pool.b]["posted"], after[pool.b]["available"]) == (12_500, 12_500)
    phases = [phase for _, _, phase in transfers_of(db, order["id"])]
    assert sorted(phases) == ["pending", "pending", "post_pending", "post_pending"]
    mine = member_api(http, pool.partner, member).get(f"/v1/redemptions/{order['id']}").json()
    assert mine["state"] == "fulfilled" and mine["delivery"] == CARD and legs(mine) == legs(order)
    # The member's history shows each leg as a movement of its program.
    history = pool.partner.api.get(f"/v1/members/{member}/history").json()["items"]
    spent = sorted((m["program"], m["points"]) for m in history
                   if m["ref_id"] == order["id"] and m["status"] == "posted")
    assert spent == sorted([(pool.a, -1_000), (pool.b, -37_500)])
    assert_verified(db)


def test_a_wave_with_a_pooled_order_is_recorded_order_by_order(pool, provider, db, together, monkeypatch):
    """A pooled order's legs resolve together, with `record`: a wave of fulfilled orders
    that holds one takes the order-by-order path, and every leg of every order is posted."""
    member = pool.member(a=5_000, b=70_000)  # the pooled order takes 27,500 B, the plain one 40,000
    card = reward_code(db, provider)
    pooled = pool.redeem(member, card, {"order": [pool.a, pool.b]}, amount="10.00").json()
    plain = pool.partner.api.post("/v1/redemptions", {"reward": card, "program": pool.b, "amount": "10.00",
                                                      "member": {"member_id": member}}).json()
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD), Outcome(Status.FULFILLED, delivery=CARD)]
    together_ran = wave_path(monkeypatch)
    ids = [uuid.UUID(pooled["id"]), uuid.UUID(plain["id"])]
    assert relay.Relay(db, {provider.name: provider}, POLICY).run_many(ids) == ["fulfilled", "fulfilled"]
    assert together_ran == [False]  # the wave was not the plain case
    assert sorted(phase for _, _, phase in transfers_of(db, pooled["id"])) == [
        "pending", "pending", "post_pending", "post_pending"]
    assert sorted(phase for _, _, phase in transfers_of(db, plain["id"])) == ["pending", "post_pending"]
    assert_verified(db)


def test_a_definitive_failure_voids_every_leg_and_returns_the_stock(pool, provider, db):
    member = pool.member(a=5_000, b=30_000)
    before = pool.balances(member)
    db.write(lambda s: s.execute(update(Reward).where(Reward.provider == provider.name).values(stock=3)))
    order = pool.redeem(member, reward_code(db, provider), {"strategy": "cheapest_first"}, amount="10.00").json()
    assert order["state"] == "pending" and len(order["legs"]) == 2
    provider.place_script = [Outcome(Status.FAILED, detail="402 insufficient funds")]
    assert run_relay(db, provider, order["id"]) == "failed"
    assert pool.balances(member) == before
    assert sorted(phase for _, _, phase in transfers_of(db, order["id"])) == [
        "pending", "pending", "void_pending", "void_pending"]
    with db.read() as s:
        assert s.scalar(select(Reward.stock).where(Reward.provider == provider.name)) == 3
    got = pool.partner.api.get(f"/v1/redemptions/{order['id']}").json()
    assert got["state"] == "failed" and legs(got) == legs(order)
    assert_verified(db)


def test_a_fulfilment_after_one_leg_expired_posts_no_leg(pool, provider, db):
    """Every leg is checked before any is posted: a late fulfilment goes to review with all
    the points still reserved, never with one leg posted and the other not."""
    member = pool.member(a=5_000, b=30_000)
    order = pool.redeem(member, reward_code(db, provider), {"order": [pool.a, pool.b]}, amount="10.00").json()
    assert legs(order) == [(pool.a, 5_000), (pool.b, 27_500)]
    with db.read() as s:
        second = s.scalar(select(RedemptionLeg.transfer_id).where(
            RedemptionLeg.redemption_id == uuid.UUID(order["id"])).order_by(RedemptionLeg.transfer_id.desc()))
    db.write(lambda s: s.execute(update(Transfer).where(Transfer.id == second)
                                 .values(timeout_at=utcnow() - timedelta(seconds=1))))
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "needs_review"
    assert [phase for _, _, phase in transfers_of(db, order["id"])] == ["pending", "pending"]
    assert pool.available(member) == {pool.a: 0, pool.b: 2_500}
    assert_verified(db)


# --- strategies -----------------------------------------------------------------------------

def test_cheapest_first_spends_the_points_worth_least_first(pool, provider, db):
    member = pool.member(a=5_000, b=30_000)
    response = pool.redeem(member, reward_code(db, provider), {"strategy": "cheapest_first"}, amount="10.00")
    assert response.status_code == 202, response.text
    # B's points are worth least (4 units): all 30,000 (120,000 units), then 4,000 A for the
    # remaining 40,000 units.
    assert legs(response.json()) == [(pool.b, 30_000), (pool.a, 4_000)]
    assert pool.available(member) == {pool.a: 1_000, pool.b: 0}
    assert_verified(db)


def test_an_order_draws_in_that_order_and_an_in_house_reward_is_posted_at_once(pool, db):
    member = pool.member(a=100, b=5)
    reward = pool.coalition_reward("55")
    response = pool.redeem(member, reward, {"order": [pool.b, pool.a]})
    assert response.status_code == 201, response.text
    order = response.json()
    # All 5 B points pay 20 units; A rounds the other 35 up to 4 points (40 units). 60 > 55 by
    # more than a B point: one B point goes back. 4 B + 4 A = 56 units.
    assert order["state"] == "fulfilled" and order["delivery"]["code"]
    assert legs(order) == [(pool.b, 4), (pool.a, 4)]
    after = pool.balances(member)
    assert (after[pool.a]["posted"], after[pool.b]["posted"]) == (96, 1)
    assert [(amount, phase) for _, amount, phase in transfers_of(db, order["id"])] == [
        (4, "posted"), (4, "posted")]
    # The same view on GET.
    assert legs(pool.partner.api.get(f"/v1/redemptions/{order['id']}").json()) == legs(order)
    assert_verified(db)


def test_a_plan_or_split_of_one_leg_is_an_ordinary_order(pool, db):
    member = pool.member(a=100, b=100)
    order = pool.redeem(member, pool.coalition_reward("55"), {"order": [pool.a, pool.b]}).json()
    assert legs(order) == [(pool.a, 6)] and order["points"] == 6
    with db.read() as s:
        assert not s.scalars(select(RedemptionLeg).where(RedemptionLeg.redemption_id == uuid.UUID(order["id"]))).all()
    single = pool.partner.api.post("/v1/redemptions", {"reward": pool.coalition_reward("55"), "program": pool.a,
                                                       "member": {"member_id": member}}).json()
    assert legs(single) == [(pool.a, 6)]
    assert_verified(db)


# --- all or nothing ---------------------------------------------------------------------------

def test_not_enough_points_together_is_409_and_reserves_nothing(pool, provider, db):
    member = pool.member(a=1_000, b=10_000)  # 10,000 + 40,000 units < 160,000
    before = pool.balances(member)
    card = reward_code(db, provider)
    db.write(lambda s: s.execute(update(Reward).where(Reward.provider == provider.name).values(stock=3)))
    for pay_with in ({"strategy": "cheapest_first"}, {"order": [pool.a, pool.b]}):
        assert_problem(pool.redeem(member, card, pay_with, amount="10.00"), 409, "insufficient-points")
    # A split whose second leg is more than the member has: refused before the ledger is touched.
    split = {"split": [{"program": pool.a, "points": 1_000}, {"program": pool.b, "points": 37_500}]}
    problem = assert_problem(pool.redeem(member, card, split, amount="10.00"), 409, "insufficient-points")
    assert pool.b in problem["detail"]
    assert pool.balances(member) == before
    with db.read() as s:
        assert not s.scalars(select(Redemption).where(Redemption.member_id == uuid.UUID(member))).all()
        assert s.scalar(select(Reward.stock).where(Reward.provider == provider.name)) == 3
    assert_verified(db)


def test_split_refusals(pool, partner, other_partner, provider, db):
    member = pool.member(a=10_000, b=100_000)
    card = reward_code(db, provider)

    def split(*pairs):
        return {"split": [{"program": code, "points": points} for code, points in pairs]}

    refusals = [
        (split((pool.a, 1_000), (pool.b, 37_499)), 422, "split-below-price"),  # 4 units short
        (split((pool.a, 1_001), (pool.b, 37_500)), 422, "split-above-price"),  # an A point too many
        (split((pool.a, 1_000), (pool.a, 15_000)), 422, "duplicate-program"),
        ({"order": [pool.b, pool.b]}, 422, "duplicate-program"),
        (split((pool.a, 1_000), (other_partner.program, 1)), 404, "program-not-found"),
        ({"order": [pool.a, "NOSUCHPROGRAM"]}, 404, "program-not-found"),
    ]
    for pay_with, status, slug in refusals:
        assert_problem(pool.redeem(member, card, pay_with, amount="10.00"), status, slug)

    # A reward priced in one program's points pays from that program only.
    priced = in_house(partner)
    assert_problem(pool.redeem(member, priced, {"order": [pool.a]}), 422, "reward-not-poolable")
    # Exactly one of program and pay_with.
    both = {"reward": card, "program": pool.a, "pay_with": {"order": [pool.a]}, "member": {"member_id": member},
            "amount": "10.00"}
    assert_problem(partner.api.post("/v1/redemptions", both), 422, "invalid-payment")
    neither = {k: v for k, v in both.items() if k not in ("program", "pay_with")}
    assert_problem(partner.api.post("/v1/redemptions", neither), 422, "invalid-payment")
    # The schema: one kind of pay_with, a known strategy, whole points above zero.
    for bad in ({"order": [pool.a], "strategy": "cheapest_first"}, {"strategy": "dearest_first"},
                {"split": [{"program": pool.a, "points": 0}]}, {"split": [{"program": pool.a, "points": 1.5}]}, {}):
        assert_problem(pool.redeem(member, card, bad, amount="10.00"), 400, "invalid-request")

    # A program the member is not enrolled in, and a partner-hosted one.
    lone = pool.add_program("1")
    assert_problem(pool.redeem(member, card, {"order": [pool.a, lone]}, amount="10.00"), 422, "not-a-member")
    assert pool.partner.api.post("/v1/members", {"program": lone, "member_id": member}).status_code == 201
    db.write(lambda s: s.execute(update(Program).where(Program.code == lone).values(hosted_by="lcp")))
    assert_problem(pool.redeem(member, card, {"order": [pool.a, lone]}, amount="10.00"), 422,
                   "program-cannot-pay")
    assert pool.available(member) == {pool.a: 10_000, pool.b: 100_000, lone: 0}
    assert_verified(db)


def test_a_partner_pools_only_its_own_programs(pool, other_partner, db):
    member = pool.member(a=3, b=0)
    join(db, other_partner.program, member)
    other_partner.buy(member, "100000000")  # plenty of the other partner's points
    reward = pool.coalition_reward("55")
    assert_problem(pool.redeem(member, reward, {"order": [pool.a, other_partner.program]}), 404,
                   "program-not-found")
    # cheapest_first looks only at the caller's programs: 3 A points are not enough.
    assert_problem(pool.redeem(member, reward, {"strategy": "cheapest_first"}), 409, "insufficient-points")
    # A member the partner does not know at all.
    stranger = other_partner.enrol()
    assert_problem(pool.redeem(stranger, reward, {"strategy": "cheapest_first"}), 404, "member-not-found")
    assert_problem(pool.redeem(stranger, reward, {"order": [pool.a, pool.b]}), 404, "member-not-found")
    assert_verified(db)


def test_a_partner_names_the_member_by_an_identifier_or_subject(pool, db):
    member = pool.member(a=3, b=10)
    body = {"reward": pool.coalition_reward("55"), "pay_with": {"strategy": "cheapest_first"},
            "member": {"email": pool.emails[member].upper()}}
    response = pool.partner.api.post("/v1/redemptions", body)
    assert response.status_code == 201, response.text
    assert response.json()["member_id"] == member
    # B first: 10 B (40 units), then 2 A (20); 60 is more than 55 by a whole B point: 9 B + 2 A.
    assert legs(response.json()) == [(pool.b, 9), (pool.a, 2)]
    by_subject = {**body, "member": {"subject": pairwise_subject(db, pool.partner, member)},
                  "reward": pool.coalition_reward("5")}
    # 1 B left (4 units) and A rounds the other unit up to a point (10 units): the B point is
    # not needed after all, so A alone pays.
    assert legs(pool.partner.api.post("/v1/redemptions", by_subject).json()) == [(pool.a, 1)]
    missing = {**body, "member": {"email": "nobody@example.com"}}
    assert_problem(pool.partner.api.post("/v1/redemptions", missing), 404, "member-not-found")
    unknown = {**body, "member": {"subject": "A" * 43}}
    assert_problem(pool.partner.api.post("/v1/redemptions", unknown), 404, "member-not-found")
    assert_problem(pool.partner.api.post("/v1/redemptions", {k: v for k, v in body.items() if k != "member"}),
                   422, "member-required")
    assert_verified(db)


def test_a_member_pools_programs_of_several_partners(pool, other_partner, make_partner, http, db):
    member = pool.member(a=2, b=0)
    join(db, other_partner.program, member)  # other_partner's point is worth 10 units too
    other_partner.buy(member, "4000000")     # 4,000 points
    mine = member_api(http, pool.partner, member)
    reward = pool.coalition_reward("55")
    response = mine.post("/v1/redemptions", {"reward": reward,
                                             "pay_with": {"order": [pool.a, other_partner.program]}})
    assert response.status_code == 201, response.text
    order = response.json()
    assert legs(order) == [(pool.a, 2), (other_partner.program, 4)]
    # Each partner whose points paid sees the order; a partner who paid nothing does not.
    assert other_partner.api.get(f"/v1/redemptions/{order['id']}").status_code == 200
    stranger = make_partner()
    assert_problem(stranger.api.get(f"/v1/redemptions/{order['id']}"), 404, "redemption-not-found")
    assert other_partner.balance(member)["posted"] == 3_996
    assert_verified(db)


def test_a_pooled_order_replays_and_reserves_once(pool, provider, db):
    member = pool.member(a=5_000, b=30_000)
    body = {"reward": reward_code(db, provider), "pay_with": {"strategy": "cheapest_first"},
            "member": {"member_id": member}, "amount": "10.00"}
    first = pool.partner.api.post("/v1/redemptions", body, key="pool-" + member)
    again = pool.partner.api.post("/v1/redemptions", body, key="pool-" + member)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {k: v for k, v in first.json().items() if k != "delivery"}  # never stored
    assert len(again.json()["legs"]) == 2
    assert pool.available(member) == {pool.a: 1_000, pool.b: 0}
    assert_verified(db)


def test_concurrent_pooled_orders_in_opposite_orders_never_overdraw(pool, db):
    """Service level, many threads: orders drawing A then B race orders drawing B then A on
    one member. Each is all or nothing (every leg or none), the balances never go below zero,
    and the ledger still verifies. (The ledger locks accounts in ascending id order whatever
    the legs' order, so PostgreSQL sees no deadlock to retry.)"""
    member = pool.member(a=30, b=75)  # 300 + 300 units: room for about ten 55-unit orders
    reward = pool.coalition_reward("55")
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == pool.partner.code))
    actor = Actor(pool.partner.client_id, partner_id, frozenset({"redemptions:write"}))
    settings = runtime.current().settings
    terms = redemptions.Terms(settings.unit_rates, timedelta(seconds=settings.redemption_hold))

    def order(i):
        body = {"reward": reward, "member": {"member_id": member},
                "pay_with": {"order": [pool.a, pool.b] if i % 2 else [pool.b, pool.a]}}
        try:
            view = db.write(lambda s: redemptions.redeem(s, actor, body, terms))
        except (Conflict, InsufficientFunds):
            return None
        return [(leg.program_code, leg.points) for leg in view.legs]

    with ThreadPoolExecutor(8) as threads:
        paid = [legs for legs in threads.map(order, range(16)) if legs]
    value = {pool.a: 10, pool.b: 4}
    # At most ten fit. On PostgreSQL some may be refused although the rest would have paid
    # another plan: a plan reads the balances without locking them, and the ledger's guarded
    # update refuses a leg another order has just taken (a 409, nothing reserved).
    assert 1 <= len(paid) <= 10
    assert all(55 <= sum(value[code] * points for code, points in legs) < 55 + 10 for legs in paid)
    spent = {code: sum(points for legs in paid for c, points in legs if c == code) for code in value}
    assert pool.available(member) == {pool.a: 30 - spent[pool.a], pool.b: 75 - spent[pool.b]}
    assert_verified(db)
