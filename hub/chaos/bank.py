"""The bank test: a deployment of real processes on a private PostgreSQL and Redis, concurrent
clients, a nemesis, then the checks (docs/chaos.md)."""
from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from hub.chaos import checker
from hub.chaos.nemesis import Nemesis
from hub.chaos.procs import HubProcesses, PostgresServer, RedisServer, wait_for
from hub.chaos.workload import PROVIDERS, Client, Faults, Op, Traffic
from hub.db import Database

MEMBERS_PER_CLIENT = 3
SETTLE_TIMEOUT = 240.0


@dataclass
class Deployment:
    pg: PostgresServer
    redis: RedisServer
    hub: HubProcesses
    seed: dict  # the partner's client, programs and members (hub.chaos.seed)


@contextlib.contextmanager
def deployment(apis: int = 2, workers: int = 2, members: int = 60, workdir: Path | None = None):
    """A private PostgreSQL and Redis, the sandbox, `apis` API processes, `workers` Celery
    workers and the dispatcher, with the bank test's coalition seeded; torn down afterwards."""
    own = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="hub-chaos-"))
    pg, redis = PostgresServer(), RedisServer(workdir)
    hub = HubProcesses(pg.url, secrets.token_urlsafe(32), redis.url, workdir)
    # A provider's breaker stays open 30 s (RelayPolicy.breaker_reset) and each "circuit open"
    # retry spends an attempt: a budget of 12 would send orders to review after a few hang windows.
    hub.env["HUB_RELAY_MAX_ATTEMPTS"] = "60"
    try:
        pg.init()
        redis.start()
        hub.start_sandbox()
        done = subprocess.run([sys.executable, "-m", "hub.chaos.seed", str(members)], env=hub.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode:
            raise RuntimeError(f"seeding failed: {done.stdout}{done.stderr}")
        seeded = json.loads(done.stdout.strip().splitlines()[-1])
        issuer = None
        for i in range(apis):
            issuer = issuer or hub.start_api(f"api{i}")
            if i:
                hub.start_api(f"api{i}", issuer)
        for i in range(workers):
            hub.start_worker(f"worker{i}")
        hub.start_dispatcher()
        for name in hub.apis:
            hub.wait_healthy(name)
        yield Deployment(pg, redis, hub, seeded)
    finally:
        hub.stop()
        redis.stop()
        pg.destroy()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Summary:
    seed: int
    duration: float
    clients: int
    attempted: Counter = field(default_factory=Counter)
    acknowledged: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    indeterminate: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    restarted: Counter = field(default_factory=Counter)
    served: dict[str, int] = field(default_factory=dict)
    settle_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    nemesis_log: list[str] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list, repr=False)  # every operation, for a closer look

    def as_dict(self) -> dict:
        return {"seed": self.seed, "duration": self.duration, "clients": self.clients,
                "ops_attempted": sum(self.attempted.values()), "acknowledged": sum(self.acknowledged.values()),
                "refused": sum(self.refused.values()), "indeterminate": sum(self.indeterminate.values()),
                "by_kind": {k: {"attempted": self.attempted[k], "acknowledged": self.acknowledged[k],
                                "refused": self.refused[k], "indeterminate": self.indeterminate[k]}
                            for k in sorted(self.attempted)},
                "faults_injected": sum(self.faults.values()), "faults": dict(self.faults),
                "restarted_after_exit": dict(self.restarted), "served_by_api": self.served,
                "settle_seconds": round(self.settle_seconds, 1),
                "violations": len(self.violations), "violation_list": self.violations,
                "nemesis_log": self.nemesis_log}


def run(d: Deployment, duration: float, seed: int = 0, clients: int = 4, nemesis: bool = True) -> Summary:
    """Clients (and the nemesis) for `duration` seconds; then every process healthy again, the
    orders and the outbox settled, and the checks."""
    hub = d.hub
    bases = [hub.apis[name] for name in sorted(hub.apis)]
    token = _token(bases[0], d.seed["client_id"], d.seed["client_secret"])
    traffic = Traffic(bases, {"Authorization": f"Bearer {token}"})
    rewards = {provider: _reward(traffic, provider) for provider in PROVIDERS}
    faults, stop = Faults(), threading.Event()
    members = d.seed["members"]
    per = max(1, len(members) // clients)
    partners = [Client(n, traffic, d.seed["programs"], members[n * per:(n + 1) * per] or members, rewards, faults,
                      stop, seed * 1000 + n) for n in range(clients)]
    chaos = Nemesis(hub, d.pg, d.redis, faults, stop, seed) if nemesis else None
    for thread in [*partners, *([chaos] if chaos else [])]:
        thread.start()
    time.sleep(duration)
    stop.set()
    for thread in [*partners, *([chaos] if chaos else [])]:
        thread.join(timeout=120)
    summary = Summary(seed=seed, duration=duration, clients=clients)
    if chaos:
        if chaos.error:
            raise RuntimeError(f"the nemesis failed: {chaos.error!r}") from chaos.error
        summary.faults, summary.restarted, summary.nemesis_log = chaos.injected, chaos.restarted, chaos.log
    summary.ops = ops = [op for client in partners for op in client.ops]
    for op in ops:
        summary.attempted[op.kind] += 1
        {"acked": summary.acknowledged, "refused": summary.refused,
         "indeterminate": summary.indeterminate}[op.status][op.kind] += 1
    summary.served = {name: traffic.served[base] for name, base in sorted(hub.apis.items())}
    traffic.close()
    db = Database(d.pg.url, pool_size=2)
    try:
        started = time.monotonic()
        summary.violations = _settle(db, hub)
        summary.settle_seconds = time.monotonic() - started
        with db.read() as session:
            summary.violations += checker.check(session, ops, {p: hub.orders(p) for p in PROVIDERS})
    finally:
        db.dispose()
    return summary


def _settle(db: Database, hub: HubProcesses) -> list[str]:
    """Wait, with every process up, until no order is in flight and the outbox is drained."""
    def quiet() -> bool:
        hub.revive()
        with db.read() as session:
            return checker.unsettled(session) == 0
    try:
        wait_for(quiet, SETTLE_TIMEOUT, "orders and the outbox to settle", interval=0.5)
    except AssertionError as exc:
        return [str(exc)]
    return []


def _token(base: str, client_id: str, secret: str) -> str:
    response = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(client_id, secret), timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def _reward(traffic: Traffic, provider: str) -> tuple[str, list[str]]:
    """A gift card of this provider and the face values ($1 to $3 when it has a range) to ask for."""
    response = traffic.call("GET", f"/v1/rewards?provider={provider}&kind=gift_card&limit=200")
    if response is None or response.status_code != 200:
        raise RuntimeError(f"no catalog for {provider}: {response and response.text}")
    for reward in response.json()["items"]:
        if reward.get("range") and Decimal(reward["range"]["min"]) <= 1 and Decimal(reward["range"]["max"]) >= 3:
            return reward["code"], ["1.00", "2.00", "3.00"]
    reward = response.json()["items"][0]
    return reward["code"], reward["denominations"][:1]


def print_summary(console, summary: Summary) -> None:
    """The summary as a table: operations by kind and outcome, faults, violations."""
    from rich.table import Table

    data = summary.as_dict()
    ops = Table(title=f"bank test: {summary.duration:.0f} s, {summary.clients} clients, seed {summary.seed}")
    for column in ("operation", "attempted", "acknowledged", "refused", "indeterminate"):
        ops.add_column(column, justify="left" if column == "operation" else "right")
    for kind, counts in data["by_kind"].items():
        ops.add_row(kind, *(str(counts[c]) for c in ("attempted", "acknowledged", "refused", "indeterminate")))
    ops.add_row("all", *(str(data[c]) for c in ("ops_attempted", "acknowledged", "refused", "indeterminate")),
                style="bold")
    console.print(ops)
    faults = ", ".join(f"{name} {n}" for name, n in sorted(summary.faults.items())) or "none"
    console.print(f"faults injected: {data['faults_injected']} ({faults})")
    if summary.restarted:
        console.print(f"processes that exited on their own and were restarted: {dict(summary.restarted)}")
    console.print(f"requests served per API process: {summary.served}; settled in {data['settle_seconds']} s")
    for violation in summary.violations:
        console.print(f"[red]violation[/] {violation}", soft_wrap=True)
    console.print(f"violations: {len(summary.violations)}", style="green" if not summary.violations else "red")
