"""The Tremendous API v2 connector against responses shaped like Tremendous's OpenAPI models
(tremendous-rewards/tremendous-python) and its documented webhook body."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses
from urllib3.exceptions import NewConnectionError

from hub.rewards.providers import CatalogUnavailable, Kind, OrderRequest, Recipient, Status, WebhookRejected
from partners.tremendous.connector import TremendousProvider
from tests.unit.conftest import assert_timeouts

BASE = "https://testflight.tremendous.com/api/v2"
SECRET = "tremendous-private-key"
CONFIG = {"base_url": BASE, "api_key": "TEST_abc", "funding_source_id": "balance",
          "timeout_connect": "1.5", "timeout_read": "4", "webhook_secret": SECRET}
REF = "rdm00112233445566778899aabbccddeeff"
ORDER = OrderRequest(REF, "OKMHM2X2OHYV", 2550, "USD", Recipient("jo@example.com", "Jo Doe"))
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
LINK = "https://testflight.tremendous.com/rewards/payout/Q3P9H2KC7ZQ0"


def tremendous_order(status="EXECUTED", delivery_status="SUCCEEDED", link=LINK):
    delivery = {"method": "LINK", "status": delivery_status}
    if link:
        delivery["link"] = link
    return {
        "id": "GMTB5GDHWQPR", "external_id": REF, "campaign_id": None, "created_at": "2026-03-01T11:59:58.000Z",
        "status": status, "channel": "API", "payment": {"subtotal": 25.5, "total": 25.5, "fees": 0.0},
        "rewards": [{"id": "OVSVFMWVD0PA", "order_id": "GMTB5GDHWQPR", "created_at": "2026-03-01T11:59:58.000Z",
                     "value": {"denomination": 25.5, "currency_code": "USD"},
                     "recipient": {"name": "Jo Doe", "email": "jo@example.com"}, "delivery": delivery}],
    }

TIMEOUTS = (1.5, 4.0)


@pytest.fixture
def tremendous():
    return TremendousProvider(CONFIG)


def test_an_order_is_placed_for_a_link_and_the_link_is_delivered(tremendous, mocked):
    mocked.post(f"{BASE}/orders", json={"order": tremendous_order()}, status=201)
    outcome = tremendous.place_order(ORDER)
    assert outcome.status is Status.FULFILLED and outcome.provider_order_id == "GMTB5GDHWQPR"
    assert dict(outcome.delivery) == {"url": LINK, "reward_id": "OVSVFMWVD0PA"}
    request = mocked.calls[0].request
    assert json.loads(request.body) == {
        "external_id": REF, "payment": {"funding_source_id": "balance"},
        "reward": {"products": ["OKMHM2X2OHYV"], "value": {"denomination": 25.5, "currency_code": "USD"},
                   "recipient": {"name": "Jo Doe", "email": "jo@example.com"}, "delivery": {"method": "LINK"}},
    }
    assert request.headers["Authorization"] == "Bearer TEST_abc"
    assert_timeouts(mocked, TIMEOUTS)


def test_a_repeated_external_id_answers_201_with_the_original(tremendous, mocked):
    mocked.post(f"{BASE}/orders", json={"order": tremendous_order()}, status=201)
    mocked.post(f"{BASE}/orders", json={"order": tremendous_order()}, status=201)
    first, again = tremendous.place_order(ORDER), tremendous.place_order(ORDER)
    assert first == again and again.status is Status.FULFILLED


@pytest.mark.parametrize("status", ["PENDING APPROVAL", "PENDING INTERNAL PAYMENT APPROVAL", "CART"])
def test_202_accepted_is_pending(tremendous, mocked, status):
    mocked.post(f"{BASE}/orders", json={"order": tremendous_order(status, "PENDING", None)}, status=202)
    outcome = tremendous.place_order(ORDER)
    assert outcome.status is Status.PENDING and outcome.provider_order_id == "GMTB5GDHWQPR"


def test_202_without_a_readable_body_is_still_pending(tremendous, mocked):
    mocked.post(f"{BASE}/orders", body="", status=202)
    assert tremendous.place_order(ORDER).status is Status.PENDING


def test_an_order_that_failed_is_failed(tremendous, mocked):
    mocked.post(f"{BASE}/orders", json={"order": tremendous_order("FAILED", "FAILED", None)}, status=201)
    assert tremendous.place_order(ORDER).status is Status.FAILED


@pytest.mark.parametrize("code, message", [
    (400, "Invalid products"), (401, "API key is invalid"), (402, "Insufficient funds"), (422, "Unprocessable"),
])
def test_a_4xx_refusal_is_a_definitive_failure(tremendous, mocked, code, message):
    mocked.post(f"{BASE}/orders", json={"errors": {"message": message, "payload": {"reward": ["bad"]}}}, status=code)
    outcome = tremendous.place_order(ORDER)
    assert outcome.status is Status.FAILED and message in outcome.detail


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_may_have_placed_the_order(tremendous, mocked, code):
    mocked.post(f"{BASE}/orders", json={"errors": {"message": "Internal error"}}, status=code)
    assert tremendous.place_order(ORDER).status is Status.UNKNOWN


@pytest.mark.parametrize("headers, after", [({"Retry-After": "3"}, 3.0), ({}, None)])
def test_429_is_a_retry(tremendous, mocked, headers, after):
    mocked.post(f"{BASE}/orders", json={"errors": {"message": "Rate limit exceeded"}}, status=429, headers=headers)
    outcome = tremendous.place_order(ORDER)
    assert outcome.status is Status.RETRY and outcome.retry_after == after


@pytest.mark.parametrize("error, status", [
    (requests.ReadTimeout("read timed out"), Status.UNKNOWN),
    (requests.ConnectTimeout("connect timed out"), Status.RETRY),
    (requests.ConnectionError(NewConnectionError(None, "[Errno 111] Connection refused")), Status.RETRY),
    (requests.ConnectionError("Connection reset by peer"), Status.UNKNOWN),
])
def test_no_answer_is_retry_only_when_surely_never_sent(tremendous, mocked, error, status):
    mocked.post(f"{BASE}/orders", body=error)
    assert tremendous.place_order(ORDER).status is status


def test_lookup_by_external_id_fetches_the_link_from_the_reward(tremendous, mocked):
    mocked.get(f"{BASE}/orders", json={"orders": [tremendous_order(link=None)], "total_count": 1},
               match=[responses.matchers.query_param_matcher({"external_id": REF})])
    mocked.get(f"{BASE}/rewards/OVSVFMWVD0PA", json={"reward": tremendous_order()["rewards"][0]})
    outcome = tremendous.lookup(REF)
    assert outcome.status is Status.FULFILLED and outcome.delivery["url"] == LINK
    assert_timeouts(mocked, TIMEOUTS)


def test_lookup_of_an_unknown_reference_is_not_found(tremendous, mocked):
    mocked.get(f"{BASE}/orders", json={"orders": [], "total_count": 0})
    assert tremendous.lookup(REF).status is Status.NOT_FOUND


def test_lookup_of_an_order_awaiting_approval_is_pending(tremendous, mocked):
    mocked.get(f"{BASE}/orders", json={"orders": [tremendous_order("PENDING APPROVAL", "PENDING", None)]})
    assert tremendous.lookup(REF).status is Status.PENDING
    assert len(mocked.calls) == 1


def test_lookup_when_the_reward_cannot_be_fetched_is_pending(tremendous, mocked):
    mocked.get(f"{BASE}/orders", json={"orders": [tremendous_order(link=None)]})
    mocked.get(f"{BASE}/rewards/OVSVFMWVD0PA", status=503)
    assert tremendous.lookup(REF).status is Status.PENDING


@pytest.mark.parametrize("code, status", [(401, Status.UNKNOWN), (404, Status.UNKNOWN), (500, Status.UNKNOWN),
                                          (429, Status.RETRY)])
def test_a_lookup_that_is_not_answered_never_says_failed(tremendous, mocked, code, status):
    mocked.get(f"{BASE}/orders", json={"errors": {"message": "nope"}}, status=code)
    assert tremendous.lookup(REF).status is status


def test_catalog_lists_products_with_their_value_bands(tremendous, mocked):
    mocked.get(f"{BASE}/products", json={"products": [
        {"id": "OKMHM2X2OHYV", "name": "Amazon.com", "description": "Gift card", "category": "merchant_card",
         "disclosure": "", "skus": [{"min": 5, "max": 100}, {"min": 100, "max": 2000}], "currency_codes": ["USD"],
         "countries": [{"abbr": "US"}], "images": []},
        {"id": "ESRNAD533W5A", "name": "Save the Children", "description": "Charity", "category": "charity",
         "disclosure": "", "skus": [{"min": 1, "max": 10000}], "currency_codes": ["EUR", "USD"],
         "countries": [{"abbr": "US"}], "images": []},
    ]})
    amazon, charity = tremendous.catalog()
    assert (amazon.product, amazon.min_minor, amazon.max_minor, amazon.kind) == ("OKMHM2X2OHYV", 500, 200000, Kind.GIFT_CARD)
    assert (charity.kind, charity.currency) == (Kind.DONATION, "USD")


def test_catalog_failure_raises(tremendous, mocked):
    mocked.get(f"{BASE}/products", body=requests.ConnectTimeout("down"))
    with pytest.raises(CatalogUnavailable):
        tremendous.catalog()


def signed(event="ORDERS.FAILED", created=NOW, secret=SECRET, resource_type="orders"):
    body = json.dumps({
        "event": event, "uuid": "5ccc7bb1-7659-4e23-a407-77d8cd9c62f5",
        "created_utc": created.astimezone(timezone(timedelta(hours=-4))).isoformat(timespec="milliseconds"),
        "payload": {"resource": {"id": "GMTB5GDHWQPR", "type": resource_type}, "meta": {}},
    }).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Tremendous-Webhook-Signature": signature}, body


def test_a_signed_webhook_gives_its_uuid_and_the_order(tremendous):
    headers, body = signed()
    event = tremendous.verify_webhook(headers, body, NOW + timedelta(minutes=4))
    assert event.event_id == "5ccc7bb1-7659-4e23-a407-77d8cd9c62f5"
    assert event.outcome.status is Status.FAILED and event.outcome.provider_order_id == "GMTB5GDHWQPR"
    headers, body = signed("ORDERS.APPROVED")
    assert tremendous.verify_webhook(headers, body, NOW).outcome.status is Status.PENDING  # look it up
    headers, body = signed("CAMPAIGNS.CREATED", resource_type="campaigns")
    assert tremendous.verify_webhook(headers, body, NOW).outcome is None


@pytest.mark.parametrize("tamper", ["wrong secret", "edited body", "bare hex", "no signature", "stale"])
def test_a_forged_or_stale_webhook_is_rejected(tremendous, tamper):
    headers, body = signed(created=NOW - timedelta(minutes=10) if tamper == "stale" else NOW,
                           secret="guess" if tamper == "wrong secret" else SECRET)
    if tamper == "edited body":
        body = body.replace(b"ORDERS.FAILED", b"ORDERS.APPROVED")
    if tamper == "bare hex":
        headers["Tremendous-Webhook-Signature"] = headers["Tremendous-Webhook-Signature"].removeprefix("sha256=")
    if tamper == "no signature":
        headers = {}
    with pytest.raises(WebhookRejected):
        tremendous.verify_webhook(headers, body, NOW)
