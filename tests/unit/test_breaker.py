"""The relays' circuit breaker per remote party (hub/notify/breaker.py)."""
from __future__ import annotations

from hub.notify import breaker as breakers


def test_opens_after_failures_and_recovers_through_a_trial(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(breakers.time, "monotonic", lambda: clock[0])
    breaker = breakers.Breaker(failures=2, reset=30)
    for _ in range(2):
        assert breaker.admit()
        breaker.failure()
    assert not breaker.admit()  # open
    clock[0] += 31
    assert breaker.admit()      # half-open: one trial
    assert not breaker.admit()  # the others wait for it
    breaker.failure()           # the trial failed: open again
    assert not breaker.admit()
    clock[0] += 31
    assert breaker.admit()      # a new trial after the reset (not stuck half-open)
    breaker.success()
    assert breaker.admit() and breaker.admit()  # closed


def test_an_abandoned_trial_frees_the_half_open_slot(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(breakers.time, "monotonic", lambda: clock[0])
    breaker = breakers.Breaker(failures=1, reset=10)
    breaker.admit()
    breaker.failure()
    clock[0] += 11
    assert breaker.admit()
    breaker.abandon()
    assert breaker.admit()
