"""The Tango Card RaaS v2 connector against recorded-shape responses (swagger of
tangocard/tangocard-raas-client-starter; example order from Tango's generated SDK tests)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses
from urllib3.exceptions import NewConnectionError, ProtocolError

from hub.rewards.providers import CatalogUnavailable, OrderRequest, Recipient, Status, WebhookRejected
from partners.tango.connector import TangoProvider
from tests.unit.conftest import assert_timeouts

BASE = "https://integration-api.tangocard.com/raas/v2"
SECRET = "whsec-test"
CONFIG = {"base_url": BASE, "platform_name": "acme", "platform_key": "k3y", "customer_identifier": "cust1",
          "account_identifier": "acct1", "timeout_connect": "2", "timeout_read": "7", "webhook_secret": SECRET}
REF = "rdm0123456789abcdef0123456789abcdef"
ORDER = OrderRequest(REF, "U561593", 2500, "USD", Recipient("jo@example.com", "Jo Doe"))
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def tango_order(status="COMPLETE", **extra):
    order = {
        "referenceOrderID": "RA180426-1401-64", "customerIdentifier": "cust1", "accountIdentifier": "acct1",
        "accountNumber": "A32386768", "amountCharged": {"value": 25, "currencyCode": "USD", "total": 25},
        "denomination": {"value": 25, "currencyCode": "USD"}, "utid": "U561593", "rewardName": "Reward Link",
        "sender": {"firstName": "", "lastName": "", "email": ""},
        "recipient": {"email": "jo@example.com", "firstName": "Jo", "lastName": ""},
        "sendEmail": False, "status": status, "createdAt": "2018-04-26T20:08:59.624Z", "externalRefID": REF,
        "reward": {
            "credentials": {"Redemption Link": "https://sandbox.rewardlink.io/r/1/ed0HtzSblNV6oFddNnnlf68eXzGQoREvcxwxu_Vi5Wk"},
            "credentialList": [{"label": "Redemption Link", "type": "url", "credentialType": "redemptionUrl",
                                "value": "https://sandbox.rewardlink.io/r/1/ed0HtzSblNV6oFddNnnlf68eXzGQoREvcxwxu_Vi5Wk"}],
            "redemptionInstructions": "<p>Click on the redemption link above.</p>",
        },
    }
    return {**order, **extra}


def tango_error(code, phrase, key, message):
    return {"timestamp": "2026-03-01T12:00:00.000Z", "requestId": "b6c5b6e5-1c7d", "path": "/raas/v2/orders",
            "httpCode": code, "httpPhrase": phrase, "i18nKey": key, "message": message}

TIMEOUTS = (2.0, 7.0)


@pytest.fixture
def tango():
    return TangoProvider(CONFIG)


def test_a_new_order_is_placed_with_tangos_shape_and_delivers_the_card(tango, mocked):
    mocked.post(f"{BASE}/orders", json=tango_order(), status=201)
    outcome = tango.place_order(ORDER)
    assert outcome.status is Status.FULFILLED
    assert outcome.provider_order_id == "RA180426-1401-64"
    assert outcome.delivery["url"].startswith("https://sandbox.rewardlink.io/r/1/")
    sent = json.loads(mocked.calls[0].request.body)
    assert sent == {"accountIdentifier": "acct1", "customerIdentifier": "cust1", "amount": 25.0, "utid": "U561593",
                    "recipient": {"email": "jo@example.com", "firstName": "Jo"}, "sendEmail": False,
                    "externalRefID": REF}
    assert mocked.calls[0].request.headers["Authorization"] == "Basic " + base64.b64encode(b"acme:k3y").decode()
    assert_timeouts(mocked, TIMEOUTS)


def test_card_number_and_pin_come_from_the_credential_list(tango, mocked):
    reward = {"credentials": {"Card Number": "6006491572009071013", "PIN": "4381"},
              "credentialList": [{"label": "Card Number", "value": "6006491572009071013", "credentialType": "cardNumber"},
                                 {"label": "PIN", "value": "4381", "credentialType": "cardPin"},
                                 {"label": "Expiration Date", "value": "2029-06-14T21:59:59Z",
                                  "credentialType": "expirationDate"}]}
    mocked.post(f"{BASE}/orders", json=tango_order(reward=reward), status=201)
    outcome = tango.place_order(ORDER)
    assert dict(outcome.delivery) == {"code": "6006491572009071013", "pin": "4381", "expires": "2029-06-14T21:59:59Z"}


def test_200_is_the_existing_order_for_this_external_ref_and_counts_as_placed(tango, mocked):
    mocked.post(f"{BASE}/orders", json=tango_order(), status=200)
    outcome = tango.place_order(ORDER)
    assert outcome.status is Status.FULFILLED and outcome.provider_order_id == "RA180426-1401-64"


def test_an_order_under_review_is_pending(tango, mocked):
    mocked.post(f"{BASE}/orders", json=tango_order("PENDING", reward={"credentials": {}, "credentialList": []}), status=201)
    outcome = tango.place_order(ORDER)
    assert outcome.status is Status.PENDING and outcome.provider_order_id == "RA180426-1401-64"


@pytest.mark.parametrize("code, phrase, key", [
    (402, "Payment Required", "RAAS:ACCT:INSUFFICIENT_FUNDS"),
    (400, "Bad Request", "RAAS:ORDR:VALIDATION"),
    (401, "Unauthorized", "RAAS:AUTH:UNAUTHORIZED"),
    (403, "Forbidden", "RAAS:AUTH:FORBIDDEN"),
])
def test_a_4xx_refusal_is_a_definitive_failure(tango, mocked, code, phrase, key):
    mocked.post(f"{BASE}/orders", json=tango_error(code, phrase, key, "refused"), status=code)
    outcome = tango.place_order(ORDER)
    assert outcome.status is Status.FAILED
    assert key in outcome.detail and str(code) in outcome.detail


@pytest.mark.parametrize("code", [500, 502, 503, 504, 409])
def test_5xx_may_have_placed_the_order(tango, mocked, code):
    mocked.post(f"{BASE}/orders", json=tango_error(code, "Error", "RAAS:SYSTEM", "boom"), status=code)
    assert tango.place_order(ORDER).status is Status.UNKNOWN


def test_429_asks_to_come_back_after_retry_after(tango, mocked):
    mocked.post(f"{BASE}/orders", json=tango_error(429, "Too Many Requests", "RAAS:RATE", "slow down"),
                status=429, headers={"Retry-After": "2"})
    outcome = tango.place_order(ORDER)
    assert outcome.status is Status.RETRY and outcome.retry_after == 2.0


@pytest.mark.parametrize("error, status", [
    (requests.ReadTimeout("read timed out"), Status.UNKNOWN),
    (requests.ConnectTimeout("connect timed out"), Status.RETRY),
    (requests.ConnectionError(NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")),
     Status.RETRY),
    (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))), Status.UNKNOWN),
    (requests.ConnectionError("something broke"), Status.UNKNOWN),  # unknown cause: assume it was sent
    (requests.exceptions.ChunkedEncodingError("half a body"), Status.UNKNOWN),
])
def test_no_answer_is_retry_only_when_surely_never_sent(tango, mocked, error, status):
    mocked.post(f"{BASE}/orders", body=error)
    assert tango.place_order(ORDER).status is status


def test_an_unreadable_success_is_unknown(tango, mocked):
    mocked.post(f"{BASE}/orders", body="<html>gateway</html>", status=201)
    assert tango.place_order(ORDER).status is Status.UNKNOWN


def test_lookup_lists_by_external_ref_then_fetches_the_card(tango, mocked):
    listed = {k: v for k, v in tango_order().items() if k != "reward"}
    mocked.get(f"{BASE}/orders", json={"orders": [listed], "page": {"number": 0, "elementsPerBlock": 10,
                                                                     "resultCount": 1, "totalCount": 1}},
               match=[responses.matchers.query_param_matcher(
                   {"externalRefID": REF, "accountIdentifier": "acct1", "customerIdentifier": "cust1"})])
    mocked.get(f"{BASE}/orders/RA180426-1401-64", json=tango_order())
    outcome = tango.lookup(REF)
    assert outcome.status is Status.FULFILLED and outcome.delivery["url"]
    assert len(mocked.calls) == 2
    assert_timeouts(mocked, TIMEOUTS)


def test_lookup_of_an_unknown_reference_is_not_found(tango, mocked):
    mocked.get(f"{BASE}/orders", json={"orders": [], "page": {"number": 0, "elementsPerBlock": 10,
                                                              "resultCount": 0, "totalCount": 0}})
    assert tango.lookup(REF).status is Status.NOT_FOUND


def test_lookup_of_a_pending_order_needs_no_second_call(tango, mocked):
    listed = {k: v for k, v in tango_order("PENDING").items() if k != "reward"}
    mocked.get(f"{BASE}/orders", json={"orders": [listed], "page": {}})
    assert tango.lookup(REF).status is Status.PENDING
    assert len(mocked.calls) == 1


def test_lookup_of_a_complete_order_whose_card_did_not_come_back_is_pending(tango, mocked):
    listed = {k: v for k, v in tango_order().items() if k != "reward"}
    mocked.get(f"{BASE}/orders", json={"orders": [listed], "page": {}})
    mocked.get(f"{BASE}/orders/RA180426-1401-64", body=requests.ReadTimeout("slow"))
    outcome = tango.lookup(REF)
    assert outcome.status is Status.PENDING and outcome.provider_order_id == "RA180426-1401-64"


@pytest.mark.parametrize("answer, status", [
    ({"status": 401, "json": tango_error(401, "Unauthorized", "RAAS:AUTH", "bad key")}, Status.UNKNOWN),
    ({"status": 500, "json": {}}, Status.UNKNOWN),
    ({"status": 429, "json": {}, "headers": {"Retry-After": "1"}}, Status.RETRY),
    ({"body": requests.ConnectTimeout("no route")}, Status.RETRY),
])
def test_a_lookup_that_is_not_answered_never_says_failed(tango, mocked, answer, status):
    mocked.get(f"{BASE}/orders", **answer)
    assert tango.lookup(REF).status is status


def test_catalog_maps_fixed_and_variable_items(tango, mocked):
    mocked.get(f"{BASE}/catalogs", json={"catalogName": "Acme", "brands": [
        {"brandKey": "B048297", "brandName": "Starbucks", "shortDescription": "Coffee", "status": "active",
         "items": [{"utid": "U157189", "rewardName": "Starbucks $10", "currencyCode": "USD", "valueType": "FIXED_VALUE",
                    "faceValue": 10, "status": "active", "countries": ["US"]}]},
        {"brandKey": "B916708", "brandName": "Amazon.com", "status": "active",
         "items": [{"utid": "U666425", "rewardName": "Amazon.com Gift Card", "currencyCode": "USD",
                    "valueType": "VARIABLE_VALUE", "minValue": 0.01, "maxValue": 2000, "status": "active"},
                   {"utid": "U000001", "rewardName": "Gone", "currencyCode": "USD", "valueType": "FIXED_VALUE",
                    "faceValue": 5, "status": "inactive"}]},
    ]})
    items = {i.product: i for i in tango.catalog()}
    assert set(items) == {"U157189", "U666425"}
    assert items["U157189"].denominations == (1000,) and items["U157189"].min_minor is None
    assert (items["U666425"].min_minor, items["U666425"].max_minor) == (1, 200000)
    assert_timeouts(mocked, TIMEOUTS)


def test_catalog_failure_is_not_an_empty_catalog(tango, mocked):
    mocked.get(f"{BASE}/catalogs", status=503)
    with pytest.raises(CatalogUnavailable):
        tango.catalog()


def signed_event(status="FAILED", occurred=NOW, secret=SECRET):
    body = json.dumps({
        "eventId": "e5b1f6c2-0b3f-4c39-a9a4-1f7d7e1b2a10", "revision": 765, "category": "ORDER",
        "eventType": "AsyncOrderStatus", "eventOccurredAt": occurred.isoformat().replace("+00:00", "Z"),
        "eventData": {"externalRefID": REF, "status": status, "referenceOrderID": "RA180426-1401-64",
                      "accountIdentifier": "acct1", "customerIdentifier": "cust1"},
    }).encode()
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-Signed-Payload": signature}, body


def test_a_signed_webhook_names_our_reference(tango):
    headers, body = signed_event("FAILED")
    event = tango.verify_webhook(headers, body, NOW + timedelta(seconds=30))
    assert event.event_id == "e5b1f6c2-0b3f-4c39-a9a4-1f7d7e1b2a10" and event.reference == REF
    assert event.outcome.status is Status.FAILED and event.outcome.provider_order_id == "RA180426-1401-64"
    headers, body = signed_event("SUCCESSFUL")
    assert tango.verify_webhook({k.lower(): v for k, v in headers.items()}, body, NOW).outcome.status is Status.PENDING


@pytest.mark.parametrize("tamper", ["wrong secret", "edited body", "no signature", "stale", "future"])
def test_a_forged_or_stale_webhook_is_rejected(tango, tamper):
    occurred = {"stale": NOW - timedelta(minutes=6), "future": NOW + timedelta(minutes=6)}.get(tamper, NOW)
    headers, body = signed_event(occurred=occurred, secret="guess" if tamper == "wrong secret" else SECRET)
    if tamper == "edited body":
        body = body.replace(b"FAILED", b"SUCCESSFUL")
    if tamper == "no signature":
        headers.pop("X-Signed-Payload")
    with pytest.raises(WebhookRejected):
        tango.verify_webhook(headers, body, NOW)
