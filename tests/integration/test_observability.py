"""Observability through the HTTP API: /metrics (requests by operation, ledger transfers by
code, outbox lag, relay outcomes, webhook failures, task outcomes), the request id on every
answer, and an order followed by its request id from the API to the relay task, the
provider's call, the partner's webhook and their log records; /readyz with the broker down."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace
from unittest.mock import patch

import requests
import responses
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from hub import app as app_module, tasks
from hub.api import runtime
from hub.db import utcnow
from hub.notify import outbox, webhooks
from hub.notify.dispatcher import REQUEST_IDS_HEADER, celery_publisher
from hub.notify.outbox import OutboxMessage
from hub.notify.webhook_delivery import Deliverer
from hub.observability import context, metrics
from hub.observability.middleware import Observed
from hub.rewards import relay
from hub.rewards.providers import Outcome, Status
from tests.conftest import assert_problem
from tests.integration.test_redemptions import CARD, POLICY, provider, reward_code, rich_member  # noqa: F401
from tests.integration.test_webhooks import URL, deliveries, emit, register

HEADER = "X-Request-Id"


def scrape(http) -> dict[tuple[str, tuple], float]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- the request id -----------------------------------------------------------------------

def test_every_answer_carries_the_request_id_it_was_given(partner, http):
    member = partner.enrol()
    answers = [
        partner.api.post("/v1/transactions", partner.purchase_body(member, "10000"), headers={HEADER: "pos-1"}),
        http.get(f"/v1/members/{member}/balances", headers={**partner.api.headers, HEADER: "pos-1"}),
        http.get("/v1/members/nope", headers={HEADER: "pos-1"}),  # 401 problem
        http.get("/account/login", headers={HEADER: "pos-1"}),  # a page
        http.post("/oauth/token", data={"grant_type": "client_credentials"}, headers={HEADER: "pos-1"}),
        http.get("/no/such/route", headers={HEADER: "pos-1"}),
    ]
    assert [a.headers[HEADER] for a in answers] == ["pos-1"] * len(answers)
    assert answers[0].status_code == 201 and answers[2].status_code == 401 and answers[4].status_code == 401


def test_an_unsafe_request_id_is_replaced(http):
    first = http.get("/healthz", headers={HEADER: "x" * 65})
    second = http.get("/healthz")
    ids = {first.headers[HEADER], second.headers[HEADER]}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)


# --- /metrics -------------------------------------------------------------------------------

def test_requests_are_counted_by_operation_never_by_raw_path(partner, http):
    member = partner.enrol()
    before = scrape(http)
    partner.buy(member, "20000")  # the lean path
    for _ in range(2):
        assert partner.api.get(f"/v1/members/{member}/balances").status_code == 200  # connexion
    assert http.get("/account/login").status_code == 200  # a page
    after = scrape(http)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hub_http_requests_total", operation="transactions.purchase", status="2xx") == 1
    assert delta("hub_http_requests_total", operation="members.balances", status="2xx") == 2
    assert delta("hub_http_requests_total", operation="/account/login", status="2xx") == 1
    assert delta("hub_http_request_duration_seconds_count", operation="members.balances") == 2
    assert not any(member in str(labels) for _, labels in after)


def test_a_request_is_counted_before_its_answer_has_left():
    """A client that has the whole answer and then reads /metrics finds the request counted
    (the count was made after the app returned, so a quick scrape could miss it)."""
    key = ("/probe/counted-before-answer", "2xx")
    seen = []

    def counted() -> float:
        return value({(s.name, tuple(sorted(s.labels.items()))): s.value
                      for family in metrics.REQUESTS.collect() for s in family.samples},
                     "hub_http_requests_total", operation=key[0], status=key[1])

    async def app(scope, receive, send):
        context.name_operation(key[0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        seen.append(counted())  # the client has it all by now

    async def send(message):
        pass

    async def receive():
        return {"type": "http.request", "body": b""}

    before = counted()
    asyncio.run(Observed(app)({"type": "http", "headers": [], "path": key[0]}, receive, send))
    assert seen == [before + 1] and counted() == before + 1


def test_earned_points_are_counted_by_transfer_code(partner, http):
    member = partner.enrol()
    before = scrape(http)
    partner.buy(member, "70000")  # 70 points
    refused = partner.api.post("/v1/transactions", {**partner.purchase_body(member, "1000"), "currency": "EUR"})
    assert refused.status_code >= 400  # no transfer: nothing counted
    after = scrape(http)
    assert value(after, "hub_ledger_transfers_total", code="earn", phase="posted") - \
        value(before, "hub_ledger_transfers_total", code="earn", phase="posted") == 1
    assert value(after, "hub_ledger_transfer_points_total", code="earn", phase="posted") - \
        value(before, "hub_ledger_transfer_points_total", code="earn", phase="posted") == 70


def test_outbox_lag_shows_due_messages_by_topic(db, http):
    topic = f"test.lag.{uuid.uuid4().hex[:8]}"
    db.write(lambda s: outbox.enqueue(s, topic, "k1", {}))
    db.write(lambda s: s.execute(OutboxMessage.__table__.update().where(OutboxMessage.topic == topic)
                                 .values(available_at=utcnow() - timedelta(minutes=5))))
    try:
        samples = scrape(http)
        assert value(samples, "hub_outbox_lag_up") == 1
        assert value(samples, "hub_outbox_due_messages", topic=topic) == 1
        assert 300 <= value(samples, "hub_outbox_oldest_due_age_seconds", topic=topic) < 360
    finally:
        db.write(lambda s: s.execute(delete(OutboxMessage).where(OutboxMessage.topic == topic)))
    assert value(scrape(http), "hub_outbox_due_messages", topic=topic) == 0


def test_metrics_can_be_refused(http):
    settings = runtime.current().settings
    # The app reads the settings object it was built with: swap its fields for the test.
    with patch.object(type(settings), "metrics_served", property(lambda self: False)):
        assert_problem(http.get("/metrics"), 404, "not-found")


# --- an order followed from the API to the provider and the partner's webhook ----------------

def _published(db, topic_task: str, wanted: set[str], key: str):
    """Dispatch the due outbox rows as production does, keeping only the payloads in
    `wanted` (other tests' rows share the database): their payloads and the header of ids."""
    sent = []
    broker = SimpleNamespace(send_task=lambda name, args, **options: sent.append((name, args[0], options)))
    db.write(lambda s: outbox.dispatch_due(s, celery_publisher(broker, tasks.TOPICS), timedelta(minutes=5)))
    payloads, ids = [], []
    for name, batch, options in sent:
        header = (options.get("headers") or {}).get(REQUEST_IDS_HEADER) or [None] * len(batch)
        for payload, request_id in zip(batch, header):
            if name == topic_task and payload[key] in wanted:
                payloads.append(payload)
                ids.append(request_id)
    return payloads, {REQUEST_IDS_HEADER: ids}


def test_an_order_is_followed_by_its_request_id_to_the_provider_and_the_webhook(
        partner, provider, db, http, caplog):
    endpoint = register(partner.api, event_types=["redemption.fulfilled"])
    member = rich_member(partner)
    trace = f"order-{uuid.uuid4().hex[:12]}"
    response = partner.api.post("/v1/redemptions", {"reward": reward_code(db, provider), "program": partner.program,
                                                    "member": {"member_id": member}, "amount": "10.00"},
                                key=uuid.uuid4().hex, headers={HEADER: trace})
    assert response.status_code == 202 and response.headers[HEADER] == trace
    order = response.json()["id"]

    seen_by_provider = []
    place = provider.place_order

    def place_order(request):
        seen_by_provider.append(context.current())  # what partners/_http sends as X-Request-Id
        return place(request)

    provider.place_order = place_order
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-9", delivery=CARD)]
    before = scrape(http)
    worker_relay = relay.Relay(db, {provider.name: provider}, POLICY)
    payloads, headers = _published(db, tasks.RELAY_TASK, {order}, "redemption_id")
    assert headers == {REQUEST_IDS_HEADER: [trace]}
    with patch.object(tasks, "_services", lambda: (None, db, {}, worker_relay)), \
            caplog.at_level(logging.INFO, logger="hub.rewards.relay"):
        assert tasks.celery.tasks[tasks.RELAY_TASK].apply(args=(payloads,), headers=headers).get() == ["fulfilled"]
    assert seen_by_provider == [trace]
    (attempt_log,) = [r for r in caplog.records if r.name == "hub.rewards.relay" and order in r.getMessage()]
    assert attempt_log.request_id == trace

    # The fulfilment's webhook was written under the same id, and is sent with it.
    (delivery,) = deliveries(db, endpoint["id"])
    payloads, headers = _published(db, tasks.WEBHOOK_TASK, {str(delivery.id)}, "delivery_id")
    assert headers == {REQUEST_IDS_HEADER: [trace]}
    deliverer = Deliverer(db, runtime.current().settings)
    with responses.RequestsMock() as receiver, patch.object(tasks, "_deliverer", lambda: deliverer):
        receiver.add(responses.POST, URL, status=503)
        assert tasks.celery.tasks[tasks.WEBHOOK_TASK].apply(args=(payloads,), headers=headers).get() == ["pending"]
        (call,) = receiver.calls
    assert call.request.headers[HEADER] == trace

    after = scrape(http)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hub_relay_outcomes_total", provider=provider.name, outcome="fulfilled") == 1
    assert delta("hub_relay_call_duration_seconds_count", provider=provider.name) == 1
    assert delta("hub_ledger_transfers_total", code="redemption", phase="post_pending") == 1
    assert delta("hub_webhook_attempts_total", result="5xx") == 1
    assert delta("hub_tasks_total", task=tasks.RELAY_TASK, outcome="success") == 1
    assert delta("hub_tasks_total", task=tasks.WEBHOOK_TASK, outcome="success") == 1


def test_a_webhook_given_up_is_counted_as_failed(partner, db, http):
    endpoint = register(partner.api)
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    before = scrape(http)
    deliverer = Deliverer(db, dataclasses.replace(runtime.current().settings, webhooks_breaker_failures=100))
    with responses.RequestsMock() as receiver:
        receiver.add(responses.POST, URL, body=requests.ConnectionError("refused"))
        outcomes = [deliverer.deliver(delivery.id) for _ in range(webhooks.MAX_ATTEMPTS)]
    assert outcomes[-1] == "failed"
    after = scrape(http)
    assert value(after, "hub_webhook_deliveries_failed_total") - value(before, "hub_webhook_deliveries_failed_total") == 1
    assert value(after, "hub_webhook_attempts_total", result="connect_failed") - \
        value(before, "hub_webhook_attempts_total", result="connect_failed") == webhooks.MAX_ATTEMPTS


# --- /readyz --------------------------------------------------------------------------------

def test_readyz_names_the_check_that_failed(http):
    assert http.get("/readyz").json()["checks"]["database"] == "ok"
    check_broker = app_module._check_broker
    with patch.object(app_module, "_check_broker", lambda url: check_broker("redis://127.0.0.1:1/0")):  # down
        down = http.get("/readyz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable",
                           "checks": {"database": "ok", "broker": "failed: ConnectionError"}}


def test_readyz_does_not_wait_for_a_hung_check(http, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(app_module, "READINESS_TIMEOUT", 0.2)
    monkeypatch.setattr(app_module, "_check_database", lambda db: release.wait(5) and "ok")
    try:
        started = time.monotonic()
        hung = http.get("/readyz")
        assert time.monotonic() - started < 2
    finally:
        release.set()
    assert hung.status_code == 503 and hung.json()["checks"]["database"] == "failed: timeout"
