"""How the hub's relays (the reward relay, hub/rewards/relay.py, and the conversion saga,
hub/exchange/saga.py) pace their calls out: leases, backoff, attempts and breakers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RelayPolicy:
    lease: timedelta = timedelta(seconds=120)  # longer than any provider call with its timeouts
    backoff_base: float = 2.0                  # seconds; doubles per attempt, full jitter
    backoff_cap: float = 600.0
    max_attempts: int = 12
    breaker_failures: int = 5                  # consecutive unhealthy answers that open a breaker
    breaker_reset: float = 30.0                # seconds before a half-open trial call

    @classmethod
    def from_settings(cls, settings) -> "RelayPolicy":
        return cls(lease=timedelta(seconds=settings.relay_lease), backoff_base=settings.relay_backoff_base,
                   backoff_cap=settings.relay_backoff_cap, max_attempts=settings.relay_max_attempts)
