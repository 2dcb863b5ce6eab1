"""The bank test's nemesis: on a seeded random schedule, one fault at a time. It also plays the
process supervisor a deployment has (systemd, Kubernetes): a process that exits on its own
is started again, and counted."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

from hub.chaos.procs import HubProcesses, PostgresServer, RedisServer
from hub.chaos.workload import Faults

# Magic tags that make the sandbox providers refuse, hang past the relay's read timeout,
# answer 5xx (placed or not), rate-limit, or settle late (partners/_fake.py).
PROVIDER_TAGS = ("fail", "timeout", "5xx", "5xxplaced", "ratelimit", "pending", "pendfail")
FAULTS = ("kill_api", "kill_worker", "restart_redis", "crash_postgres", "provider_faults")


class Nemesis(threading.Thread):
    def __init__(self, hub: HubProcesses, pg: PostgresServer, redis: RedisServer, faults: Faults,
                 stop: threading.Event, seed: int, interval: tuple[float, float] = (2.0, 5.0)):
        super().__init__(name="bank-nemesis", daemon=True)
        self.hub, self.pg, self.redis, self.faults, self.stop = hub, pg, redis, faults, stop
        self.rng = random.Random(seed)
        self.interval = interval
        self.injected: Counter[str] = Counter()
        self.restarted: Counter[str] = Counter()  # processes that exited on their own
        self.log: list[str] = []
        self.error: BaseException | None = None
        self._calm_at = 0.0

    def run(self) -> None:
        start = time.monotonic()
        next_fault = start + self.rng.uniform(*self.interval)
        try:
            while not self.stop.wait(0.25):
                self.supervise()
                now = time.monotonic()
                if self._calm_at and now >= self._calm_at:
                    self.faults.provider_tag, self._calm_at = "ok", 0.0
                if now >= next_fault:
                    fault = self.rng.choice(FAULTS)
                    self.log.append(f"{now - start:6.1f}s {fault}")
                    getattr(self, fault)()
                    self.injected[fault] += 1
                    next_fault = time.monotonic() + self.rng.uniform(*self.interval)
        except BaseException as exc:  # reported by the runner: a nemesis that dies silently proves nothing
            self.error = exc
        finally:
            self.faults.provider_tag = "ok"

    def supervise(self) -> None:
        self.restarted.update(self.hub.revive())

    def kill_api(self) -> None:
        self._kill(self.rng.choice(sorted(self.hub.apis)))

    def kill_worker(self) -> None:
        names = [n for n in self.hub.procs if n.startswith("worker")] + ["dispatcher"]
        self._kill(self.rng.choice(names))

    def _kill(self, name: str) -> None:
        self.hub.kill(name)  # SIGKILL to its process group
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.hub.restart(name)

    def restart_redis(self) -> None:
        self.redis.stop()  # killed: its queues are lost
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.redis.start()

    def crash_postgres(self) -> None:
        self.pg.crash()  # pg_ctl stop -m immediate
        time.sleep(self.rng.uniform(1.0, 4.0))
        self.pg.start()

    def provider_faults(self) -> None:
        self.faults.provider_tag = self.rng.choice(PROVIDER_TAGS)
        self.log[-1] += f" ({self.faults.provider_tag})"
        self._calm_at = time.monotonic() + self.rng.uniform(2.0, 6.0)
