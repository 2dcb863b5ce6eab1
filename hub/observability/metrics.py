"""The hub's Prometheus metrics (docs/observability.md lists them).

Labels are bounded: an operation's name (never a raw path with ids in it), a status class, a
transfer code, a provider's or task's name, an error category. No member, partner or order id.

Several processes (gunicorn's workers, prefork children, a threads worker beside the API on one
host) each count in their own memory unless PROMETHEUS_MULTIPROC_DIR names a directory they
share: prometheus_client then keeps every value in a file there, and a scrape of any one
process adds them all up (its "multiprocess mode", chosen when prometheus_client is imported,
so the variable must be set when the process starts: `hub serve` and `hub worker` set it
themselves when they need it).

The outbox lag is not counted: it is read from the database when scraped (one indexed query
with a timeout).
"""
from __future__ import annotations

import hmac
import logging
import os
from datetime import datetime, timezone

from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import bindparam, event, func, select, text
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.notify.outbox import OutboxMessage

log = logging.getLogger(__name__)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTBOX_QUERY_TIMEOUT_MS = 1000

REQUESTS = Counter("hub_http_requests", "HTTP requests answered, by operation and status class.",
                   ["operation", "status"])
REQUEST_SECONDS = Histogram("hub_http_request_duration_seconds", "Time to answer an HTTP request, by operation.",
                            ["operation"], buckets=LATENCY)
TRANSFERS = Counter("hub_ledger_transfers", "Ledger transfers committed, by code and phase.", ["code", "phase"])
TRANSFER_POINTS = Counter("hub_ledger_transfer_points", "Points moved by committed ledger transfers.",
                          ["code", "phase"])
RELAY_OUTCOMES = Counter("hub_relay_outcomes", "Reward provider answers to the relay, by provider and outcome.",
                         ["provider", "outcome"])
RELAY_SECONDS = Histogram("hub_relay_call_duration_seconds", "Time of one relay attempt's provider calls.",
                          ["provider"], buckets=LATENCY)
WEBHOOK_ATTEMPTS = Counter("hub_webhook_attempts", "Webhook delivery attempts, by result.", ["result"])
WEBHOOK_FAILURES = Counter("hub_webhook_deliveries_failed", "Webhook deliveries given up (failed for good).")
TASKS = Counter("hub_tasks", "Celery tasks run, by task and outcome.", ["task", "outcome"])
TASK_SECONDS = Histogram("hub_task_duration_seconds", "Time to run a Celery task.", ["task"], buckets=LATENCY)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


# (operation, status) -> the two children to count in: labels() takes a lock and builds a key
# on every call, twice the cost of counting (the label values are bounded, so are these caches).
_request_children: dict[tuple[str, int], tuple] = {}


def observe_request(operation: str, status: int, seconds: float) -> None:
    children = _request_children.get((operation, status))
    if children is None:
        children = _request_children[(operation, status)] = (
            REQUESTS.labels(operation, status_class(status)), REQUEST_SECONDS.labels(operation))
    children[0].inc()
    children[1].observe(seconds)


# --- ledger transfers: counted when their transaction commits -----------------------------
# The ledger notes each transfer in its session's `info` (an append), and the session's
# commit counts them: a transaction rolled back (a refusal, a retried serialization failure)
# counts nothing. No query, no lock beyond the counters' own.
_PENDING_KEY = "hub.metrics.transfers"
_transfer_children: dict[tuple[str, str], tuple] = {}  # as _request_children below


def transfers_made(session: Session, rows) -> None:
    """Note ledger rows (dicts with "code", "phase" and "amount") inserted in this session."""
    made = session.info.setdefault(_PENDING_KEY, [])
    for row in rows:
        made.append((row["code"], row["phase"], row["amount"]))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    made = session.info.pop(_PENDING_KEY, None)
    for code, phase, amount in made or ():
        children = _transfer_children.get((code, phase))
        if children is None:
            children = _transfer_children[(code, phase)] = (TRANSFERS.labels(code, phase),
                                                            TRANSFER_POINTS.labels(code, phase))
        children[0].inc()
        children[1].inc(amount)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint within it
        session.info.pop(_PENDING_KEY, None)


# --- relay, webhooks, tasks ------------------------------------------------------------------

def relay_outcome(provider: str, outcome: str, seconds: float) -> None:
    RELAY_OUTCOMES.labels(provider, outcome).inc()
    RELAY_SECONDS.labels(provider).observe(seconds)


def webhook_attempt(status_code: int | None, error: str | None) -> None:
    """`error`: hub.notify.webhook_delivery's category of a failure to get an answer."""
    if status_code is not None:
        result = "success" if 200 <= status_code < 300 else status_class(status_code)
    else:
        result = (error or "unknown").split(":", 1)[0].replace(" ", "_")  # "refused: <why>" -> refused
    WEBHOOK_ATTEMPTS.labels(result).inc()


# --- exposition ---------------------------------------------------------------------------

class OutboxLag:
    """Per topic: how many outbox messages are due and unpublished, and how long the oldest
    has waited since it came due. Read at scrape time: one query on the outbox's due index
    (done_at, available_at), with a statement timeout on PostgreSQL. `hub_outbox_lag_up` says
    whether the query answered."""

    def __init__(self, db):
        self.db = db
        table = OutboxMessage.__table__
        self.query = (
            select(table.c.topic, func.count(), func.min(table.c.available_at))
            .where(table.c.done_at.is_(None), table.c.available_at <= bindparam("now"))
            .group_by(table.c.topic)
        )

    def collect(self):
        due = GaugeMetricFamily("hub_outbox_due_messages", "Outbox messages due and not yet published.",
                                labels=["topic"])
        age = GaugeMetricFamily("hub_outbox_oldest_due_age_seconds",
                                "Seconds since the oldest due outbox message came due.", labels=["topic"])
        up = GaugeMetricFamily("hub_outbox_lag_up", "1 if the outbox lag query answered, else 0.")
        try:
            now, rows = self._read()
        except Exception as exc:  # a scrape reports the failure, never raises it
            log.warning("outbox lag query failed: %s", type(exc).__name__)
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            for topic, count, oldest in rows:
                due.add_metric([topic], count)
                age.add_metric([topic], max(0.0, (now - _aware(oldest)).total_seconds()))
        return [due, age, up]

    def _read(self):
        now = utcnow()
        with self.db.read() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text(f"SET LOCAL statement_timeout = {OUTBOX_QUERY_TIMEOUT_MS}"))
            return now, session.execute(self.query, {"now": now}).all()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def counted_registry():
    """The registry to expose: every process's values in multiprocess mode, else this one's."""
    if not multiprocess_mode():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def render(db=None) -> bytes:
    """The text exposition: the counted metrics, then (with a database) the outbox lag."""
    body = generate_latest(counted_registry())
    if db is not None:
        lag = CollectorRegistry(auto_describe=False)
        lag.register(OutboxLag(db))
        body += generate_latest(lag)
    return body


def access(settings, authorization: str | None) -> int:
    """200 if this scrape may read /metrics; else 404 (not served: HUB_METRICS off, or unset
    with a public issuer and no token) or 401 (HUB_METRICS_TOKEN set and not sent)."""
    if settings.metrics is False:
        return 404
    if settings.metrics_token:
        sent = (authorization or "").removeprefix("Bearer ").strip()
        return 200 if hmac.compare_digest(sent.encode(), settings.metrics_token.encode()) else 401
    return 200 if settings.metrics_served else 404
