"""A circuit breaker per remote party and process, shared by the relays that call out of the
hub: the reward relay (hub/rewards/relay.py) and the conversion saga (hub/exchange/saga.py)."""
from __future__ import annotations

import threading
import time


class Breaker:
    """One remote party's breaker (a reward provider, a hosted program's partner), per
    process: `failures` unhealthy answers in a row open it; after `reset` seconds one trial
    call may go (half-open); its success closes it, its failure opens it again.

    Not pybreaker's: its CircuitBreaker.call holds the breaker's lock for the whole guarded
    call (danielfm/pybreaker#3), so in a threads pool every call to one party waited for the
    one before. Here the lock guards only the bookkeeping; calls run concurrently."""

    def __init__(self, failures: int, reset: float):
        self.max_failures = failures
        self.reset = reset
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    def admit(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or time.monotonic() < self._opened_at + self.reset:
                return False
            self._trial = True  # half-open: this call is the trial; others wait for its answer
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.max_failures:
                self._opened_at = time.monotonic()
            self._trial = False

    def abandon(self) -> None:
        """The admitted call ended without an answer about the party: free the trial."""
        with self._lock:
            self._trial = False
