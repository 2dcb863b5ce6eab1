"""The brute-force limiter (hub/identity/ratelimit.py), in memory and on Redis."""
from __future__ import annotations

import os
import secrets
import threading
import time

import pytest
import redis

from hub.identity.ratelimit import (
    OUTAGE_LOG_PERIOD, Limited, Limiter, MemoryCounters, RedisCounters, Rule, ip_subject, limiter_for,
)

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
        limiter.attempt(RULE, subject)
    with pytest.raises(Limited) as limited:
        limiter.attempt(RULE, subject)
    assert limited.value.retry_after == 20 and limited.value.rule is RULE  # 1_000_000 is 40 s into its window
    limiter.attempt(RULE, secrets.token_hex(8))  # another subject is not limited
    limiter.clock.now += 20
    limiter.attempt(RULE, subject)


def test_attempt_counts_every_request(limiter):
    subject = secrets.token_hex(8)
    for _ in range(RULE.limit):
        limiter.attempt(RULE, subject)
    with pytest.raises(Limited):
        limiter.attempt(RULE, subject)


def test_a_successful_attempt_is_not_counted(limiter):
    """Rules that count failures only: the caller takes a success back."""
    subject = secrets.token_hex(8)
    for _ in range(RULE.limit * 3):
        limiter.attempt(RULE, subject).succeeded()
    for _ in range(RULE.limit):
        limiter.attempt(RULE, subject)
    with pytest.raises(Limited):
        limiter.attempt(RULE, subject)


def test_filled_names_the_one_attempt_that_reaches_a_rules_limit(limiter):
    subject, wide = secrets.token_hex(8), Rule("test-wide", 100, 60)
    filled = []
    for _ in range(RULE.limit):
        attempt = limiter.attempt(RULE, subject, (wide, subject))
        filled.append((attempt.filled(RULE), attempt.filled(wide)))
    assert filled == [(False, False)] * (RULE.limit - 1) + [(True, False)]
    attempt.succeeded()  # taken back: it filled nothing after all
    assert not attempt.filled(RULE)
    assert limiter.attempt(RULE, subject).filled(RULE)


def test_attempt_on_several_rules_counts_all_or_none(limiter):
    subject, other = secrets.token_hex(8), secrets.token_hex(8)
    wide = Rule("test-wide", 100, 60)
    for _ in range(RULE.limit):
        limiter.attempt(RULE, subject, (wide, other))
    for _ in range(5):  # refused by the first rule: the second counts nothing
        with pytest.raises(Limited) as limited:
            limiter.attempt(wide, other, (RULE, subject))
        assert limited.value.rule is RULE
    for _ in range(wide.limit - RULE.limit):
        limiter.attempt(wide, other)
    with pytest.raises(Limited):
        limiter.attempt(wide, other)


def test_concurrent_attempts_never_pass_the_limit(limiter):
    """Guesses sent in parallel: each is counted before it is tried, so at most `limit` of
    them are tried however many are in flight."""
    subject, threads = secrets.token_hex(8), 24
    barrier, passed, lock = threading.Barrier(threads), [], threading.Lock()

    def guess():
        barrier.wait()
        try:
            limiter.attempt(RULE, subject)
        except Limited:
            return
        time.sleep(0.05)  # the (wrong) guess being checked, with the others in flight
        with lock:
            passed.append(1)

    workers = [threading.Thread(target=guess) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(passed) == RULE.limit


def test_subjects_are_not_stored_in_clear():
    counters = MemoryCounters()
    Limiter(counters).attempt(RULE, "someone@example.com")
    assert not any("someone" in key for key in counters._counts)


class DownRedis:
    """A Redis client whose every command fails, as during an outage."""

    def pipeline(self):
        raise redis.ConnectionError("connection refused")


def test_an_unreachable_redis_falls_back_to_memory_and_logs_once_a_period(caplog):
    """Brute-force protection degrades to per-process counting instead of vanishing."""
    limiter = Limiter(RedisCounters(DownRedis()), clock=Clock())
    for _ in range(RULE.limit):
        limiter.attempt(RULE, "x")
    with pytest.raises(Limited):
        limiter.attempt(RULE, "x")
    limiter.attempt(RULE, "y").succeeded()  # taken back from memory too
    for _ in range(RULE.limit - 1):
        limiter.attempt(RULE, "y")
    assert limiter.attempt(RULE, "y").filled(RULE)
    assert caplog.text.count("rate limit store unavailable") == 1  # not once per request
    limiter.clock.now += OUTAGE_LOG_PERIOD
    limiter.attempt(RULE, "z")
    assert caplog.text.count("rate limit store unavailable") == 2


def test_a_real_unreachable_redis_is_counted_in_memory(caplog):
    # A fixed clock: on the wall clock the attempts could straddle a window's end and start again.
    limiter = Limiter(RedisCounters(redis.Redis(port=1, socket_connect_timeout=0.2)), clock=Clock())
    for _ in range(RULE.limit):
        limiter.attempt(RULE, "x")
    with pytest.raises(Limited):
        limiter.attempt(RULE, "x")
    assert "rate limit store unavailable" in caplog.text


def test_the_store_follows_the_broker():
    assert isinstance(limiter_for("").counters, MemoryCounters)
    assert isinstance(limiter_for("redis://127.0.0.1:6379/15").counters, RedisCounters)


@pytest.mark.parametrize("address,subject", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same /64: one subject
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
    ("fe80::1%eth0", "fe80::/64"),
    (None, "unknown"),
    ("not an address", "not an address"),
])
def test_per_address_rules_count_ipv4_addresses_and_ipv6_slash_64s(address, subject):
    assert ip_subject(address) == subject
