"""The one interface every external reward provider's connector implements, and the registry.

Connectors live in partners/<name>/ and register themselves; hub/ never imports one by name.
A connector turns the provider's HTTP API into these plain values. It never raises for an
HTTP outcome: every answer (or the lack of one) maps to an `Outcome`, because the relay's
safety depends on telling "surely not placed" (void the points) from "maybe placed" (ask the
provider before anything else) and "placed" (spend the points).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Iterator, Mapping, Protocol


class Kind(str, enum.Enum):
    GIFT_CARD = "gift_card"
    DONATION = "donation"


class Status(str, enum.Enum):
    FULFILLED = "fulfilled"  # placed and delivered: `delivery` holds the card or the receipt
    PENDING = "pending"      # placed, the provider is still working on it: ask again later
    RETRY = "retry"          # surely not placed, but may succeed later (429, refused connection)
    UNKNOWN = "unknown"      # may or may not be placed (timeout, 5xx): look it up before voiding
    FAILED = "failed"        # definitively not placed (4xx refusal, provider says failed)
    NOT_FOUND = "not_found"  # lookup only: the provider has no order with this reference


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""


@dataclass(frozen=True)
class OrderRequest:
    reference: str         # our idempotency reference, derived from the redemption id
    product: str           # the provider's product id: a Tango utid, a Tremendous product, a project id
    amount_minor: int      # face value in minor units of `currency`
    currency: str          # ISO 4217
    recipient: Recipient


@dataclass(frozen=True)
class Outcome:
    status: Status
    provider_order_id: str | None = None
    # For a gift card: {"code": ..., "pin": ..., "url": ...} (secrets: the caller encrypts);
    # for a donation: {"receipt_id": ..., "amount": ..., "currency": ..., "charity": ...}.
    delivery: Mapping[str, str] | None = None
    detail: str = ""
    retry_after: float | None = None  # seconds, when the provider said (429 Retry-After)


@dataclass(frozen=True)
class CatalogItem:
    product: str             # the provider's product id (what OrderRequest.product names)
    name: str
    kind: Kind
    currency: str
    # Fixed denominations in minor units, or an inclusive range for open-value products.
    denominations: tuple[int, ...] = ()
    min_minor: int | None = None
    max_minor: int | None = None
    description: str = ""


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str            # the provider's id of this event: a replay of a seen id is ignored
    reference: str | None    # our OrderRequest.reference, when the event is about an order
    # What the event proves: FULFILLED or FAILED settle the order; PENDING only says "it moved,
    # look it up" (events seldom carry the card itself); None: not about an order.
    outcome: Outcome | None
    occurred_at: datetime | None = None
    raw: Mapping = field(default_factory=dict)


class WebhookRejected(Exception):
    """A webhook whose signature, timestamp or shape does not verify."""


class CatalogUnavailable(Exception):
    """catalog() could not get an answer: not the same as a provider with no products."""


class Provider(Protocol):
    name: str                # registry key, e.g. "tango"
    kind: Kind

    def catalog(self) -> list[CatalogItem]: ...

    def place_order(self, order: OrderRequest) -> Outcome: ...

    def lookup(self, reference: str) -> Outcome: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent: ...


@dataclass(frozen=True)
class ReportLine:
    """One order as a provider's own report (CSV) states it, in the hub's terms."""

    line: int                     # the line of the file it came from (the header is line 1)
    reference: str                # our OrderRequest.reference; "" for an order placed elsewhere
    provider_order_id: str
    occurred_at: datetime         # when the provider took the order (UTC)
    amount_minor: int
    currency: str
    status: Status                # FULFILLED, PENDING or FAILED (refused, cancelled, refunded)


class ReportLayoutUnknown(Exception):
    """The file's header is not this provider's report layout."""

    def __init__(self, missing: list[str]):
        super().__init__(f"missing columns: {', '.join(missing)}")
        self.missing = missing


class ReportMalformed(Exception):
    """A cell of the report cannot be read: names the line and the column."""

    def __init__(self, line: int, column: str, problem: str):
        super().__init__(f'line {line}, column "{column}": {problem}')
        self.line, self.column = line, column


class ReportParser(Protocol):
    """A provider's report layout: the lines of its CSV (header first) to ReportLines, raising
    ReportLayoutUnknown or ReportMalformed. Lazy: the caller decides when to stop."""

    def __call__(self, lines: Iterable[str]) -> Iterator[ReportLine]: ...


# name -> factory(config) -> Provider. Config is a plain mapping (base URL, credentials, timeouts).
_REGISTRY: dict[str, Callable[[Mapping[str, str]], Provider]] = {}


def register(name: str, factory: Callable[[Mapping[str, str]], Provider]) -> None:
    _REGISTRY[name] = factory


def factories() -> dict[str, Callable[[Mapping[str, str]], Provider]]:
    _load_plugins()
    return dict(_REGISTRY)


# name -> the parser of that provider's report. Apart from the connectors: reading a file
# needs neither configuration nor a connection.
_REPORTS: dict[str, ReportParser] = {}


def register_report(name: str, parser: ReportParser) -> None:
    _REPORTS[name] = parser


def report_parser(name: str) -> ReportParser | None:
    _load_plugins()
    return _REPORTS.get(name)


def report_parsers() -> dict[str, ReportParser]:
    _load_plugins()
    return dict(_REPORTS)


def _load_plugins() -> None:
    """Import every partners.<name> package once, so that each registers its connector."""
    import importlib
    import pkgutil

    import partners

    for info in pkgutil.iter_modules(partners.__path__):
        if info.ispkg:
            importlib.import_module(f"partners.{info.name}")
