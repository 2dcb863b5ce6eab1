"""What the sandbox fakes share: magic tags, the per-reference order book, and the WSGI frame.

A fake answers in its provider's shapes (partners/<name>/sandbox.py); this module decides, for
each attempt at a reference, what happens to the order, so every fake misbehaves the same way:

    tag in the recipient e-mail's local part (jo+pending@example.com)
    ok / none   placed and delivered at once
    pending     placed, pending; delivered on the first look at least `pending_delay` s later
    pendfail    placed, pending; then failed
    fail        refused (4xx) every time, never placed
    5xx         first attempt: 500 and NOT placed; the next attempt places it
    5xxplaced   first attempt: placed, then 500; later attempts and lookups see the order
    timeout     first attempt: placed, then the answer waits `timeout_sleep` s (longer than
                the client's read timeout); later attempts and lookups see the order
    ratelimit   first attempt: 429 with Retry-After: 1, NOT placed; the next one places it

Like the real providers, a reference is placed at most once: a repeat gets the original order.
"""
from __future__ import annotations

import copy
import enum
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from hub import money
from partners._report import write as write_report

TAGS = ("ok", "pending", "pendfail", "fail", "5xx", "5xxplaced", "timeout", "ratelimit")


def magic(email: str | None) -> str:
    local = (email or "").split("@", 1)[0]
    for tag in local.split("+")[1:]:
        if tag.lower() in TAGS:
            return tag.lower()
    return "ok"


class Verdict(enum.Enum):
    PLACED = "placed"                # a new order
    DUPLICATE = "duplicate"          # the reference was placed before: answer with that order
    REFUSED = "refused"              # +fail: a 4xx, nothing placed
    RATE_LIMITED = "rate_limited"    # +ratelimit, first attempt: 429, nothing placed
    LOST = "lost"                    # +5xx, first attempt: 500, nothing placed
    PLACED_LOST = "placed_lost"      # +5xxplaced, first attempt: placed, then 500
    PLACED_SLOW = "placed_slow"      # +timeout, first attempt: placed, answered too late


@dataclass
class Order:
    reference: str
    magic: str
    attempts: int = 0
    placements: int = 0
    status: str = "new"              # new | refused | pending | fulfilled | failed
    placed_at: float = 0.0
    announced: bool = False          # a settlement webhook went out
    fields: dict[str, Any] = field(default_factory=dict)  # what the fake renders; "id" is the provider's order id


class Book:
    """Orders by reference, thread-safe. `on_settle`, when set, turns pending orders into timed
    settlements announced by webhook (otherwise they settle when someone looks)."""

    def __init__(self, pending_delay: float):
        self.pending_delay = pending_delay
        self.on_settle: Callable[[Order], None] | None = None
        self._lock = threading.Lock()
        self._orders: dict[str, Order] = {}
        self._timers: list[threading.Timer] = []

    def submit(self, reference: str, tag: str, place: Callable[[Order], None]) -> tuple[Verdict, Order]:
        with self._lock:
            order = self._orders.setdefault(reference, Order(reference, tag))
            order.attempts += 1
            first = order.attempts == 1
            if order.placements:
                self._settle_if_due(order)
                return Verdict.DUPLICATE, copy.deepcopy(order)
            if order.magic == "fail":
                order.status = "refused"
                return Verdict.REFUSED, copy.deepcopy(order)
            if first and order.magic in ("ratelimit", "5xx"):
                verdict = Verdict.RATE_LIMITED if order.magic == "ratelimit" else Verdict.LOST
                return verdict, copy.deepcopy(order)
            order.placements += 1
            order.placed_at = time.monotonic()
            order.status = "pending" if order.magic in ("pending", "pendfail") else "fulfilled"
            place(order)
            if order.status == "pending" and self.on_settle is not None:
                timer = threading.Timer(self.pending_delay, self._settle_now, [reference])
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            verdict = {"5xxplaced": Verdict.PLACED_LOST, "timeout": Verdict.PLACED_SLOW}.get(order.magic)
            return (verdict if first and verdict else Verdict.PLACED), copy.deepcopy(order)

    def find(self, reference: str) -> Order | None:
        return self.find_where(lambda order: order.reference == reference)

    def find_where(self, match: Callable[[Order], bool]) -> Order | None:
        """A placed order, settled if its time has come (a look is what settles it)."""
        with self._lock:
            for order in self._orders.values():
                if order.placements and match(order):
                    self._settle_if_due(order)
                    return copy.deepcopy(order)
        return None

    def placed(self) -> list[Order]:
        with self._lock:
            for order in self._orders.values():
                self._settle_if_due(order)
            return [copy.deepcopy(o) for o in self._orders.values() if o.placements]

    def summary(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                ref: {"placements": o.placements, "attempts": o.attempts, "status": o.status,
                      "magic": o.magic, "order_id": o.fields.get("id")}
                for ref, o in self._orders.items()
            }

    def reset(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._orders.clear()

    def _settle_if_due(self, order: Order) -> None:
        if order.status == "pending" and time.monotonic() - order.placed_at >= self.pending_delay:
            order.status = "failed" if order.magic == "pendfail" else "fulfilled"

    def _settle_now(self, reference: str) -> None:
        with self._lock:
            order = self._orders.get(reference)
            if order is None or order.announced:
                return
            if order.status == "pending":
                order.status = "failed" if order.magic == "pendfail" else "fulfilled"
            order.announced = True
            snapshot, notify = copy.deepcopy(order), self.on_settle
        if notify is not None:
            notify(snapshot)


class FakeApp:
    """One provider's fake as a WSGI app, mounted by hub.sandbox at /<name>. Subclasses list
    their routes in `rules()` and implement on_<endpoint>(request, **args)."""

    name = ""

    def __init__(self, *, pending_delay: float = 1.0, timeout_sleep: float = 3.0, **_options: Any):
        self.book = Book(pending_delay)
        self.timeout_sleep = timeout_sleep
        self.url_map = Map([
            *self.rules(),
            Rule("/_sandbox/orders", endpoint="sandbox_orders", methods=["GET"]),
            Rule("/_sandbox/reset", endpoint="sandbox_reset", methods=["POST"]),
            Rule("/reports/orders.csv", endpoint="report", methods=["GET"]),
        ])

    def rules(self) -> list[Rule]:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:
        """An error in the provider's own shape."""
        return json_response({"error": message}, status)

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            response = getattr(self, f"on_{endpoint}")(request, **args)
        except NotFound:
            response = self.error(404, f"no route {request.method} {request.path}")
        except MethodNotAllowed:
            response = self.error(405, f"{request.method} not allowed on {request.path}")
        return response(environ, start_response)

    def submit(self, reference: str, email: str | None, place: Callable[[Order], None]) -> tuple[Verdict, Order]:
        verdict, order = self.book.submit(reference, magic(email), place)
        if verdict is Verdict.PLACED_SLOW:
            time.sleep(self.timeout_sleep)  # the client has given up; the order stands
        return verdict, order

    def misbehaviour(self, verdict: Verdict) -> Response | None:
        """The answers every fake gives alike: 429 and the two kinds of 500."""
        if verdict is Verdict.RATE_LIMITED:
            response = self.error(429, "too many requests")
            response.headers["Retry-After"] = "1"
            return response
        if verdict in (Verdict.LOST, Verdict.PLACED_LOST):
            return self.error(500, "internal server error")
        return None

    # The provider's own orders report (partners/<name>/report.py reads it): its header, and
    # one order's line in it.
    report_header: list[str] = []

    def report_row(self, order: Order) -> list[str]:
        raise NotImplementedError

    def on_report(self, request: Request) -> Response:
        """Every order placed so far, as the provider's report would list it."""
        rows = [self.report_row(order) for order in self.book.placed()]
        return Response(write_report(self.report_header, rows), mimetype="text/csv")

    def on_sandbox_orders(self, request: Request) -> Response:
        return json_response(self.book.summary())

    def on_sandbox_reset(self, request: Request) -> Response:
        self.book.reset()
        return json_response({"reset": True})


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def json_body(request: Request) -> dict[str, Any] | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


def major(amount: Any, currency: str) -> str:
    """A fake's stored amount (a JSON number or string) as a report writes it: 10.00."""
    return format(Decimal(str(amount)).quantize(Decimal(1).scaleb(-money.exponent(currency))), "f")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token(reference: str, salt: str, length: int, alphabet: str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789") -> str:
    """A realistic-looking code derived from the reference: stable across runs and retries."""
    digest = hashlib.sha256(f"{salt}:{reference}".encode()).digest()
    while len(digest) < length:
        digest += hashlib.sha256(digest).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])
