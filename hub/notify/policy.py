"""How the hub's relays (the reward relay, hub/rewards/relay.py, and the conversion saga,
hub/exchange/saga.py) pace their calls out: leases, backoff, attempts and breakers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RelayPolicy:
    # How long a claim keeps other deliveries of a message from calling out (HUB_RELAY_LEASE,
    # 60 s by default; 120 s here when no settings are given). It must outlast what runs under
    # it without a renewal, counting each HTTP request at its connect + read timeouts:
    # - the conversion saga renews it before each partner call once a tenth of it has passed
    #   (hub/exchange/saga.py), so nine tenths of it must outlast one connector call: LCP's
    #   longest is status() with its retry, three requests of 3.05 + 10 s (~39 s). Without the
    #   renewal a lookup, then a late success's reversal (two more requests) took ~65 s;
    # - the reward relay does not renew: a lookup answered NOT_FOUND plus the order, two
    #   requests of 3.05 + 15 s (~36 s), and the wait for a thread of its pool.
    # A read timeout bounds each read, not a whole answer, so a partner trickling bytes can
    # still overrun the lease. The saga stays safe then: the claim that takes over an expired
    # lease marks the leg maybe sent, and the late attempt's outcome is fenced. In the relay
    # the claim that takes over an expired lease marks the order maybe placed too, so no
    # attempt voids it when giving up while the overrun one may still be placing it, and the
    # references make a repeated order apply once; the late outcome is not fenced.
    lease: timedelta = timedelta(seconds=120)
    backoff_base: float = 2.0                  # seconds; doubles per attempt, full jitter
    backoff_cap: float = 600.0
    max_attempts: int = 12
    breaker_failures: int = 5                  # consecutive unhealthy answers that open a breaker
    breaker_reset: float = 30.0                # seconds before a half-open trial call

    @classmethod
    def from_settings(cls, settings) -> "RelayPolicy":
        return cls(lease=timedelta(seconds=settings.relay_lease), backoff_base=settings.relay_backoff_base,
                   backoff_cap=settings.relay_backoff_cap, max_attempts=settings.relay_max_attempts)
