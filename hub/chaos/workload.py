"""The bank test's clients: partner back ends that earn, reverse, convert and redeem over HTTP,
each request with an Idempotency-Key, retried with the same key on no answer, a 5xx, a 429 or
a concurrent duplicate (409 idempotency-key-in-use), as a real partner would.

Every operation ends as one of:
  acked          a 2xx: the hub took it; it must be in the ledger exactly once
  refused        a definitive 4xx: nothing may have moved
  indeterminate  no definitive answer before its deadline: it may have happened, at most once
"""
from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

RETRYABLE_CONFLICTS = ("idempotency-key-in-use",)
OP_DEADLINE = 30.0  # seconds a client keeps retrying one operation
# Some partners give up early (a till that times out): their operations may end indeterminate.
IMPATIENT, IMPATIENT_DEADLINE = 0.1, 1.0
# Providers of gift cards the clients redeem at (hub.sandbox's fakes).
PROVIDERS = ("tango", "tremendous")


@dataclass
class Op:
    kind: str  # purchase | return | convert | redeem
    key: str
    member: str
    body: dict
    status: str = "indeterminate"
    http_status: int | None = None
    result: dict | None = None


class Faults:
    """What the nemesis tells the clients: the magic tag the next redemptions carry
    (partners/_fake.py: the sandbox providers fail, hang or answer late for it)."""

    def __init__(self):
        self.provider_tag = "ok"


class Traffic:
    """Requests spread round-robin over the API processes; answers counted per process."""

    def __init__(self, bases: list[str], headers: dict[str, str]):
        self.bases = bases
        self.headers = headers
        self.served: Counter[str] = Counter()
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._clients = {base: httpx.Client(base_url=base, timeout=httpx.Timeout(10, connect=2)) for base in bases}

    def send(self, method: str, path: str, body: dict | None = None, key: str | None = None) -> httpx.Response | None:
        with self._lock:
            base = self.bases[next(self._turn) % len(self.bases)]
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        try:
            response = self._clients[base].request(method, path, json=body, headers=headers)
        except httpx.TransportError:
            return None
        with self._lock:
            self.served[base] += 1
        return response

    def call(self, method: str, path: str, body: dict | None = None, key: str | None = None,
             deadline: float | None = None) -> httpx.Response | None:
        """The first definitive answer (2xx, or a 4xx other than a retryable one), or None."""
        deadline = deadline or time.monotonic() + OP_DEADLINE
        pause = 0.1
        while True:
            response = self.send(method, path, body, key)
            if response is not None and _definitive(response):
                return response
            if time.monotonic() + pause > deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _definitive(response: httpx.Response) -> bool:
    if response.status_code >= 500 or response.status_code == 429:
        return False
    if response.status_code == 409:
        try:
            return response.json().get("slug") not in RETRYABLE_CONFLICTS
        except ValueError:
            return True
    return True


class Client(threading.Thread):
    """One partner back end with its own members, until `stop` is set."""

    def __init__(self, n: int, traffic: Traffic, programs: list[str], members: list[str], rewards: dict,
                 faults: Faults, stop: threading.Event, seed: int):
        super().__init__(name=f"bank-client-{n}", daemon=True)
        self.traffic, self.programs, self.members, self.rewards = traffic, programs, members, rewards
        self.faults, self.stop = faults, stop
        self.rng = random.Random(seed)
        self.ops: list[Op] = []
        self.purchases: list[Op] = []  # acked purchases not yet returned

    def run(self) -> None:
        actions = [self.purchase, self.return_, self.convert, self.redeem]
        while not self.stop.is_set():
            self.rng.choices(actions, weights=[4, 1, 2, 2])[0](self.rng.choice(self.members))

    def _do(self, kind: str, member: str, path: str, body: dict) -> Op:
        op = Op(kind, uuid.uuid4().hex, member, body)
        self.ops.append(op)
        patience = IMPATIENT_DEADLINE if self.rng.random() < IMPATIENT else OP_DEADLINE
        response = self.traffic.call("POST", path, body, op.key, deadline=time.monotonic() + patience)
        if response is not None:
            op.http_status = response.status_code
            op.status = "acked" if response.is_success else "refused"
            op.result = response.json() if response.content else None
        return op

    def purchase(self, member: str) -> None:
        body = {"program": self.rng.choice(self.programs), "member": {"member_id": member},
                "transaction_id": f"p-{uuid.uuid4().hex}", "amount": f"{self.rng.randint(10, 60)}.00",
                "currency": "USD", "occurred_at": _now()}
        op = self._do("purchase", member, "/v1/transactions", body)
        if op.status == "acked":
            self.purchases.append(op)

    def return_(self, member: str) -> None:
        if not self.purchases:
            return self.purchase(member)
        bought = self.purchases.pop(self.rng.randrange(len(self.purchases)))
        whole = int(bought.body["amount"].removesuffix(".00"))  # purchases are whole dollars
        amount = f"{whole if self.rng.random() < 0.5 else whole // 2}.00"
        body = {"purchase": {"program": bought.body["program"], "transaction_id": bought.body["transaction_id"]},
                "return_id": f"r-{uuid.uuid4().hex}", "amount": amount, "currency": "USD", "occurred_at": _now()}
        self._do("return", bought.member, "/v1/returns", body)

    def convert(self, member: str) -> None:
        source, target = self.rng.sample(self.programs, 2)
        quote = self.traffic.call("POST", "/v1/conversions/quotes", {
            "from": source, "to": target, "points": self.rng.randint(100, 3000), "member": {"member_id": member}})
        if quote is None or quote.status_code != 201:
            return  # a quote moves nothing: no operation attempted
        self._do("convert", member, "/v1/conversions", {"quote": quote.json()["quote"]})

    def redeem(self, member: str) -> None:
        provider = self.rng.choice(PROVIDERS)
        code, amounts = self.rewards[provider]
        tag = self.faults.provider_tag if self.rng.random() < 0.3 else "ok"
        body = {"reward": code, "program": self.programs[0], "member": {"member_id": member},
                "amount": self.rng.choice(amounts),
                "recipient": {"email": f"bank+{tag}@example.com", "name": "Bank test"}}
        self._do("redeem", member, "/v1/redemptions", body)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
