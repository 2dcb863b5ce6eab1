"""The GlobalGiving connector: the documented donation request (query api_key/api_token/is_test,
{"donation": {...}} body) and projects list, and the assumed answer and lookup (see README)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests
from responses import matchers
from urllib3.exceptions import NewConnectionError

from hub.rewards.providers import CatalogUnavailable, OrderRequest, Recipient, Status, WebhookRejected
from partners.globalgiving.connector import GlobalGivingProvider
from tests.unit.conftest import assert_timeouts

BASE = "https://api.globalgiving.org/api"
CONFIG = {"base_url": BASE, "api_key": "key-1", "api_token": "token-1", "is_test": "true",
          "timeout_connect": "1", "timeout_read": "6"}
REF = "rdmffeeddccbbaa99887766554433221100"
ORDER = OrderRequest(REF, "1883", 2500, "USD", Recipient("jo@example.com", "Jo Doe"))
DONATIONS = f"{BASE}/secure/givingservice/donations"
SECURE = {"api_key": "key-1", "api_token": "token-1", "is_test": "true"}


def donation(status="complete", receipt=True):
    return {"donation": {
        "refcode": REF, "transactionId": REF, "isTest": True, "status": status,
        "receipt": {"receiptNumber": "73510001", "amount": "25.00", "currencyCode": "USD",
                    "donationDate": "2026-03-01T12:00:00.000Z",
                    "project": {"id": 1883, "title": "Clean Water", "organization": {"name": "Water for Good"}}}
        if receipt else None,
    }}

TIMEOUTS = (1.0, 6.0)


@pytest.fixture
def gg():
    return GlobalGivingProvider(CONFIG)


def test_a_donation_is_submitted_and_its_receipt_delivered(gg, mocked):
    mocked.post(DONATIONS, json=donation(), match=[matchers.query_param_matcher(SECURE)])
    outcome = gg.place_order(ORDER)
    assert outcome.status is Status.FULFILLED and outcome.provider_order_id == "73510001"
    assert dict(outcome.delivery) == {"receipt_id": "73510001", "amount": "25.00", "currency": "USD",
                                      "charity": "Water for Good"}
    assert json.loads(mocked.calls[0].request.body) == {"donation": {
        "refcode": REF, "transactionId": REF, "email": "jo@example.com", "amount": 25.0, "currencyCode": "USD",
        "project": {"id": 1883}, "signupForGGNewsletter": False, "signupForCharityNewsletter": False}}
    assert_timeouts(mocked, TIMEOUTS)


def test_is_test_is_only_sent_when_configured(mocked):
    mocked.post(DONATIONS, json=donation(),
                match=[matchers.query_param_matcher({"api_key": "key-1", "api_token": "token-1"})])
    assert GlobalGivingProvider({**CONFIG, "is_test": "false"}).place_order(ORDER).status is Status.FULFILLED


def test_a_repeated_refcode_returns_the_original_receipt(gg, mocked):
    mocked.post(DONATIONS, json=donation())
    mocked.post(DONATIONS, json=donation())
    assert gg.place_order(ORDER) == gg.place_order(ORDER)


def test_a_slow_donation_is_pending(gg, mocked):
    mocked.post(DONATIONS, json=donation("pending", receipt=False), status=202)
    assert gg.place_order(ORDER).status is Status.PENDING


@pytest.mark.parametrize("code", [400, 401, 403, 422])
def test_a_4xx_refusal_is_a_definitive_failure(gg, mocked, code):
    mocked.post(DONATIONS, json={"error": {"code": "donation_declined", "message": "declined"}}, status=code)
    outcome = gg.place_order(ORDER)
    assert outcome.status is Status.FAILED and "donation_declined" in outcome.detail


@pytest.mark.parametrize("answer, status", [
    ({"status": 500, "json": {"error": {"code": "error", "message": "boom"}}}, Status.UNKNOWN),
    ({"status": 503, "body": "Service Unavailable"}, Status.UNKNOWN),
    ({"status": 429, "json": {}, "headers": {"Retry-After": "Sun, 01 Mar 2026 12:00:05 GMT"}}, Status.RETRY),
    ({"body": requests.ReadTimeout("read timed out")}, Status.UNKNOWN),
    ({"body": requests.ConnectTimeout("connect timed out")}, Status.RETRY),
    ({"body": requests.ConnectionError(NewConnectionError(None, "[Errno 111] Connection refused"))}, Status.RETRY),
    ({"body": requests.ConnectionError("('Connection aborted.', RemoteDisconnected())")}, Status.UNKNOWN),
    ({"status": 200, "body": "not json"}, Status.UNKNOWN),
])
def test_transport_and_server_trouble(gg, mocked, answer, status):
    mocked.post(DONATIONS, **answer)
    assert gg.place_order(ORDER).status is status


def test_credentials_in_the_query_never_reach_the_outcome(gg, mocked):
    url = f"{DONATIONS}?api_key=key-1&api_token=token-1&is_test=true"
    mocked.post(DONATIONS, body=requests.ConnectionError(
        f"HTTPSConnectionPool(host='api.globalgiving.org', port=443): Max retries exceeded with url: {url}"))
    detail = gg.place_order(ORDER).detail
    assert "token-1" not in detail and "key-1" not in detail and "api_token=***" in detail


def test_lookup_by_refcode_finds_the_receipt(gg, mocked):
    mocked.get(f"{DONATIONS}/{REF}", json=donation(), match=[matchers.query_param_matcher(SECURE)])
    assert gg.lookup(REF).status is Status.FULFILLED
    assert_timeouts(mocked, TIMEOUTS)


def test_lookup_says_not_found_only_when_the_donation_is_known_missing(gg, mocked):
    mocked.get(f"{DONATIONS}/{REF}", json={"error": {"code": "donation_not_found", "message": "no"}}, status=404)
    assert gg.lookup(REF).status is Status.NOT_FOUND


@pytest.mark.parametrize("answer, status", [
    ({"status": 404, "body": "<html>Not Found</html>"}, Status.UNKNOWN),  # no such route: we know nothing
    ({"status": 401, "json": {"error": {"code": "unauthorized"}}}, Status.UNKNOWN),
    ({"status": 502, "body": ""}, Status.UNKNOWN),
    ({"body": requests.ConnectTimeout("down")}, Status.RETRY),
])
def test_a_lookup_that_is_not_answered_never_says_failed_or_not_found(gg, mocked, answer, status):
    mocked.get(f"{DONATIONS}/{REF}", **answer)
    assert gg.lookup(REF).status is status


def test_catalog_lists_active_projects(gg, mocked):
    mocked.get(f"{BASE}/public/projectservice/all/projects/active", json={"projects": {
        "hasNext": False, "numberFound": 2, "project": [
            {"id": 1883, "title": "Clean Water", "organization": {"name": "Water for Good"},
             "donationOptions": {"donationOption": [{"amount": 25, "description": "pump"},
                                                    {"amount": 10, "description": "filter"}]}},
            {"id": 41002, "title": "Relief Fund", "organization": {"name": "GlobalGiving Foundation"}},
        ]}}, match=[matchers.query_param_matcher({"api_key": "key-1"})])
    water, relief = gg.catalog()
    assert (water.product, water.denominations, water.description) == ("1883", (1000, 2500), "Water for Good")
    assert (relief.denominations, relief.min_minor) == ((), 101)


def test_catalog_failure_raises(gg, mocked):
    mocked.get(f"{BASE}/public/projectservice/all/projects/active", status=401)
    with pytest.raises(CatalogUnavailable):
        gg.catalog()


def test_globalgiving_has_no_webhooks(gg):
    with pytest.raises(WebhookRejected):
        gg.verify_webhook({}, b"{}", datetime.now(timezone.utc))
