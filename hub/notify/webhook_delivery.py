"""Sending webhook deliveries (the Celery task `hub.deliver_webhooks` runs `Deliverer.run_many`).

At least once, never twice after a success: each attempt first takes the delivery's lease in
a transaction (only while it is pending, so a redelivered task finds a succeeded delivery
done and sends nothing), then posts with no transaction open, then records the attempt and
the outcome in one transaction with the delivery's outbox message:
- 2xx: succeeded (message done);
- 410 Gone: the endpoint is disabled and its pending deliveries fail (message done);
- anything else (other 4xx, 5xx, a redirect, a timeout, a refused address): tried again after
  the next step of webhooks.RETRY_SCHEDULE (message rescheduled), failed after the last.
An attempt that got no answer records a category (ERRORS), not the exception's text, which
the partner reads: "connection refused" against "timed out" would let them map the hub's
network. The exception goes to the log for ops.

Each attempt resolves the endpoint's host once, checks the addresses and connects to the
checked one (_PinnedAdapter), with the name kept for the Host header, TLS SNI and the
certificate check: no second lookup for a rebinding DNS server to answer differently.
A worker that dies mid-attempt leaves the lease to expire and the outbox republishes the
message; the next attempt goes out with the same webhook-id, which receivers deduplicate on.

Each endpoint has a circuit breaker per worker process: after a run of failures its
deliveries wait (no attempt made or counted) instead of each holding a worker thread for a
full timeout.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from hub.db import Database, utcnow
from hub.notify import outbox, webhooks
from hub.notify.breaker import Breaker
from hub.notify.webhook_endpoints import UnsafeUrl, UrlPolicy, check_url, disable, unseal
from hub.observability import context, metrics
from hub.notify.webhook_models import (
    FAILED, PENDING, SUCCEEDED, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent,
)

log = logging.getLogger(__name__)
USER_AGENT = "coalition-hub-webhooks/1"
CONNECT_FAILED, TLS_FAILED, TIMEOUT, INVALID_RESPONSE = "connect failed", "tls failed", "timeout", "invalid response"
ERRORS = (CONNECT_FAILED, TLS_FAILED, TIMEOUT, INVALID_RESPONSE)


class _PinnedAdapter(HTTPAdapter):
    """An adapter that connects to `request.pinned_address` when set (the address the URL's
    host was checked at) instead of resolving the host again; for https the pool keeps the
    host name for SNI and for matching the certificate. The caller sets the Host header.
    Only the connection pool's key changes: requests' send() (what `responses` fakes in
    tests), its timeouts and its no-redirect behaviour stay as they are."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        address = getattr(request, "pinned_address", None)
        if address is not None:
            if host_params["scheme"] == "https":
                pool_kwargs.update(server_hostname=host_params["host"], assert_hostname=host_params["host"])
            host_params["host"] = address
        return host_params, pool_kwargs


def error_category(exc: requests.RequestException) -> str:
    """What a partner is told of a failed attempt (see the module's docstring)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return TLS_FAILED
    if isinstance(exc, requests.Timeout):
        return TIMEOUT
    if isinstance(exc, requests.ConnectionError):
        return CONNECT_FAILED
    return INVALID_RESPONSE


@dataclass(frozen=True)
class _Claim:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]
    msg_id: str
    body: bytes


@dataclass(frozen=True)
class _Result:
    status_code: int | None
    duration_ms: int
    error: str | None


def next_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt, with +-10 % jitter so that the
    deliveries of a burst do not all come back at the same instant."""
    step = webhooks.RETRY_SCHEDULE[min(attempts, len(webhooks.RETRY_SCHEDULE)) - 1]
    return step * random.uniform(0.9, 1.1)


class Deliverer:
    def __init__(self, db: Database, settings):
        self.db = db
        self.policy = UrlPolicy.from_settings(settings)
        self.timeout = (settings.webhooks_timeout_connect, settings.webhooks_timeout_read)
        self.lease = timedelta(seconds=settings.webhooks_lease)
        self._breaker_args = (settings.webhooks_breaker_failures, settings.webhooks_breaker_reset)
        self._breakers: dict[uuid.UUID, Breaker] = {}
        self._lock = threading.Lock()
        # No retries behind our back (the schedule is the retry), no redirects (adapter.send
        # follows none: a 3xx could point inside the network), one keep-alive pool.
        self._adapter = _PinnedAdapter(max_retries=0)

    def run_many(self, delivery_ids: Sequence[uuid.UUID], request_ids: Sequence[str | None] = ()) -> list[str]:
        """`request_ids`: the id of the request behind each delivery (sent as X-Request-Id)."""
        request_ids = list(request_ids) or [None] * len(delivery_ids)
        results = []
        for delivery_id, request_id in zip(delivery_ids, request_ids):
            with context.bound(request_id):
                results.append(self.deliver(delivery_id))
        return results

    def deliver(self, delivery_id: uuid.UUID) -> str:
        """One attempt. Returns the delivery's status afterwards, or 'busy' (another attempt
        holds its lease) or 'paused' (its endpoint's breaker is open)."""
        claim = self.db.write(lambda s: self._claim(s, delivery_id))
        if isinstance(claim, str):
            return claim
        breaker = self._breaker(claim.endpoint_id)
        if not breaker.admit():
            metrics.webhook_attempt(None, "paused")
            return self.db.write(lambda s: _pause(s, delivery_id, timedelta(seconds=self._breaker_args[1])))
        result = self._post(claim)
        metrics.webhook_attempt(result.status_code, result.error)
        if result.status_code is not None and 200 <= result.status_code < 300:
            breaker.success()
        elif result.status_code == 410:
            breaker.abandon()  # the endpoint is gone for good: disabled below
        else:
            breaker.failure()
        log.info("webhook delivery %s of %s: %s", delivery_id, claim.msg_id, result.status_code or result.error)
        status = self.db.write(lambda s: record(s, delivery_id, result))
        if status == FAILED:  # this attempt was its last (or the endpoint is gone)
            metrics.WEBHOOK_FAILURES.inc()
        return status

    def _breaker(self, endpoint_id: uuid.UUID) -> Breaker:
        with self._lock:
            breaker = self._breakers.get(endpoint_id)
            if breaker is None:
                breaker = self._breakers[endpoint_id] = Breaker(*self._breaker_args)
            return breaker

    def _claim(self, session: Session, delivery_id: uuid.UUID) -> _Claim | str:
        now = utcnow()
        taken = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
                   or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now))
            .values(lease_until=now + self.lease)
            .returning(WebhookDelivery.endpoint_id, WebhookDelivery.event_id)
        ).first()
        if taken is None:
            status = session.scalar(select(WebhookDelivery.status).where(WebhookDelivery.id == delivery_id))
            if status == PENDING:
                return "busy"
            outbox.complete(session, webhooks.TOPIC, str(delivery_id))
            return status or "unknown"
        endpoint = session.get(WebhookEndpoint, taken.endpoint_id)
        if endpoint.disabled_at is not None:  # disabled since the delivery was made
            disable(session, endpoint.id, endpoint.disabled_reason or "disabled")
            outbox.complete(session, webhooks.TOPIC, str(delivery_id))
            return FAILED
        event = session.get(WebhookEvent, taken.event_id)
        return _Claim(delivery_id, endpoint.id, endpoint.url, self._secrets(endpoint, now), event.id,
                      webhooks.body_of(event.type, event.created_at.isoformat(), event.data))

    def _secrets(self, endpoint: WebhookEndpoint, now: datetime) -> tuple[str, ...]:
        current = unseal(endpoint.secret_sealed)
        if endpoint.previous_secret_sealed and endpoint.previous_secret_until and now < endpoint.previous_secret_until:
            return current, unseal(endpoint.previous_secret_sealed)
        return (current,)

    def _post(self, claim: _Claim) -> _Result:
        started = time.monotonic()
        try:
            # Again now (the name may resolve elsewhere than when saved), and what is checked
            # is where the request goes.
            address = check_url(claim.url, self.policy)
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       **webhooks.sign(claim.secrets, claim.msg_id, int(time.time()), claim.body)}
            request_id = context.current()
            if request_id:
                headers[context.HEADER] = request_id
            request = requests.Request("POST", claim.url, headers=headers, data=claim.body).prepare()
            if address is not None:
                request.pinned_address = address
                request.headers["Host"] = urlsplit(request.url).netloc  # the name, IDNA-encoded
            response = self._adapter.send(request, timeout=self.timeout)
            response.close()
        except UnsafeUrl as exc:
            return _Result(None, _ms(started), f"refused: {exc.detail}"[:300])
        except requests.RequestException as exc:
            log.warning("webhook delivery %s to endpoint %s: %r", claim.delivery_id, claim.endpoint_id, exc)
            return _Result(None, _ms(started), error_category(exc))
        return _Result(response.status_code, _ms(started), None)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _pause(session: Session, delivery_id: uuid.UUID, wait: timedelta) -> str:
    """The endpoint's breaker is open: no attempt now; the lease goes, the message comes back later."""
    due = utcnow() + wait
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                    .values(lease_until=None, next_attempt_at=due))
    outbox.reschedule(session, webhooks.TOPIC, str(delivery_id), due)
    return "paused"


def record(session: Session, delivery_id: uuid.UUID, result: _Result) -> str:
    """Record an attempt and what it means for the delivery (see the module's docstring)."""
    now = utcnow()
    attempted_at = now - timedelta(milliseconds=result.duration_ms)
    session.execute(insert(WebhookAttempt).values(
        delivery_id=delivery_id, attempted_at=attempted_at, status_code=result.status_code,
        duration_ms=result.duration_ms, error=result.error))
    delivery = session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update())
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_error = result.status_code, result.error
    delivery.lease_until = None
    key = str(delivery_id)
    if delivery.status != PENDING:  # settled meanwhile (an overrun attempt's answer; the endpoint disabled)
        outbox.complete(session, webhooks.TOPIC, key)
        return delivery.status
    code = result.status_code
    if code is not None and 200 <= code < 300:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = SUCCEEDED, now, None
    elif code == 410:
        session.flush()
        disable(session, delivery.endpoint_id, "the endpoint answered 410 Gone")
        session.refresh(delivery)
    elif delivery.attempts >= delivery.max_attempts:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = FAILED, now, None
    else:
        delivery.next_attempt_at = now + next_delay(delivery.attempts)
        outbox.reschedule(session, webhooks.TOPIC, key, delivery.next_attempt_at)
        return PENDING
    outbox.complete(session, webhooks.TOPIC, key)
    return delivery.status
