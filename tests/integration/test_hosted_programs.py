"""A partner-hosted program (programs.hosted_by) keeps its balances in its partner's system,
reached only through its connector (hub/exchange/hosted.py): the hub's ledger never earns,
reverses or spends its points. Purchases (single and batch), returns, one-program redemptions
and in-house rewards priced in its points are refused with 422 `program-hosted`, and nothing
is written; conversions into and out of it (tests/integration/test_conversion_saga.py) are
the way its points move.
"""
from __future__ import annotations

import secrets
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from hub.api import runtime
from hub.ledger.verify import verify
from hub.programs.models import PointTransaction, Program
from hub.rewards.models import Redemption, Reward
from tests.conftest import assert_problem, unique_code


class Untouchable:
    """A hosted program's connector that records any call: none of these paths may reach it."""

    def __init__(self, name: str):
        self.name = name
        self.calls: list[str] = []

    def __getattr__(self, op):
        def call(*args):
            self.calls.append(op)
            raise AssertionError(f"the hosted program's partner was asked to {op}")
        return call


@pytest.fixture
def connector():
    fake = Untouchable(f"hosted{uuid.uuid4().hex[:8]}")
    runtime.current().hosted[fake.name] = fake
    yield fake
    runtime.current().hosted.pop(fake.name, None)


@pytest.fixture
def airline(ops, partner, connector):
    """The partner runs a hub program (partner.program) and a hosted one (`hosted`), and a
    member belongs to both (known to the hosted one by their number there)."""
    hosted = unique_code("H")
    response = ops.post("/v1/programs", {
        "partner": partner.code, "code": hosted, "name": f"Miles {hosted}", "point_value": "5",
        "earn_rule": {"currency": partner.currency, "points_per_unit": "0.001"}, "hosted_by": connector.name,
    })
    assert response.status_code == 201, response.text
    assert response.json()["hosted_by"] == connector.name
    member = partner.enrol(email=f"m{uuid.uuid4().hex[:8]}@example.com")
    number = f"FF{secrets.token_hex(4).upper()}"
    joined = partner.api.post("/v1/members", {"program": hosted, "member_id": member, "external_id": number})
    assert joined.status_code == 201, joined.text
    return SimpleNamespace(partner=partner, hosted=hosted, member=member, number=number)


def balances(partner, member: str) -> dict[str, dict]:
    response = partner.api.get(f"/v1/members/{member}/balances")
    assert response.status_code == 200, response.text
    return {b["program"]: b for b in response.json()["items"]}


def history(partner, member: str) -> list[dict]:
    response = partner.api.get(f"/v1/members/{member}/history", limit=200)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ledger_ok(db) -> bool:
    with db.read() as s:
        return verify(s).ok


def hub_program(db, code: str) -> None:
    db.write(lambda s: s.execute(update(Program).where(Program.code == code).values(hosted_by=None)))


def hosted_by(db, code: str, connector) -> None:
    db.write(lambda s: s.execute(update(Program).where(Program.code == code).values(hosted_by=connector.name)))


def purchase(airline, program: str, txn: str | None = None, **member) -> dict:
    body = airline.partner.purchase_body(airline.member, "250000", txn)
    return {**body, "program": program, **({"member": member} if member else {})}


def test_a_purchase_into_a_hosted_program_is_refused_and_earns_nothing(airline, connector, db):
    partner, hosted = airline.partner, airline.hosted
    for body in (purchase(airline, hosted), purchase(airline, hosted, external_id=airline.number)):
        problem = assert_problem(partner.api.post("/v1/transactions", body), 422, "program-hosted")
        assert hosted in problem["detail"] and "kept by its partner" in problem["detail"]
        # the same purchase again (with an idempotency key, too): still refused, nothing kept
        assert_problem(partner.api.post("/v1/transactions", body, key=uuid.uuid4().hex), 422, "program-hosted")
    # the program check comes before the member's: an unknown member is no different
    assert_problem(partner.api.post("/v1/transactions", purchase(airline, hosted, external_id="nobody")),
                   422, "program-hosted")
    assert balances(partner, airline.member)[hosted]["posted"] == 0
    assert history(partner, airline.member) == []
    with db.read() as s:
        program_id = s.scalar(select(Program.id).where(Program.code == hosted))
        assert s.scalar(select(PointTransaction.id).where(PointTransaction.program_id == program_id)) is None
    assert connector.calls == [] and ledger_ok(db)


def test_a_batch_refuses_its_hosted_items_one_by_one_and_posts_the_rest(airline, connector, db):
    partner, hosted = airline.partner, airline.hosted
    items = [
        purchase(airline, partner.program, txn="good-1"),
        purchase(airline, hosted, txn="sky-1"),
        purchase(airline, partner.program, txn="good-2"),
        purchase(airline, hosted, txn="sky-2", external_id=airline.number),
    ]
    response = partner.api.post("/v1/transactions/batch", {"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["created", "failed", "created", "failed"]
    assert (body["created"], body["duplicates"], body["failed"]) == (2, 0, 2)
    for failed in (body["results"][1], body["results"][3]):
        assert failed["problem"]["type"].endswith("/program-hosted") and failed["problem"]["status"] == 422
        assert hosted in failed["problem"]["detail"]
    found = balances(partner, airline.member)
    assert (found[partner.program]["posted"], found[hosted]["posted"]) == (500, 0)
    assert {m["program"] for m in history(partner, airline.member)} == {partner.program}
    # a batch of hosted items only: every one refused, nothing written
    again = partner.api.post("/v1/transactions/batch", {"items": [items[1], items[3]]}).json()
    assert [r["status"] for r in again["results"]] == ["failed", "failed"]
    assert balances(partner, airline.member)[hosted]["posted"] == 0
    assert connector.calls == [] and ledger_ok(db)


def test_a_return_into_a_hosted_program_is_refused_and_reverses_nothing(airline, connector, db):
    """A purchase the hub's ledger earned while the program was still the hub's (the shadow
    points of a program since moved to its partner's system): its return is refused too."""
    partner, hosted = airline.partner, airline.hosted
    hub_program(db, hosted)
    earned = partner.api.post("/v1/transactions", purchase(airline, hosted, txn="before"))
    assert earned.status_code == 201, earned.text
    hosted_by(db, hosted, connector)
    before = balances(partner, airline.member)[hosted]
    assert before["posted"] == 250
    for ref in ({"id": earned.json()["id"]}, {"program": hosted, "transaction_id": "before"}):
        body = {"purchase": ref, "return_id": f"r-{secrets.token_hex(4)}", "amount": "100000",
                "currency": partner.currency, "occurred_at": "2026-11-02T10:00:00Z"}
        problem = assert_problem(partner.api.post("/v1/returns", body), 422, "program-hosted")
        assert hosted in problem["detail"]
    assert balances(partner, airline.member)[hosted] == before
    with db.read() as s:
        original = s.get(PointTransaction, uuid.UUID(earned.json()["id"]))
        assert (original.refunded_minor, original.points_reversed) == (0, 0)
        assert s.scalar(select(PointTransaction.id).where(PointTransaction.purchase_id == original.id)) is None
    assert connector.calls == [] and ledger_ok(db)


def test_a_hosted_program_cannot_pay_a_one_program_redemption(airline, connector, db, ops):
    """Neither a reward priced in its points (made while it was the hub's) nor a coalition
    reward: the member's shadow points there stay as they were, and no order is written."""
    partner, hosted, member = airline.partner, airline.hosted, airline.member
    hub_program(db, hosted)
    assert partner.api.post("/v1/transactions", purchase(airline, hosted)).status_code == 201
    own = unique_code("R")
    made = partner.api.post("/v1/rewards", {"code": own, "kind": "free_product", "name": "Lounge pass",
                                            "program": hosted, "points": 100, "stock": 5})
    assert made.status_code == 201, made.text
    hosted_by(db, hosted, connector)
    coalition = unique_code("R")
    made = ops.post("/v1/rewards", {"code": coalition, "kind": "experience", "name": "City tour", "units": "100"})
    assert made.status_code == 201, made.text
    before = balances(partner, member)
    for reward in (own, coalition):
        for who in ({"member_id": member}, {"external_id": airline.number}):
            body = {"reward": reward, "program": hosted, "member": who}
            problem = assert_problem(partner.api.post("/v1/redemptions", body, key=uuid.uuid4().hex),
                                     422, "program-hosted")
            assert hosted in problem["detail"]
    # pooling keeps its own refusal of a hosted program
    pooled = {"reward": coalition, "pay_with": {"order": [hosted, partner.program]}, "member": {"member_id": member}}
    assert_problem(partner.api.post("/v1/redemptions", pooled, key=uuid.uuid4().hex), 422, "program-cannot-pay")
    assert balances(partner, member) == before
    with db.read() as s:
        assert s.scalar(select(Redemption.id).where(Redemption.member_id == uuid.UUID(member))) is None
        assert s.scalar(select(Reward.stock).where(Reward.code == own)) == 5
    assert connector.calls == [] and ledger_ok(db)


def test_no_in_house_reward_is_priced_in_a_hosted_programs_points(airline, connector, db, ops):
    partner, hosted = airline.partner, airline.hosted
    body = {"code": unique_code("R"), "kind": "discount", "name": "10% off", "program": hosted, "points": 100}
    for api in (partner.api, ops):
        problem = assert_problem(api.post("/v1/rewards", body), 422, "program-hosted")
        assert hosted in problem["detail"]
    with db.read() as s:
        assert s.scalar(select(Reward.id).where(Reward.code == body["code"])) is None
    listed = partner.api.get("/v1/rewards", available="false", limit=200).json()["items"]
    assert body["code"] not in {r["code"] for r in listed}
    # the partner's hub program still prices its rewards
    assert partner.api.post("/v1/rewards", {**body, "program": partner.program}).status_code == 201
    assert connector.calls == [] and ledger_ok(db)
