"""The outbox dispatcher: a small loop that publishes due outbox messages to the broker.

It survives broker loss: a failed publish rolls back that batch (its messages stay due, and a
message published before the failure may go out twice, which consumers tolerate) and the
loop waits and tries again. Several dispatchers may run (rows are claimed with SKIP LOCKED).

On PostgreSQL it also LISTENs on the outbox's channel (outbox.enqueue NOTIFYs it when its
transaction commits), so a new message is published at once rather than at the next poll.
The poll stays: it is what finds retries coming due and messages whose lease ran out, and
it covers notifications lost with the listening connection.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from hub.db import Database
from hub.notify import outbox

log = logging.getLogger(__name__)
REQUEST_IDS_HEADER = "hub_request_ids"


def run(
    db: Database,
    publish: Callable[[str, list[dict]], None],
    *,
    lease: timedelta = timedelta(seconds=60),
    poll: float = 0.2,
    batch: int = 200,
    gather: float = 0.1,
    listen: bool = True,
    stop: threading.Event | None = None,
    per_message: Mapping[str, int] | None = None,
) -> None:
    """`gather`: after a notification, wait this long (from the start of the last round) so
    that a burst of new messages goes out as one batch, not as a round each. A message waits
    at most that long; under load, a round fills relay tasks of tens of orders, whose broker
    message, task and claim are then paid once for all of them. `per_message`: payloads per
    broker message, by topic (outbox.dispatch_due)."""
    stop = stop or threading.Event()
    waker = _Listener(db) if listen and db.dialect == "postgresql" else None
    failures = 0
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                sent = db.write(lambda s: outbox.dispatch_due(s, publish, lease, batch, per_message))
                failures = 0
            except Exception:  # the broker or the database is down: keep going, slower
                failures += 1
                log.exception("outbox dispatch failed (%d in a row); retrying", failures)
                stop.wait(min(30.0, poll * 2**failures))
                continue
            if sent >= batch:
                continue
            if waker is None or not waker.wait(poll):
                stop.wait(poll)
            else:
                stop.wait(max(0.0, gather - (time.monotonic() - started)))
    finally:
        if waker is not None:
            waker.close()


class _Listener:
    """A connection that LISTENs on the outbox's channel. wait(timeout) returns True when a
    notification came (or is already queued), False on timeout, None if it cannot listen (the
    caller then just sleeps; the next wait tries to listen again)."""

    def __init__(self, db: Database):
        self.db = db
        self.conn = None
        self.retry_at = 0.0

    def wait(self, timeout: float) -> bool | None:
        try:
            driver = self._connection()
            if driver is None:
                return None
            woke = False
            for _ in driver.notifies(timeout=timeout, stop_after=1):
                woke = True
            if woke:
                for _ in driver.notifies(timeout=0):  # coalesce the ones already queued
                    pass
            return woke
        except Exception:
            log.warning("outbox listener lost; polling until it is back", exc_info=True)
            self.close()
            self.retry_at = time.monotonic() + 5.0
            return None

    def _connection(self):
        if self.conn is None:
            if time.monotonic() < self.retry_at:
                return None
            self.conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.conn.exec_driver_sql(f"LISTEN {outbox.NOTIFY_CHANNEL}")
        return self.conn.connection.driver_connection

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()  # not back to the pool: it may still be LISTENing
                self.conn.close()
            except Exception:
                pass
            self.conn = None


def celery_publisher(celery, topics: dict[str, str]) -> Callable[[str, list[dict], list[str | None]], None]:
    """One task per group of a topic's payloads (the task takes them as its one argument).
    Their request ids ride in a task header, one per payload (hub.tasks binds them)."""
    def publish(topic: str, payloads: list[dict], request_ids: list[str | None]) -> None:
        celery.send_task(
            topics[topic],
            args=(payloads,),
            headers={REQUEST_IDS_HEADER: request_ids} if any(request_ids) else None,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    return publish
