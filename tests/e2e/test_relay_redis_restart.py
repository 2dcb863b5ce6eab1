"""Redis restarted (and its queue lost) with redemptions in flight.

Its own module: a dispatcher of another running stack would drain the same outbox into its
own broker. The Redis here is private (a redis-server on a free port), so that the test can
kill it without touching the machine's.
"""
from __future__ import annotations

import time

import pytest

from hub.rewards.providers import factories
from hub.rewards.registry import sync_all
from tests.e2e.relay_stack import RedisServer, Stack
from tests.e2e.test_relay_faults import assert_exactly_once, assert_ledger_ok, place, settled
from tests.integration.test_redemptions import rich_member

pytestmark = pytest.mark.e2e


def test_redis_restarted_with_orders_in_flight(settings, db, partner, tmp_path_factory):
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    stack = Stack(settings, tmp_path_factory.mktemp("relay-redis"), redis.url)
    stack.start()
    try:
        sync_all(db, {name: factories()[name](config) for name, config in stack.provider_config().items()})
        member = rich_member(partner)
        before = partner.balance(member)["posted"]
        orders = [place(partner, member, "tango", "pending") for _ in range(4)]
        redis.stop()  # queued and unacknowledged tasks are lost with it
        orders += [place(partner, member, "tango", "ok") for _ in range(4)]  # accepted while it is down
        time.sleep(2)
        redis.start()
        spent = 0
        for order_id in orders:
            order = settled(partner, order_id, stack, timeout=60)
            assert order["state"] == "fulfilled", order
            assert_exactly_once(stack, "tango", order_id)
            spent += order["points"]
        assert partner.balance(member)["posted"] == before - spent
        assert_ledger_ok(db)
    finally:
        stack.stop()
        redis.stop()
