"""Each connector against its sandbox fake over real HTTP (hub.sandbox on a free port), for
every magic e-mail tag. The fakes count placements per reference: however the calls go, an
order is placed at most once."""
from __future__ import annotations

import queue
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from hub import sandbox
from hub.rewards.providers import OrderRequest, Recipient, Status, factories

PENDING_DELAY = 0.4   # a "+pending" order settles on the first look this long after placing
TIMEOUT_SLEEP = 1.0   # a "+timeout" answer takes this long...
READ_TIMEOUT = 0.3    # ...and the connectors stop waiting after this

PATHS = {"tango": "/tango/raas/v2", "tremendous": "/tremendous/api/v2", "globalgiving": "/globalgiving/api"}
PRODUCTS = {"tango": ("U666425", 2500), "tremendous": ("OKMHM2X2OHYV", 2500), "globalgiving": ("1883", 2500)}


@pytest.fixture(scope="module")
def sandbox_url():
    server, url = sandbox.start(pending_delay=PENDING_DELAY, timeout_sleep=TIMEOUT_SLEEP)
    yield url
    server.shutdown()


def connector(name: str, url: str, **overrides: str):
    config = {"base_url": url + PATHS[name], "timeout_connect": "1", "timeout_read": str(READ_TIMEOUT), **overrides}
    return factories()[name](config)


def order_for(name: str, tag: str) -> OrderRequest:
    product, amount = PRODUCTS[name]
    email = "jo@example.com" if tag == "none" else f"jo+{tag}@example.com"
    return OrderRequest(f"rdm{uuid.uuid4().hex}", product, amount, "USD", Recipient(email, "Jo Doe"))


def book(url: str, name: str, reference: str) -> dict:
    return requests.get(f"{url}/{name}/_sandbox/orders", timeout=2).json().get(reference, {})


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("tag", ["none", "ok", "pending", "pendfail", "fail", "5xx", "5xxplaced", "timeout",
                                 "ratelimit"])
def test_every_magic_tag_places_at_most_once(sandbox_url, name, tag):
    provider, order = connector(name, sandbox_url), order_for(name, tag)
    started = time.monotonic()
    first = provider.place_order(order)
    elapsed = time.monotonic() - started

    if tag in ("none", "ok"):
        assert first.status is Status.FULFILLED and first.delivery
        assert provider.place_order(order) == first            # the retry gets the original
        assert provider.lookup(order.reference) == first
    elif tag in ("pending", "pendfail"):
        assert first.status is Status.PENDING
        assert provider.lookup(order.reference).status is Status.PENDING
        time.sleep(PENDING_DELAY + 0.05)
        settled = provider.lookup(order.reference)
        assert settled.status is (Status.FULFILLED if tag == "pending" else Status.FAILED)
        assert provider.place_order(order).status is settled.status  # a retry sees the same order
    elif tag == "fail":
        assert first.status is Status.FAILED
        assert provider.lookup(order.reference).status is Status.NOT_FOUND
    elif tag == "5xx":
        assert first.status is Status.UNKNOWN
        assert provider.lookup(order.reference).status is Status.NOT_FOUND  # so the relay may place it
        assert provider.place_order(order).status is Status.FULFILLED
    elif tag in ("5xxplaced", "timeout"):
        assert first.status is Status.UNKNOWN
        if tag == "timeout":
            assert READ_TIMEOUT <= elapsed < TIMEOUT_SLEEP
        found = provider.lookup(order.reference)
        assert found.status is Status.FULFILLED
        assert provider.place_order(order) == found
    elif tag == "ratelimit":
        assert first.status is Status.RETRY and first.retry_after == 1.0
        assert provider.place_order(order).status is Status.FULFILLED

    record = book(sandbox_url, name, order.reference)
    assert record["placements"] == (0 if tag == "fail" else 1), record


@pytest.mark.parametrize("name", sorted(PATHS))
def test_concurrent_attempts_at_one_reference_place_one_order(sandbox_url, name):
    provider, order = connector(name, sandbox_url, timeout_read="5"), order_for(name, "ok")
    outcomes, barrier = [], threading.Barrier(8)

    def attempt():
        barrier.wait()
        outcomes.append(provider.place_order(order))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {o.status for o in outcomes} == {Status.FULFILLED}
    assert len({tuple(sorted(o.delivery.items())) for o in outcomes}) == 1
    assert book(sandbox_url, name, order.reference)["placements"] == 1


@pytest.mark.parametrize("name", sorted(PATHS))
def test_catalog_over_http(sandbox_url, name):
    items = connector(name, sandbox_url).catalog()
    assert PRODUCTS[name][0] in {item.product for item in items}


@pytest.mark.parametrize("name, bad", [
    ("tango", {"platform_key": "wrong"}), ("tremendous", {"api_key": "wrong"}), ("globalgiving", {"api_token": "wrong"}),
])
def test_the_fakes_check_credentials(sandbox_url, name, bad):
    provider, order = connector(name, sandbox_url, **bad), order_for(name, "ok")
    refused = provider.place_order(order)
    assert refused.status is Status.FAILED and "401" in refused.detail
    assert provider.lookup(order.reference).status is Status.UNKNOWN  # a refused question is no answer
    assert book(sandbox_url, name, order.reference) == {}


@pytest.mark.parametrize("name", sorted(PATHS))
def test_a_refused_connection_is_a_retry(name):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = connector(name, f"http://127.0.0.1:{port}")
    assert provider.place_order(order_for(name, "ok")).status is Status.RETRY


def test_tremendous_signs_a_webhook_when_a_pending_order_settles():
    received: queue.Queue = queue.Queue()

    @Request.application
    def receiver(request):
        received.put((dict(request.headers), request.get_data()))
        return Response("ok")

    hook = make_server("127.0.0.1", 0, receiver, threaded=True)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    server, url = sandbox.start(pending_delay=PENDING_DELAY)  # its own: the subscription is global state
    try:
        # Subscribe as with the real API: POST /webhooks answers with the signing key.
        subscribed = requests.post(f"{url}/tremendous/api/v2/webhooks", timeout=2,
                                   json={"url": f"http://127.0.0.1:{hook.server_port}/hooks/tremendous"},
                                   headers={"Authorization": "Bearer TEST_sandbox-api-key"}).json()
        provider = connector("tremendous", url, webhook_secret=subscribed["webhook"]["private_key"])
        order = order_for("tremendous", "pending")
        placed = provider.place_order(order)
        assert placed.status is Status.PENDING
        headers, body = received.get(timeout=5)  # sent on a timer, with nobody looking the order up
        event = provider.verify_webhook(headers, body, datetime.now(timezone.utc))
        assert event.raw["event"] == "ORDERS.APPROVED"
        assert event.outcome.provider_order_id == placed.provider_order_id
        assert provider.lookup(order.reference).status is Status.FULFILLED
    finally:
        server.shutdown()
        hook.shutdown()


def test_the_combined_app_runs_in_process_and_resets():
    client = Client(sandbox.build_app())
    placed = client.post("/globalgiving/api/secure/givingservice/donations",
                         query_string={"api_key": "sandbox-api-key", "api_token": "sandbox-api-token"},
                         json={"donation": {"refcode": "r1", "email": "jo@example.com", "amount": 10,
                                            "project": {"id": 1883}}})
    assert placed.status_code == 200 and placed.json["donation"]["receipt"]["receiptNumber"]
    assert client.get("/globalgiving/_sandbox/orders").json["r1"]["placements"] == 1
    assert client.post("/globalgiving/_sandbox/reset").status_code == 200
    assert client.get("/globalgiving/_sandbox/orders").json == {}
    assert client.get("/nowhere").status_code == 404
