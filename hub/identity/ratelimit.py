"""Brute-force protection: fixed-window counters per rule and subject (an account's email,
a client IP), in Redis when the hub has one (shared by every process) or in this process's
memory (the embedded default, one process).

Login and second-factor rules count failures only, so a member who logs in often is never
slowed down; sign-up and reset rules count every request, since each one sends a mail.
The check and the count are two steps: concurrent attempts may pass a limit by the number of
requests in flight, which does not matter for guessing a password.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    name: str
    limit: int  # counted events allowed per window
    window: int  # seconds


# Per account (subject: the normalised email, known or not, so that a limit never tells
# whether an account exists) and per client IP.
LOGIN_ACCOUNT = Rule("login-account", 10, 15 * 60)
LOGIN_IP = Rule("login-ip", 100, 15 * 60)
# A 6-digit code: 5 failures per 5 minutes leave an attacker about one chance in 60,000 a day.
SECOND_FACTOR_ACCOUNT = Rule("2fa-account", 5, 5 * 60)
SECOND_FACTOR_IP = Rule("2fa-ip", 50, 15 * 60)
SIGNUP_IP = Rule("signup-ip", 10, 60 * 60)
SIGNUP_EMAIL = Rule("signup-email", 3, 60 * 60)
RESET_ACCOUNT = Rule("reset-account", 3, 60 * 60)
RESET_IP = Rule("reset-ip", 20, 60 * 60)
# Account linking (hub/identity/linking.py): every request mails a code, so requests are
# counted per account and per card (known or not: the limit tells nothing about the card);
# wrong codes per account, like the second factor (each request also dies after 5).
LINK_START_ACCOUNT = Rule("link-start-account", 5, 60 * 60)
LINK_START_CARD = Rule("link-start-card", 3, 60 * 60)
LINK_CODE_ACCOUNT = Rule("link-code-account", 5, 15 * 60)


class Limited(Exception):
    """Too many attempts: try again after `retry_after` seconds."""

    def __init__(self, rule: Rule, retry_after: int):
        super().__init__(f"rate limit {rule.name} reached")
        self.rule = rule
        self.retry_after = retry_after


class MemoryCounters:
    """Counters in this process (the embedded default: one API process)."""

    def __init__(self):
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, (0, 0.0))[0]

    def incr(self, key: str, expires_at: float, now: float) -> None:
        with self._lock:
            if len(self._counts) > 10_000:  # forget windows that are over
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, _ = self._counts.get(key, (0, expires_at))
            self._counts[key] = (count + 1, expires_at)


class RedisCounters:
    """Counters in Redis, shared by every API process."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def get(self, key: str) -> int:
        return int(self.redis.get(key) or 0)

    def incr(self, key: str, expires_at: float, now: float) -> None:
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            # Redis keeps real time: the window's length (not the clock's end) sets the expiry.
            pipe.expire(key, max(1, int(expires_at - now) + 1))
            pipe.execute()


class Limiter:
    def __init__(self, counters, clock: Callable[[], float] = time.time):
        self.counters = counters
        self.clock = clock

    def _key(self, rule: Rule, subject: str, now: float) -> str:
        # Hashed: emails and addresses are not kept in the counters' store.
        digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
        return f"hub:rl:{rule.name}:{digest}:{int(now // rule.window)}"

    def check(self, rule: Rule, subject: str) -> None:
        """Raise Limited if the subject has used up this window."""
        now = self.clock()
        try:
            count = self.counters.get(self._key(rule, subject, now))
        except redis.RedisError as exc:
            # Fail open: an outage of Redis must not lock every member out. Logged loudly.
            log.error("rate limit store unavailable (%s): %s not checked", type(exc).__name__, rule.name)
            return
        if count >= rule.limit:
            window_end = (int(now // rule.window) + 1) * rule.window
            raise Limited(rule, max(1, int(window_end - now)))

    def hit(self, rule: Rule, subject: str) -> None:
        """Count one event against the subject."""
        now = self.clock()
        window_end = (int(now // rule.window) + 1) * rule.window
        try:
            self.counters.incr(self._key(rule, subject, now), window_end, now)
        except redis.RedisError as exc:
            log.error("rate limit store unavailable (%s): %s not counted", type(exc).__name__, rule.name)

    def attempt(self, rule: Rule, subject: str) -> None:
        """Check, then count: for rules that count every request."""
        self.check(rule, subject)
        self.hit(rule, subject)


def limiter_for(broker_url: str) -> Limiter:
    """Redis when the broker is Redis, else this process's memory."""
    if broker_url.startswith(("redis://", "rediss://")):
        return Limiter(RedisCounters(redis.Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1)))
    return Limiter(MemoryCounters())
