"""Brute-force protection: fixed-window counters per rule and subject (an account's email,
a client IP), in Redis when the hub has one (shared by every process) or in this process's
memory (the embedded default, one process).

Login and second-factor rules count failures only, so a member who logs in often is never
slowed down; sign-up and reset rules count every request, since each one sends a mail.
Counting is atomic: `Limiter.attempt` counts first (Redis INCR's answer, or under the lock in
memory) and refuses the request if that made it one too many, so however many guesses are
in flight at once, at most `limit` of them are tried. Rules that count failures take a
success back (`Attempt.succeeded`).

While Redis is unreachable, counting falls back to this process's memory (logged once a
minute): the limits then hold per process instead of across them, and never vanish.
"""
from __future__ import annotations

import hashlib
import ipaddress
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


# Failed logins, per account (subject: the normalised email, known or not, so that a limit
# never tells whether an account exists) from one client IP, per client IP, and per account
# from anywhere. Keyed by email alone, a stranger's 10 wrong passwords would lock the member
# out everywhere; keyed by email and IP, they lock out only that IP, and the member logs in
# from their own. The trade-off: guesses spread over many addresses are held only by the
# per-account ceiling (5 times higher), which someone with many addresses can still reach to
# lock an account out for up to 15 minutes; below it, a guesser gets 10 tries per address.
LOGIN_ACCOUNT = Rule("login-account", 10, 15 * 60)  # subject: login_subject(email, ip)
LOGIN_EMAIL = Rule("login-email", 50, 15 * 60)
LOGIN_IP = Rule("login-ip", 100, 15 * 60)
# Second-factor codes, guessed by someone who has the password. A guess at a 6-digit TOTP
# code wins with a chance of 3 in 1,000,000: three codes are accepted at a time (the step
# before, the current one and the next, for clock drift). 5 failures per 5 minutes alone allow
# 1,440 guesses a day, about one chance in 230 a day. So the account also has a day's
# allowance, 10 failures per 24 hours (a fixed window: up to twice that astride its edge, 10 a
# day on average): one chance in about 33,000 a day (10 x 3 / 1,000,000), about 1% over a
# year of guessing every day, and the member is mailed each day it fills
# (hub.identity.accounts.second_factor_failed), since whoever guesses knows the password. The
# allowance is per account and password (second_factor_subject): a password reset, which only
# the mailbox can make, gives the member a fresh one at once instead of leaving them locked
# out for the rest of the day. Recovery codes (80 bits) are typed in the same step and
# counted alike.
SECOND_FACTOR_ACCOUNT = Rule("2fa-account", 5, 5 * 60)  # subject: the account id
SECOND_FACTOR_DAY = Rule("2fa-account-day", 10, 24 * 60 * 60)  # subject: second_factor_subject
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
# Email verification and the reset link's new password (hub/web/accounts.py): their tokens are
# 256-bit, so these only bound the work a client can make the hub do (each reset hashes a password).
VERIFY_IP = Rule("verify-ip", 30, 60 * 60)
RESET_CONFIRM_IP = Rule("reset-confirm-ip", 20, 60 * 60)
# The OAuth endpoints clients POST to (token, introspection, revocation; hub/api/oauth.py):
# every request, per claimed client id (known or not) and per client IP. Per client: a back end
# that asks for a token per call instead of reusing it, or a stolen secret being tried.
OAUTH_CLIENT = Rule("oauth-client", 600, 60)
OAUTH_IP = Rule("oauth-ip", 3000, 60)
# Enrolment (POST /v1/members), per API client: a leaked partner token cannot mint members
# (each one a row, a ledger account and maybe a welcome bonus) faster than this.
ENROL_CLIENT = Rule("enrol-client", 1200, 60)
# While Redis is unreachable the limiter counts in memory and says so at most this often (s).
OUTAGE_LOG_PERIOD = 60


def ip_subject(address: str | None) -> str:
    """Whom a per-address rule counts: an IPv4 address, or an IPv6 address's /64 network (one
    customer's allocation: each of its 2^64 addresses is free to take, so counting addresses
    would give one client unlimited "IPs"). IPv4-mapped IPv6 (::ffff:a.b.c.d, from a
    dual-stack socket) counts as the IPv4 address."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))  # also drops a %scope
    return str(ip)


def login_subject(email: str, ip: str) -> str:
    """Whom LOGIN_ACCOUNT counts: one account's failures from one client IP."""
    return f"{email}|{ip}"


def second_factor_subject(account_id, password_changed_at) -> str:
    """Whom SECOND_FACTOR_DAY counts: one account's failed codes while its password stays."""
    return f"{account_id}|{password_changed_at.isoformat()}"


# Every rule above, by name: the ones HUB_RATE_LIMITS may override (settings.rate_limits).
RULES: dict[str, Rule] = {r.name: r for r in list(globals().values()) if isinstance(r, Rule)}


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

    def incr(self, key: str, expires_at: float, now: float) -> int:
        """Count one, atomically: the new count."""
        with self._lock:
            if len(self._counts) > 10_000:  # forget windows that are over
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, _ = self._counts.get(key, (0, expires_at))
            self._counts[key] = (count + 1, expires_at)
            return count + 1

    def decr(self, key: str, expires_at: float, now: float) -> None:
        with self._lock:
            count, _ = self._counts.get(key, (0, expires_at))
            if count > 0:
                self._counts[key] = (count - 1, expires_at)


class RedisCounters:
    """Counters in Redis, shared by every API process."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def incr(self, key: str, expires_at: float, now: float) -> int:
        """Count one, atomically (INCR): the new count."""
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            # Redis keeps real time: the window's length (not the clock's end) sets the expiry.
            pipe.expire(key, max(1, int(expires_at - now) + 1))
            count, _ = pipe.execute()
        return int(count)

    def decr(self, key: str, expires_at: float, now: float) -> None:
        with self.redis.pipeline() as pipe:
            pipe.decr(key)
            pipe.expire(key, max(1, int(expires_at - now) + 1))  # never a key without expiry
            pipe.execute()


class Attempt:
    """The counts one request added (from `Limiter.attempt`)."""

    def __init__(self, limiter: Limiter, counted: list[tuple[Rule, str, float, object]], counts: dict[str, int]):
        self._limiter = limiter
        self._counted = counted
        self._counts = counts  # rule name -> the count this request made (where it was counted)

    def filled(self, rule: Rule) -> bool:
        """Whether this request's count reached the rule's limit (the next one is refused):
        true for one request per window and subject, so a notice sent on it goes out once.
        False after `succeeded()`. While Redis is down, counted in this process (so a notice
        may go out once per process)."""
        return bool(self._counted) and self._counts.get(rule.name) == self._limiter.rule(rule).limit

    def succeeded(self) -> None:
        """Take the counts back: for rules that count failures only (a right password or
        code). Idempotent."""
        counted, self._counted = self._counted, []
        self._limiter._uncount(counted)


class Limiter:
    def __init__(self, counters, clock: Callable[[], float] = time.time,
                 overrides: dict[str, tuple[int, int]] | None = None):
        self.counters = counters
        self.fallback = MemoryCounters()  # while `counters` (Redis) is unreachable
        self.clock = clock
        self._lock = threading.Lock()
        self._outage_logged_at = float("-inf")
        unknown = set(overrides or ()) - set(RULES)
        if unknown:
            raise ValueError(f"HUB_RATE_LIMITS names no such rule: {', '.join(sorted(unknown))}")
        # The operator's rules (HUB_RATE_LIMITS), by name: they replace the module's.
        self.overrides = {name: Rule(name, *value) for name, value in (overrides or {}).items()}

    def rule(self, rule: Rule) -> Rule:
        """The rule in force: the operator's override of `rule`, or `rule` itself."""
        return self.overrides.get(rule.name, rule)

    def _key(self, rule: Rule, subject: str, now: float) -> str:
        # Hashed: emails and addresses are not kept in the counters' store.
        digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
        return f"hub:rl:{rule.name}:{digest}:{int(now // rule.window)}"

    def attempt(self, rule: Rule, subject: str, *also: tuple[Rule, str]) -> Attempt:
        """Count one request against the subject (and each further (rule, subject) pair), then
        raise Limited if that made it more than a rule's limit in its window; a refused request
        counts against none of them. Rules that count failures only call `succeeded()` on the
        answer when the request turned out right."""
        now = self.clock()
        counted: list[tuple[Rule, str, float, object]] = []
        counts: dict[str, int] = {}
        for each_rule, each_subject in ((rule, subject), *also):
            each_rule = self.rule(each_rule)
            window_end = (int(now // each_rule.window) + 1) * each_rule.window
            key = self._key(each_rule, each_subject, now)
            store = self.counters
            try:
                count = store.incr(key, window_end, now)
            except redis.RedisError as exc:
                # Redis is down: count in this process instead, so brute-force protection
                # degrades to per-process limits rather than vanishing (and no member is
                # locked out by the outage).
                self._outage(exc, now)
                store = self.fallback
                count = store.incr(key, window_end, now)
            counted.append((each_rule, key, window_end, store))
            counts[each_rule.name] = count
            if count > each_rule.limit:
                self._uncount(counted)
                raise Limited(each_rule, max(1, int(window_end - now)))
        return Attempt(self, counted, counts)

    def _uncount(self, counted: list[tuple[Rule, str, float, object]]) -> None:
        now = self.clock()
        for rule, key, window_end, store in counted:
            try:
                store.decr(key, window_end, now)  # where it was counted
            except redis.RedisError as exc:
                self._outage(exc, now)

    def _outage(self, exc: redis.RedisError, now: float) -> None:
        """Log a Redis outage once per OUTAGE_LOG_PERIOD, not once per request."""
        with self._lock:
            if now - self._outage_logged_at < OUTAGE_LOG_PERIOD:
                return
            self._outage_logged_at = now
        log.error("rate limit store unavailable (%s): counting in this process's memory meanwhile",
                  type(exc).__name__)


def limiter_for(broker_url: str, overrides: dict[str, tuple[int, int]] | None = None) -> Limiter:
    """Redis when the broker is Redis, else this process's memory."""
    if broker_url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1)
        return Limiter(RedisCounters(client), overrides=overrides)
    return Limiter(MemoryCounters(), overrides=overrides)
