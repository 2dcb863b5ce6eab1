"""The brute-force limiter (hub/identity/ratelimit.py), in memory and on Redis."""
from __future__ import annotations

import os
import secrets

import pytest
import redis

from hub.identity.ratelimit import Limited, Limiter, MemoryCounters, RedisCounters, Rule, limiter_for

RULE = Rule("test", 3, 60)


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _backends():
    yield pytest.param(MemoryCounters, id="memory")
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if url:
        yield pytest.param(lambda: RedisCounters(redis.Redis.from_url(url)), id="redis")


@pytest.fixture(params=list(_backends()))
def limiter(request):
    return Limiter(request.param(), clock=Clock())


def test_a_subject_is_limited_in_its_window_then_free_again(limiter):
    subject = secrets.token_hex(8)
    for _ in range(RULE.limit):
        limiter.check(RULE, subject)
        limiter.hit(RULE, subject)
    with pytest.raises(Limited) as limited:
        limiter.check(RULE, subject)
    assert limited.value.retry_after == 20 and limited.value.rule is RULE  # 1_000_000 is 40 s into its window
    limiter.check(RULE, secrets.token_hex(8))  # another subject is not limited
    limiter.clock.now += 20
    limiter.check(RULE, subject)


def test_attempt_counts_every_request(limiter):
    subject = secrets.token_hex(8)
    for _ in range(RULE.limit):
        limiter.attempt(RULE, subject)
    with pytest.raises(Limited):
        limiter.attempt(RULE, subject)


def test_subjects_are_not_stored_in_clear():
    counters = MemoryCounters()
    Limiter(counters).hit(RULE, "someone@example.com")
    assert not any("someone" in key for key in counters._counts)


def test_an_unreachable_redis_fails_open_and_logs(caplog):
    limiter = Limiter(RedisCounters(redis.Redis(port=1, socket_connect_timeout=0.2)))
    limiter.hit(RULE, "x")
    limiter.check(RULE, "x")
    assert "rate limit store unavailable" in caplog.text


def test_the_store_follows_the_broker():
    assert isinstance(limiter_for("").counters, MemoryCounters)
    assert isinstance(limiter_for("redis://127.0.0.1:6379/15").counters, RedisCounters)
