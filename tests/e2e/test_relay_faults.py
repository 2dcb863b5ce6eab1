"""Redemptions relayed end to end under faults: a real Celery worker (`hub worker`), the
outbox dispatcher (`hub dispatch`) and the sandbox providers (`hub sandbox`) over HTTP.

The broker is the machine's Redis when HUB_TEST_REDIS_URL is set (make test-services),
otherwise the embedded SQLite broker that `make run` uses. After every fault, each order is
placed exactly once at its provider or its points are back, and the ledger verifies.
"""
from __future__ import annotations

import uuid

import pytest

from hub.ledger.verify import verify
from hub.rewards.providers import factories
from hub.rewards.registry import sync_all
from tests.e2e.relay_stack import Stack, wait_for
from tests.integration.test_redemptions import rich_member

pytestmark = pytest.mark.e2e
TERMINAL = ("fulfilled", "failed", "needs_review")


@pytest.fixture(scope="module")
def stack(settings, db, tmp_path_factory):
    stack = Stack(settings, tmp_path_factory.mktemp("relay"), settings.broker_url)
    stack.start()
    try:
        providers = {name: factories()[name](config) for name, config in stack.provider_config().items()}
        report = sync_all(db, providers)
        assert all("error" not in r for r in report.values()), report
        yield stack
    finally:
        stack.stop()


def catalog_pick(partner, provider: str) -> tuple[str, str]:
    """A reward of this provider and an amount it offers."""
    items = partner.api.get("/v1/rewards", provider=provider, limit=200).json()["items"]
    reward = items[0]
    amount = reward["denominations"][0] if reward["denominations"] else reward["range"]["min"]
    return reward["code"], amount


def place(partner, member: str, provider: str, tag: str) -> str:
    code, amount = catalog_pick(partner, provider)
    body = {"reward": code, "program": partner.program, "member": {"member_id": member}, "amount": amount,
            "recipient": {"email": f"jo+{tag}@example.com", "name": "Jo"}}
    response = partner.api.post("/v1/redemptions", body, key=uuid.uuid4().hex)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def settled(partner, order_id: str, stack: Stack, timeout: float = 45) -> dict:
    def done():
        order = partner.api.get(f"/v1/redemptions/{order_id}").json()
        return order if order["state"] in TERMINAL else None
    try:
        return wait_for(done, timeout, f"redemption {order_id} to settle", interval=0.2)
    except AssertionError:
        raise AssertionError(f"not settled; worker log:\n{stack.log('worker')[-4000:]}") from None


def reference(order_id: str) -> str:
    return f"rdm{uuid.UUID(order_id).hex}"


def assert_exactly_once(stack: Stack, provider: str, order_id: str) -> None:
    assert stack.orders(provider)[reference(order_id)]["placements"] == 1


def assert_ledger_ok(db) -> None:
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations


@pytest.mark.parametrize("provider", ["tango", "tremendous", "globalgiving"])
def test_each_provider_fulfils(stack, partner, db, provider):
    member = rich_member(partner)
    before = partner.balance(member)["posted"]
    order_id = place(partner, member, provider, "ok")
    order = settled(partner, order_id, stack)
    assert order["state"] == "fulfilled", order
    assert partner.balance(member)["posted"] == before - order["points"]
    if provider == "globalgiving":
        assert order["receipt"]  # the donation receipt, kept for the member and settlement
    assert_exactly_once(stack, provider, order_id)
    assert_ledger_ok(db)


@pytest.mark.parametrize("tag", ["5xx", "5xxplaced", "timeout", "ratelimit", "pending"])
def test_transient_faults_end_fulfilled_exactly_once(stack, partner, db, tag):
    member = rich_member(partner)
    order_ids = {p: place(partner, member, p, tag) for p in ("tango", "tremendous")}
    for provider, order_id in order_ids.items():
        assert settled(partner, order_id, stack)["state"] == "fulfilled"
        assert_exactly_once(stack, provider, order_id)
    assert_ledger_ok(db)


@pytest.mark.parametrize("tag", ["fail", "pendfail"])
def test_permanent_failure_returns_the_points(stack, partner, db, tag):
    member = rich_member(partner)
    before = partner.balance(member)
    order_id = place(partner, member, "tango", tag)
    order = settled(partner, order_id, stack)
    assert order["state"] == "failed" and order["failure"]
    assert partner.balance(member) == before
    assert_ledger_ok(db)


def test_worker_killed_mid_call_and_restarted(stack, partner, db):
    member = rich_member(partner)
    order_id = place(partner, member, "tremendous", "timeout")  # the provider holds its answer
    # The order is placed and the worker is waiting for the answer: kill it (SIGKILL).
    wait_for(lambda: stack.orders("tremendous").get(reference(order_id)), 20, "the order to reach the provider",
             interval=0.02)
    stack.kill("worker")
    assert partner.api.get(f"/v1/redemptions/{order_id}").json()["state"] == "pending"
    stack.start_worker()
    assert settled(partner, order_id, stack)["state"] == "fulfilled"
    assert_exactly_once(stack, "tremendous", order_id)
    assert_ledger_ok(db)
