"""Partner webhooks through real processes, as `hub up` runs them: the outbox dispatcher
(`hub dispatch`) publishes a delivery to a real Celery worker (`hub worker`), on the test's
broker (the embedded SQLite one when no Redis is configured), and the worker POSTs it, signed,
to a receiver listening on this machine; a receiver answering 500 first gets a retry."""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from hub.notify import webhooks
from hub.programs.models import Partner as PartnerRow
from tests.e2e.relay_stack import Stack, wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    """A partner's webhook receiver: records each request; answers from `answers`, then 204."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory):
    stack = Stack(settings, tmp_path_factory.mktemp("webhooks"), settings.broker_url)
    stack.start_worker()
    stack.start_dispatcher()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def test_an_event_reaches_the_partner_signed_through_the_worker(stack, partner, db, receiver):
    receiver.answers = [500]  # the first attempt fails: the second, 5 s later, succeeds
    created = partner.api.post("/v1/webhook-endpoints", {"url": receiver.url})
    assert created.status_code == 201, created.text
    endpoint, secret = created.json()["id"], created.json()["secret"]
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))
    data = {"member_id": str(uuid.uuid4()), "program": partner.program, "from": "silver", "to": "gold"}
    event_id = db.write(lambda s: webhooks.emit(s, partner_id, "tier.changed", data))

    wait_for(lambda: len(receiver.requests) >= 2, 40, f"two attempts (worker log: {stack.log('worker')[-2000:]})")
    for headers, body in receiver.requests:
        assert headers["webhook-id"] == event_id
        assert webhooks.verify(secret, headers, body) == json.loads(body)
    assert json.loads(receiver.requests[1][1])["data"] == data

    def succeeded():
        (delivery,) = partner.api.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").json()["items"]
        return delivery if delivery["status"] == "succeeded" else None

    delivery = wait_for(succeeded, 10, "the delivery recorded as succeeded")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 204]
