"""Partner webhooks end to end, with the partner's receiver faked by `responses`: endpoints
through the API, an event emitted in a transaction, the delivery task's function run
directly (as the worker runs it), signatures checked with the partner-side verify helper;
retries, 410, replay, rotation, URL rules, tenancy."""
from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import threading
import uuid
from datetime import timedelta

import pytest
import requests
import responses
import urllib3.util.connection
from sqlalchemy import select, update

from hub.api import runtime
from hub.db import utcnow
from hub.notify import webhooks
from hub.notify.outbox import OutboxMessage
from hub.notify.webhook_delivery import Deliverer, _PinnedAdapter
from hub.notify.webhook_models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from hub.programs.models import Partner as PartnerRow
from tests.conftest import assert_problem

URL = "https://partner.example/hooks"


def register(api, url=URL, **body):
    response = api.post("/v1/webhook-endpoints", {"url": url, **body})
    assert response.status_code == 201, response.text
    return response.json()


def partner_id(db, partner) -> uuid.UUID:
    with db.read() as s:
        return s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))


def emit(db, partner, event_type="tier.changed", data=None) -> str:
    data = data or {"member_id": str(uuid.uuid4()), "program": partner.program, "from": "silver", "to": "gold"}
    return db.write(lambda s: webhooks.emit(s, partner_id(db, partner), event_type, data))


def deliveries(db, endpoint_id: str) -> list[WebhookDelivery]:
    with db.read() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == uuid.UUID(endpoint_id))
                              .order_by(WebhookDelivery.created_at)))


def message(db, delivery_id) -> OutboxMessage:
    with db.read() as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC,
                                                     OutboxMessage.key == str(delivery_id))
                         .order_by(OutboxMessage.id.desc())).first()


@pytest.fixture
def settings_now():
    return runtime.current().settings


@pytest.fixture
def deliverer(db, settings_now):
    return Deliverer(db, dataclasses.replace(settings_now, webhooks_breaker_failures=100))


@pytest.fixture
def receiver():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def verified(call, secret: str) -> dict:
    return webhooks.verify(secret, call.request.headers, call.request.body)


def test_tier_changed_is_delivered_once_signed_with_the_event_id(partner, db, deliverer, receiver):
    endpoint = register(partner.api, description="CRM", event_types=["tier.changed"])
    assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"] and endpoint["partner"] == partner.code
    receiver.add(responses.POST, URL, status=204)
    data = {"member_id": str(uuid.uuid4()), "program": partner.program, "from": "silver", "to": "gold"}
    event_id = emit(db, partner, data=data)

    (delivery,) = deliveries(db, endpoint["id"])
    assert deliverer.deliver(delivery.id) == "succeeded"
    (call,) = receiver.calls
    body = verified(call, endpoint["secret"])
    assert body["type"] == "tier.changed" and body["data"] == data and body["timestamp"]
    assert call.request.headers["webhook-id"] == event_id
    assert call.request.headers["Content-Type"] == "application/json"
    assert message(db, delivery.id).done_at is not None
    # A redelivered task sends nothing again.
    assert deliverer.deliver(delivery.id) == "succeeded" and len(receiver.calls) == 1

    listed = partner.api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
    assert [(d["event_id"], d["status"], d["attempts"]) for d in listed] == [(event_id, "succeeded", 1)]
    assert listed[0]["attempt_log"][0]["status_code"] == 204


def test_an_event_goes_only_to_endpoints_subscribed_to_it(partner, db):
    tiers = register(partner.api, event_types=["tier.changed"])
    everything = register(partner.api, url="https://partner.example/all")
    redemptions = register(partner.api, event_types=["redemption.fulfilled", "redemption.failed"])
    emit(db, partner)
    assert [len(deliveries(db, e["id"])) for e in (tiers, everything, redemptions)] == [1, 1, 0]
    assert redemptions["event_types"] == ["redemption.fulfilled", "redemption.failed"]


def test_no_endpoint_no_write(partner, db):
    event_id = emit(db, partner)
    with db.read() as s:
        assert s.get(WebhookEvent, event_id) is None


def test_unknown_event_types_are_refused(partner):
    response = partner.api.post("/v1/webhook-endpoints", {"url": URL, "event_types": ["points.stolen"]})
    assert "points.stolen" in assert_problem(response, 400, "invalid-request")["detail"]


def test_500_and_timeout_are_retried_on_schedule_then_succeed(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=500)
    receiver.add(responses.POST, URL, body=requests.ConnectTimeout("connect timed out"))
    receiver.add(responses.POST, URL, status=200)
    event_id = emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])

    before = utcnow()
    assert deliverer.deliver(delivery.id) == "pending"
    (after_first,) = deliveries(db, endpoint["id"])
    wait = after_first.next_attempt_at - before
    assert timedelta(seconds=4.4) <= wait <= timedelta(seconds=5.6)  # 5 s +-10 %
    assert message(db, delivery.id).available_at == after_first.next_attempt_at  # the outbox brings it back then
    assert deliverer.deliver(delivery.id) == "pending"
    (after_second,) = deliveries(db, endpoint["id"])
    assert timedelta(minutes=4.4) <= after_second.next_attempt_at - utcnow() <= timedelta(minutes=5.6)
    assert deliverer.deliver(delivery.id) == "succeeded"

    assert {call.request.headers["webhook-id"] for call in receiver.calls} == {event_id}
    (listed,) = partner.api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
    log = listed["attempt_log"]
    assert [a["status_code"] for a in log] == [500, None, 200]
    assert log[1]["error"] == "timeout" and listed["status"] == "succeeded"


def test_the_last_failed_attempt_fails_the_delivery(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=503)
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    outcomes = [deliverer.deliver(delivery.id) for _ in range(webhooks.MAX_ATTEMPTS)]
    assert outcomes == ["pending"] * (webhooks.MAX_ATTEMPTS - 1) + ["failed"]
    assert deliverer.deliver(delivery.id) == "failed" and len(receiver.calls) == webhooks.MAX_ATTEMPTS
    assert message(db, delivery.id).done_at is not None
    failed = partner.api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", status="failed").json()["items"]
    assert [d["id"] for d in failed] == [str(delivery.id)]
    assert partner.api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", status="pending").json()["items"] == []


def test_410_disables_the_endpoint_and_stops_its_deliveries(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=410)
    emit(db, partner)
    emit(db, partner)
    first, second = deliveries(db, endpoint["id"])
    assert deliverer.deliver(first.id) == "failed"
    shown = partner.api.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()
    assert not shown["enabled"] and "410" in shown["disabled_reason"]
    assert deliverer.deliver(second.id) == "failed" and len(receiver.calls) == 1
    assert [d.status for d in deliveries(db, endpoint["id"])] == ["failed", "failed"]
    emit(db, partner)
    assert len(deliveries(db, endpoint["id"])) == 2  # a disabled endpoint gets no new event
    assert_problem(partner.api.post(f"/v1/webhook-deliveries/{first.id}/replay"), 409, "webhook-endpoint-disabled")


def test_delete_disables(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    emit(db, partner)
    response = partner.api.http.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=partner.api.headers)
    assert response.status_code == 200 and not response.json()["enabled"]
    (delivery,) = deliveries(db, endpoint["id"])
    assert delivery.status == "failed" and deliverer.deliver(delivery.id) == "failed"
    assert len(receiver.calls) == 0


def test_replay_sends_again_with_the_same_webhook_id(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=200)
    event_id = emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    assert deliverer.deliver(delivery.id) == "succeeded"

    replayed = partner.api.post(f"/v1/webhook-deliveries/{delivery.id}/replay")
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["status"] == "pending" and replayed.json()["max_attempts"] == 2
    assert message(db, delivery.id).done_at is None
    assert deliverer.deliver(delivery.id) == "succeeded"
    assert [c.request.headers["webhook-id"] for c in receiver.calls] == [event_id, event_id]
    assert all(verified(c, endpoint["secret"])["type"] == "tier.changed" for c in receiver.calls)


def test_replay_of_a_failed_delivery_is_one_attempt(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=500)
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    db.write(lambda s: s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                                 .values(status="failed", attempts=webhooks.MAX_ATTEMPTS)))
    assert partner.api.post(f"/v1/webhook-deliveries/{delivery.id}/replay").status_code == 202
    assert deliverer.deliver(delivery.id) == "failed" and len(receiver.calls) == 1


def test_rotation_signs_with_both_secrets_during_the_window(partner, db, deliverer, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=200)
    rotated = partner.api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != endpoint["secret"] and rotated.json()["previous_secret_until"]
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    deliverer.deliver(delivery.id)
    (call,) = receiver.calls
    assert len(call.request.headers["webhook-signature"].split(" ")) == 2
    verified(call, endpoint["secret"]), verified(call, new)  # either secret checks out

    # After the window, only the new secret signs.
    db.write(lambda s: s.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == uuid.UUID(endpoint["id"]))
                                 .values(previous_secret_until=utcnow() - timedelta(seconds=1))))
    emit(db, partner)
    deliverer.deliver(deliveries(db, endpoint["id"])[1].id)
    last = receiver.calls[1]
    assert len(last.request.headers["webhook-signature"].split(" ")) == 1
    verified(last, new)
    with pytest.raises(webhooks.WebhookVerificationError):
        verified(last, endpoint["secret"])


def test_the_secret_is_shown_once_and_sealed_at_rest(partner, db):
    body = {"url": URL}
    first = partner.api.post("/v1/webhook-endpoints", body, key="wh-once")
    again = partner.api.post("/v1/webhook-endpoints", body, key="wh-once")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and "secret" not in again.json()
    secret = first.json()["secret"]
    assert secret not in partner.api.get(f"/v1/webhook-endpoints/{first.json()['id']}").text
    with db.read() as s:
        row = s.get(WebhookEndpoint, uuid.UUID(first.json()["id"]))
    assert secret not in row.secret_sealed and secret.removeprefix("whsec_") not in row.secret_sealed


@pytest.fixture
def strict(monkeypatch):
    """The production rules: https only, public addresses only."""
    hub = runtime.current()
    monkeypatch.setattr(hub, "settings", dataclasses.replace(
        hub.settings, webhooks_allow_http=False, webhooks_allow_private=False))
    return hub.settings


@pytest.mark.parametrize("url", [
    "http://93.184.215.14/hooks",           # plain http
    "https://127.0.0.1/hooks",              # loopback
    "https://localhost:8443/hooks",         # loopback by name
    "https://10.1.2.3/hooks",               # private
    "https://192.168.0.5/hooks",            # private
    "https://169.254.169.254/latest",       # link-local (cloud metadata)
    "https://[::1]/hooks",                  # IPv6 loopback
    "https://[fd00::1]/hooks",              # IPv6 unique-local
    "https://[::ffff:127.0.0.1]/hooks",     # IPv4-mapped loopback
    "https://user:pw@93.184.215.14/hooks",  # credentials in the URL
    "ftp://93.184.215.14/hooks",
])
def test_unsafe_urls_are_refused_unless_allowed(partner, strict, url):
    assert_problem(partner.api.post("/v1/webhook-endpoints", {"url": url}), 422, "invalid-webhook-url")


def test_a_public_https_url_is_accepted_under_the_strict_rules(partner, strict):
    assert partner.api.post("/v1/webhook-endpoints", {"url": "https://93.184.215.14/hooks"}).status_code == 201


def test_settings_allow_http_and_private_addresses(partner, monkeypatch):
    hub = runtime.current()
    monkeypatch.setattr(hub, "settings", dataclasses.replace(
        hub.settings, issuer="https://hub.example", webhooks_allow_http=True, webhooks_allow_private=True))
    assert partner.api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks"}).status_code == 201


def test_the_address_is_checked_again_at_delivery(partner, db, settings_now, receiver):
    """Saved while allowed (or while the name pointed outside); refused when sending."""
    endpoint = register(partner.api, url="https://127.0.0.1/hooks")
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    strict_deliverer = Deliverer(db, dataclasses.replace(settings_now, webhooks_allow_private=False))
    assert strict_deliverer.deliver(delivery.id) == "pending"
    assert len(receiver.calls) == 0
    (after,) = deliveries(db, endpoint["id"])
    assert after.attempts == 1 and "refused" in after.last_error and after.last_status_code is None


PUBLIC = "93.184.216.34"  # a global address: what the rebinding name answers first


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.server.seen.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    """A real receiver on 127.0.0.1: what a rebinding name's second answer points at."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def rebinding(monkeypatch):
    """rebind.partner.test resolves to PUBLIC once, then to 127.0.0.1 (a DNS rebinding
    server's answers); other names resolve as usual. Returns the hosts connected to."""
    real_lookup, real_connect = socket.getaddrinfo, urllib3.util.connection.create_connection
    answers, connected = [PUBLIC], []

    def lookup(host, port, *args, **kwargs):
        if host == "rebind.partner.test":
            address = answers.pop() if answers else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        return real_lookup(host, port, *args, **kwargs)

    def connect(address, *args, **kwargs):
        connected.append(address[0])
        if address[0] == PUBLIC:  # unroutable from here, whatever the machine's network
            raise ConnectionRefusedError(111, "Connection refused")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", connect)
    return connected


def _strict_http(db, settings_now) -> Deliverer:
    return Deliverer(db, dataclasses.replace(settings_now, webhooks_allow_private=False, webhooks_allow_http=True))


def test_a_rebinding_name_cannot_send_the_delivery_inside(partner, db, settings_now, local_server, rebinding):
    endpoint = register(partner.api, url=f"http://rebind.partner.test:{local_server.server_port}/hooks")
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    assert _strict_http(db, settings_now).deliver(delivery.id) == "pending"
    # The checked address was the one connected to; the second answer was never asked for.
    assert local_server.seen == [] and rebinding == [PUBLIC]
    (after,) = deliveries(db, endpoint["id"])
    assert (after.last_error, after.last_status_code) == ("connect failed", None)
    attempts = partner.api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"][0]["attempt_log"]
    assert [a["error"] for a in attempts] == ["connect failed"]


def test_a_pinned_delivery_keeps_the_name_in_the_host_header(partner, db, settings_now, local_server, monkeypatch):
    port = local_server.server_port
    real_lookup, real_connect = socket.getaddrinfo, urllib3.util.connection.create_connection
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, p, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC, p))
    ] if host == "hooks.partner.test" else real_lookup(host, p, *a, **k))
    connected = []

    def connect(address, *args, **kwargs):  # PUBLIC stands for the local receiver
        connected.append(address)
        return real_connect(("127.0.0.1", address[1]), *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", connect)
    endpoint = register(partner.api, url=f"http://hooks.partner.test:{port}/hooks")
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    assert _strict_http(db, settings_now).deliver(delivery.id) == "succeeded"
    assert connected == [(PUBLIC, port)]
    ((host, body),) = local_server.seen
    assert host == f"hooks.partner.test:{port}" and json.loads(body)["type"] == "tier.changed"


def test_https_to_a_pinned_address_keeps_the_name_for_sni_and_the_certificate():
    request = requests.Request("POST", "https://hooks.partner.test/hooks").prepare()
    request.pinned_address = PUBLIC
    host, pool = _PinnedAdapter().build_connection_pool_key_attributes(request, True)
    assert (host["host"], pool["server_hostname"], pool["assert_hostname"], pool["cert_reqs"]) == (
        PUBLIC, "hooks.partner.test", "hooks.partner.test", "CERT_REQUIRED")


def test_a_dead_endpoint_opens_its_breaker(partner, db, settings_now, receiver):
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=502)
    for _ in range(3):
        emit(db, partner)
    first, second, third = deliveries(db, endpoint["id"])
    deliverer = Deliverer(db, dataclasses.replace(settings_now, webhooks_breaker_failures=2))
    assert [deliverer.deliver(first.id), deliverer.deliver(second.id)] == ["pending", "pending"]
    assert deliverer.deliver(third.id) == "paused" and len(receiver.calls) == 2
    paused = deliveries(db, endpoint["id"])[2]
    assert paused.attempts == 0 and paused.lease_until is None
    assert message(db, third.id).available_at == paused.next_attempt_at > utcnow()


def test_tenancy(partner, other_partner, ops, db, deliverer, receiver):
    mine = register(partner.api)
    receiver.add(responses.POST, URL, status=500)
    emit(db, partner)
    (delivery,) = deliveries(db, mine["id"])
    deliverer.deliver(delivery.id)

    other = other_partner.api
    assert_problem(other.get(f"/v1/webhook-endpoints/{mine['id']}"), 404, "webhook-endpoint-not-found")
    assert_problem(other.get(f"/v1/webhook-endpoints/{mine['id']}/deliveries"), 404, "webhook-endpoint-not-found")
    assert_problem(other.post(f"/v1/webhook-endpoints/{mine['id']}/rotate-secret"), 404, "webhook-endpoint-not-found")
    assert_problem(other.post(f"/v1/webhook-deliveries/{delivery.id}/replay"), 404, "webhook-delivery-not-found")
    assert_problem(other.http.delete(f"/v1/webhook-endpoints/{mine['id']}", headers=other.headers), 404,
                   "webhook-endpoint-not-found")
    assert mine["id"] not in {e["id"] for e in other.get("/v1/webhook-endpoints").json()["items"]}
    assert_problem(other.post("/v1/webhook-endpoints", {"url": URL, "partner": partner.code}), 404,
                   "partner-not-found")

    # Ops see and manage every partner's, and name the partner when registering one.
    assert ops.get(f"/v1/webhook-endpoints/{mine['id']}").json()["partner"] == partner.code
    assert ops.get(f"/v1/webhook-endpoints/{mine['id']}/deliveries").json()["items"][0]["id"] == str(delivery.id)
    assert_problem(ops.post("/v1/webhook-endpoints", {"url": URL}), 422, "partner-required")
    for_other = ops.post("/v1/webhook-endpoints", {"url": URL, "partner": other_partner.code})
    assert for_other.status_code == 201 and for_other.json()["partner"] == other_partner.code
    assert for_other.json()["id"] in {e["id"] for e in other.get("/v1/webhook-endpoints").json()["items"]}


def test_endpoints_list_pages(partner):
    made = [register(partner.api, url=f"{URL}/{n}")["id"] for n in range(3)]
    first = partner.api.get("/v1/webhook-endpoints", limit=2).json()
    rest = partner.api.get("/v1/webhook-endpoints", limit=2, cursor=first["next_cursor"]).json()
    assert [e["id"] for e in first["items"] + rest["items"]] == made[::-1] and rest["next_cursor"] is None


def test_ops_list_endpoints_and_replay_from_the_command_line(partner, db, deliverer, receiver, settings, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import main

    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    endpoint = register(partner.api)
    receiver.add(responses.POST, URL, status=500)
    emit(db, partner)
    (delivery,) = deliveries(db, endpoint["id"])
    deliverer.deliver(delivery.id)

    listed = CliRunner().invoke(main, ["webhooks", "endpoints", "--json"], catch_exceptions=False)
    (row,) = [r for r in json.loads(listed.output) if r["id"] == endpoint["id"]]
    assert (row["enabled"], row["pending"], row["failed"]) == (True, 1, 0)
    replayed = CliRunner().invoke(main, ["webhooks", "replay", str(delivery.id)], catch_exceptions=False)
    assert replayed.exit_code == 0 and "queued" in replayed.output
    assert message(db, delivery.id).available_at <= utcnow()
    refused = CliRunner().invoke(main, ["webhooks", "replay", str(uuid.uuid4())])
    assert refused.exit_code == 1 and "no webhook delivery" in refused.output
