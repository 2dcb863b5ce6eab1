"""Quotes out of a partner-hosted program ask the partner for the member's balance: a slow or
failing partner costs a few threads and a quick 503, never the API's other requests."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.exchange import conversions
from hub.exchange.hosted import HostedUnavailable, MemberCheck
from tests.conftest import assert_problem
from tests.integration.test_conversion_saga import coalition, fake  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def fresh_breakers():
    conversions._breakers.clear()
    yield
    conversions._breakers.clear()


def quote_out(c, points=1000):
    return c.airline.api.post("/v1/conversions/quotes", {
        "from": c.airline.program, "to": c.shop.program, "points": points,
        "member": {"external_id": c.remote_member}})


def test_a_slow_partner_holds_only_a_few_threads(coalition):
    c = coalition
    release, started = threading.Event(), threading.Semaphore(0)

    def slow(member_id):
        started.release()
        release.wait(10)
        return MemberCheck(True, 50_000)

    c.fake.validate = slow
    with ThreadPoolExecutor(conversions.CHECKS_IN_FLIGHT) as pool:
        waiting = [pool.submit(quote_out, c) for _ in range(conversions.CHECKS_IN_FLIGHT)]
        for _ in waiting:
            assert started.acquire(timeout=10)
        # Every check slot is taken: the next quote is refused at once, other requests go on.
        assert_problem(quote_out(c), 503, "partner-unavailable")
        assert c.shop.balance(c.member)["available"] == 5000
        release.set()
        assert [f.result().status_code for f in waiting] == [201] * conversions.CHECKS_IN_FLIGHT


def test_a_failing_partner_is_not_asked_again_for_a_while(coalition):
    c = coalition
    calls = []

    def down(member_id):
        calls.append(member_id)
        raise HostedUnavailable("connection refused")

    c.fake.validate = down
    for _ in range(conversions.CHECK_BREAKER_FAILURES):
        assert_problem(quote_out(c), 503, "partner-unavailable")
    assert len(calls) == conversions.CHECK_BREAKER_FAILURES
    refused = assert_problem(quote_out(c), 503, "partner-unavailable")
    assert "not answering" in refused["detail"] and len(calls) == conversions.CHECK_BREAKER_FAILURES
