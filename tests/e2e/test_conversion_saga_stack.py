"""Conversions with a partner-hosted program end to end: the API (in-process) reserves the
local leg, the outbox dispatcher (`hub dispatch`) publishes the remote leg, a real Celery
worker (`hub worker`) runs the saga against the LCP fake served by `hub sandbox` over HTTP.

The LCP fake's magic amounts (by amount % 100, partners/lcp/README.md) drive the faults. Each
conversion ends completed (the partner applied its leg exactly once, the local leg posted) or
failed (the partner applied nothing, the local leg voided), and the ledger verifies.
"""
from __future__ import annotations

import secrets
import uuid

import pytest

from hub.api import runtime
from hub.exchange.hosted import factories
from hub.ledger.verify import verify
from tests.conftest import Partner
from tests.e2e.relay_stack import Stack, wait_for
from tests.integration.test_conversions import join

pytestmark = pytest.mark.e2e
START_BALANCE = 100_000  # partners/lcp/sandbox.py: every fake member starts with this


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory):
    stack = Stack(settings, tmp_path_factory.mktemp("saga"), settings.broker_url)
    stack.start()
    # The API under test (in this process) asks the same sandbox (quotes validate the member).
    hosted = runtime.current().hosted
    saved = hosted.get("lcp")
    hosted["lcp"] = factories()["lcp"](stack.hosted_config()["lcp"])
    try:
        yield stack
    finally:
        hosted["lcp"] = saved
        stack.stop()


@pytest.fixture(scope="module")
def coalition(stack, ops, http):
    """A shop (a point worth 10 units) and an airline hosted by the LCP fake (a mile worth 5),
    both directions open."""
    shop, airline = Partner(ops, http, point_value="10"), Partner(ops, http, point_value="5", hosted_by="lcp")
    for source, target in ((shop.program, airline.program), (airline.program, shop.program)):
        response = ops.http.put(f"/v1/conversions/pairs/{source}/{target}", headers=ops.headers,
                                json={"open": True})
        assert response.status_code == 200, response.text
    return shop, airline


def member(db, coalition) -> tuple[str, str]:
    """A new member with 10,000 shop points and an airline number of their own."""
    shop, airline = coalition
    member_id = shop.enrol()
    number = f"SKY{secrets.token_hex(5).upper()}"
    join(db, airline.program, member_id, number)
    shop.buy(member_id, "10000000")
    return member_id, number


def convert(coalition, member_id: str, points: int, into_airline: bool) -> dict:
    shop, airline = coalition
    payer, source, target = (shop, shop, airline) if into_airline else (airline, airline, shop)
    q = payer.api.post("/v1/conversions/quotes", {"from": source.program, "to": target.program, "points": points,
                                                   "member": {"member_id": member_id}})
    assert q.status_code == 201, q.text
    done = payer.api.post("/v1/conversions", {"quote": q.json()["quote"]}, key=uuid.uuid4().hex)
    assert done.status_code == 202, done.text
    return done.json()


def settled(shop, conversion: dict, stack: Stack, timeout: float = 60) -> dict:
    def done():
        got = shop.api.get(f"/v1/conversions/{conversion['id']}").json()
        return got if got["state"] != "pending" else None
    try:
        return wait_for(done, timeout, f"conversion {conversion['id']} to settle", interval=0.2)
    except AssertionError:
        raise AssertionError(f"not settled; worker log:\n{stack.log('worker')[-4000:]}") from None


# (what, direction, points sent to the partner) -> how it must end. Into the airline the
# partner is sent points x 2 miles (a point is worth two miles), out of it the points.
CASES = {
    "credit": (True, 1000, "completed"),            # 2,000 miles credited
    "debit": (False, 1000, "completed"),
    "failure (99)": (False, 1099, "failed"),
    "systemError, applied (97)": (False, 1097, "completed"),
    "systemError, applied by the retry (91)": (False, 1091, "completed"),
    "systemError, retry declined (98)": (False, 1098, "failed"),
    "pending, then success (95)": (False, 1095, "completed"),
    "pending, then failure (96)": (False, 1096, "failed"),
    "applied, answer too late (93)": (False, 1093, "completed"),
}


def test_remote_legs_end_completed_or_compensated(stack, coalition, db):
    shop, _ = coalition
    started = {}
    for what, (into_airline, points, _) in CASES.items():
        member_id, number = member(db, coalition)
        before = shop.balance(member_id)
        started[what] = (convert(coalition, member_id, points, into_airline), member_id, number, before)
    for what, (conversion, member_id, number, before) in started.items():
        into_airline, points, expected = CASES[what]
        got = settled(shop, conversion, stack)
        assert got["state"] == expected, (what, got)
        posting = stack.orders("lcp")[f"cnv{uuid.UUID(conversion['id']).hex}"]
        balance = shop.balance(member_id)
        remote = runtime.current().hosted["lcp"].validate(number).balance
        if expected == "completed":
            assert posting["applied"] == 1, (what, posting)  # exactly once at the partner
            if into_airline:
                assert remote == START_BALANCE + conversion["receive"]
                assert balance["posted"] == before["posted"] - points
            else:
                assert remote == START_BALANCE - points
                assert balance["posted"] == before["posted"] + conversion["receive"]
        else:
            assert posting["applied"] == 0, (what, posting)
            assert got["failure"], what
            assert remote == START_BALANCE
            assert balance == before, what  # compensated: the pending credit is gone
        assert balance["available"] == balance["posted"]  # nothing left reserved
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations
