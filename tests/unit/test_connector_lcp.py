"""The LCP hosted-program connector against recorded-shape responses (Points' lp-reference.md:
member validation, posting, transaction retry and reversal; plus our GET /Transactions)."""
from __future__ import annotations

import base64
import json

import pytest
import requests
import responses
from urllib3.exceptions import NewConnectionError, ProtocolError

from hub.exchange.hosted import HostedUnavailable, MemberCheck, RemoteStatus, factories
from partners.lcp.connector import LcpProgram
from tests.unit.conftest import assert_timeouts

BASE = "https://api.loyaltyprogram.example/lcp"
CONFIG = {"base_url": BASE, "username": "hub", "password": "s3cret", "pic": "HUBX",
          "timeout_connect": "2", "timeout_read": "7"}
TIMEOUTS = (2.0, 7.0)
REF = "xfr0123456789abcdef-debit"
MEMBER = "A1234567890"
TXN = "12345678"


@pytest.fixture
def lcp():
    return LcpProgram(CONFIG)


def answer(status, message=None, transaction_id=TXN):
    body = {"status": status, "transactionId": transaction_id}
    return {**body, "statusMessage": message} if message else body


def record(status="success", amount=-2000, reference=REF, transaction_id=TXN, message=None):
    """A transaction as our GET /Transactions lists it."""
    order_type = "REDEEM_DEBIT" if amount < 0 else "EXCHANGE_CREDIT"
    return {**answer(status, message, transaction_id), "amount": amount, "memberId": MEMBER,
            "order": {"orderType": order_type, "confirmationNumber": reference}, "reversedAmount": 0}


def lcp_errors(code, description, field=None):
    return {"errors": [{"code": code, "description": description, "field": field}]}


def sent(mocked, index=0):
    return json.loads(mocked.calls[index].request.body)


def lookup_of(mocked, *transactions, key="confirmationNumber", value=REF):
    mocked.get(f"{BASE}/Transactions", json={"transactions": list(transactions)},
               match=[responses.matchers.query_param_matcher({key: value})])


def test_the_registry_builds_the_connector_from_its_name():
    assert isinstance(factories()["lcp"](CONFIG), LcpProgram)


# Postings.

def test_a_debit_is_a_negative_redeem_debit_posting_with_our_reference(lcp, mocked):
    mocked.post(f"{BASE}/Posting", json=answer("success"))
    result = lcp.debit(MEMBER, 2000, REF)
    assert (result.status, result.transaction_id) == (RemoteStatus.SUCCESS, TXN)
    assert sent(mocked) == {"callback": f"urn:coalition-hub:posting:{REF}", "amount": -2000, "bonus": False,
                            "order": {"orderType": "REDEEM_DEBIT", "confirmationNumber": REF},
                            "pic": "HUBX", "memberId": MEMBER}
    assert mocked.calls[0].request.headers["Authorization"] == "Basic " + base64.b64encode(b"hub:s3cret").decode()
    assert_timeouts(mocked, TIMEOUTS)


def test_a_credit_is_a_positive_exchange_credit_posting(lcp, mocked):
    mocked.post(f"{BASE}/Posting", json=answer("success"))
    assert lcp.credit(MEMBER, 2000, REF).status is RemoteStatus.SUCCESS
    assert sent(mocked)["amount"] == 2000
    assert sent(mocked)["order"] == {"orderType": "EXCHANGE_CREDIT", "confirmationNumber": REF}
    assert_timeouts(mocked, TIMEOUTS)


@pytest.mark.parametrize("points", [0, -5, 1.5, True])
def test_points_must_be_a_positive_integer(lcp, mocked, points):
    for call in (lambda: lcp.debit(MEMBER, points, REF), lambda: lcp.credit(MEMBER, points, REF),
                 lambda: lcp.reversal(TXN, points, REF)):
        with pytest.raises(ValueError):
            call()
    assert not mocked.calls  # refused before anything is sent


@pytest.mark.parametrize("body, status", [
    (answer("success"), RemoteStatus.SUCCESS),
    (answer("failure", "Error: Insufficient balance"), RemoteStatus.FAILURE),
    (answer("pending"), RemoteStatus.PENDING),
    (answer("systemError", "Error: System unavailable"), RemoteStatus.UNKNOWN),
    (answer("reviewing"), RemoteStatus.UNKNOWN),  # a status new to us may be applied
    ({"transactionId": TXN}, RemoteStatus.UNKNOWN),
])
def test_the_posting_status_decides(lcp, mocked, body, status):
    mocked.post(f"{BASE}/Posting", json=body)
    result = lcp.debit(MEMBER, 2000, REF)
    assert result.status is status
    assert result.transaction_id == TXN  # kept for systemError: the retry needs it


def test_a_failure_carries_the_partners_message(lcp, mocked):
    mocked.post(f"{BASE}/Posting", json=answer("failure", "Error: Limit exceeded"))
    assert lcp.debit(MEMBER, 2000, REF).detail == "Error: Limit exceeded"


@pytest.mark.parametrize("code, body", [
    (400, lcp_errors("INVALID_FIELD", "amount must be a non-zero integer", "amount")),
    (401, lcp_errors("UNAUTHORIZED", "Basic authentication required")),
    (403, lcp_errors("FORBIDDEN", "not allowed")),
    (422, answer("failure", "Error: Unknown Member")),
])
def test_a_4xx_refusal_of_a_posting_is_a_failure(lcp, mocked, code, body):
    mocked.post(f"{BASE}/Posting", json=body, status=code)
    result = lcp.credit(MEMBER, 2000, REF)
    assert result.status is RemoteStatus.FAILURE
    assert str(code) in result.detail
    assert (body.get("statusMessage") or body["errors"][0]["description"]) in result.detail


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408, 409])
def test_5xx_408_and_409_may_have_applied_the_posting(lcp, mocked, code):
    mocked.post(f"{BASE}/Posting", json={}, status=code)
    assert lcp.debit(MEMBER, 2000, REF).status is RemoteStatus.UNKNOWN


def test_429_asks_to_come_back_after_retry_after(lcp, mocked):
    mocked.post(f"{BASE}/Posting", json={}, status=429, headers={"Retry-After": "3"})
    result = lcp.debit(MEMBER, 2000, REF)
    assert result.status is RemoteStatus.RETRY and result.retry_after == 3.0


@pytest.mark.parametrize("error, status", [
    (requests.ReadTimeout("read timed out"), RemoteStatus.UNKNOWN),
    (requests.ConnectTimeout("connect timed out"), RemoteStatus.RETRY),
    (requests.ConnectionError(NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")),
     RemoteStatus.RETRY),
    (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
     RemoteStatus.UNKNOWN),
    (requests.exceptions.ChunkedEncodingError("half a body"), RemoteStatus.UNKNOWN),
])
def test_no_answer_is_retry_only_when_surely_never_sent(lcp, mocked, error, status):
    mocked.post(f"{BASE}/Posting", body=error)
    assert lcp.debit(MEMBER, 2000, REF).status is status


def test_an_unreadable_success_is_unknown(lcp, mocked):
    mocked.post(f"{BASE}/Posting", body="<html>gateway</html>", status=200)
    assert lcp.debit(MEMBER, 2000, REF).status is RemoteStatus.UNKNOWN


# status(): our GET /Transactions, and LCP's RetryTransaction for a systemError.

@pytest.mark.parametrize("status, expected", [
    ("success", RemoteStatus.SUCCESS), ("failure", RemoteStatus.FAILURE), ("pending", RemoteStatus.PENDING),
])
def test_status_reads_the_transaction_found_by_confirmation_number(lcp, mocked, status, expected):
    lookup_of(mocked, record(status))
    result = lcp.status(REF)
    assert (result.status, result.transaction_id) == (expected, TXN)
    assert len(mocked.calls) == 1
    assert_timeouts(mocked, TIMEOUTS)


@pytest.mark.parametrize("transactions", [[], [record(reference="someone-elses-reference")]])
def test_status_of_a_reference_the_partner_never_received_is_not_found(lcp, mocked, transactions):
    lookup_of(mocked, *transactions)
    assert lcp.status(REF).status is RemoteStatus.NOT_FOUND


def test_status_of_a_system_error_retries_the_same_transaction(lcp, mocked):
    lookup_of(mocked, record("systemError", message="Error: System unavailable"))
    mocked.post(f"{BASE}/RetryTransaction", json=answer("success"),
                match=[responses.matchers.json_params_matcher({"transactionId": TXN})])
    result = lcp.status(REF)
    assert (result.status, result.transaction_id) == (RemoteStatus.SUCCESS, TXN)
    assert_timeouts(mocked, TIMEOUTS)


@pytest.mark.parametrize("retry", [
    {"json": answer("systemError")},
    {"json": {}, "status": 500},
    {"json": answer("failure", "Error: No such transactionId"), "status": 400},  # a refused retry proves nothing
    {"json": {}, "status": 429, "headers": {"Retry-After": "1"}},
    {"body": requests.ReadTimeout("slow")},
    {"body": requests.ConnectTimeout("no route")},
])
def test_a_retry_without_a_verdict_leaves_the_status_unknown(lcp, mocked, retry):
    lookup_of(mocked, record("systemError"))
    mocked.post(f"{BASE}/RetryTransaction", **retry)
    result = lcp.status(REF)
    assert result.status is RemoteStatus.UNKNOWN and result.transaction_id == TXN


def test_a_failed_retry_is_a_failure_when_the_record_agrees(lcp, mocked):
    lookup_of(mocked, record("systemError"))
    mocked.post(f"{BASE}/RetryTransaction", json=answer("failure", "Error: Declined"))
    lookup_of(mocked, record("failure", message="Error: Declined"))
    assert lcp.status(REF).status is RemoteStatus.FAILURE
    assert len(mocked.calls) == 3


def test_a_retry_failure_that_means_already_succeeded_is_a_success(lcp, mocked):
    # lp-reference.md's own sample retry answer: failure, "Error: Transaction already succeeded".
    lookup_of(mocked, record("systemError"))
    mocked.post(f"{BASE}/RetryTransaction", json=answer("failure", "Error: Transaction already succeeded"))
    lookup_of(mocked, record("success"))
    assert lcp.status(REF).status is RemoteStatus.SUCCESS


def test_a_failed_retry_the_record_does_not_confirm_stays_unknown(lcp, mocked):
    lookup_of(mocked, record("systemError"))
    mocked.post(f"{BASE}/RetryTransaction", json=answer("failure", "Error: Declined"))
    mocked.get(f"{BASE}/Transactions", body=requests.ReadTimeout("slow"))
    assert lcp.status(REF).status is RemoteStatus.UNKNOWN


@pytest.mark.parametrize("reply", [
    {"status": 401, "json": lcp_errors("UNAUTHORIZED", "Basic authentication required")},
    {"status": 404, "json": lcp_errors("NOT_FOUND", "no route GET /Transactions")},  # no lookup: not "not found"
    {"status": 500, "json": {}},
    {"status": 429, "json": {}, "headers": {"Retry-After": "2"}},
    {"status": 200, "json": {"transaction": None}},
    {"body": requests.ConnectTimeout("no route")},
    {"body": requests.ReadTimeout("slow")},
])
def test_a_lookup_that_is_not_answered_is_unknown_never_failure_or_retry(lcp, mocked, reply):
    mocked.get(f"{BASE}/Transactions", **reply)
    result = lcp.status(REF)
    assert result.status is RemoteStatus.UNKNOWN
    assert result.retry_after == (2.0 if reply.get("status") == 429 else None)


# validate(): POST /MemberValidation.

def test_validate_returns_the_members_balance(lcp, mocked):
    mocked.post(f"{BASE}/MemberValidation", json={
        "status": "success", "accountCreationDate": "2015-12-31", "accountStatus": "Active", "countryCode": "CA",
        "balance": 200000, "memberId": MEMBER, "membershipLevel": "Gold", "expiredBalance": 15000},
        match=[responses.matchers.json_params_matcher({"memberId": MEMBER})])
    assert lcp.validate(MEMBER) == MemberCheck(True, 200000)
    assert_timeouts(mocked, TIMEOUTS)


def test_validate_an_unknown_member(lcp, mocked):
    mocked.post(f"{BASE}/MemberValidation", json={"status": "failure", "statusMessage": "Error: Unknown Member"})
    assert lcp.validate(MEMBER) == MemberCheck(False, None, "Error: Unknown Member")


@pytest.mark.parametrize("reply", [
    {"body": requests.ReadTimeout("slow")},
    {"body": requests.ConnectionError(NewConnectionError(None, "refused"))},
    {"status": 503, "json": {}},
    {"status": 401, "json": lcp_errors("UNAUTHORIZED", "Basic authentication required")},
    {"status": 200, "body": "<html>maintenance</html>"},
    {"status": 200, "json": answer("systemError", "Error: System unavailable")},
])
def test_validate_without_a_usable_answer_raises_unavailable(lcp, mocked, reply):
    mocked.post(f"{BASE}/MemberValidation", **reply)
    with pytest.raises(HostedUnavailable):
        lcp.validate(MEMBER)


# reversal(): our lookup for the original's direction, then LCP's POST /Reversal.

@pytest.mark.parametrize("original, signed", [(-2000, 500), (2000, -500)])
def test_a_reversal_undoes_the_original_by_its_effect_on_the_balance(lcp, mocked, original, signed):
    lookup_of(mocked, record(amount=original), key="transactionId", value=TXN)
    mocked.post(f"{BASE}/Reversal", json=answer("success"))
    result = lcp.reversal(TXN, 500, "xfr-rev-1")
    assert (result.status, result.transaction_id) == (RemoteStatus.SUCCESS, TXN)
    assert sent(mocked, 1) == {"transactionId": TXN, "amount": signed, "confirmationNumber": "xfr-rev-1"}
    assert_timeouts(mocked, TIMEOUTS)


@pytest.mark.parametrize("message", ["Error: Reversal exceeds the original amount", "Error: No such transactionId"])
def test_a_refused_reversal_is_a_failure(lcp, mocked, message):
    lookup_of(mocked, record(), key="transactionId", value=TXN)
    mocked.post(f"{BASE}/Reversal", json=answer("failure", message), status=400)
    result = lcp.reversal(TXN, 2500, "xfr-rev-1")
    assert result.status is RemoteStatus.FAILURE and message in result.detail


@pytest.mark.parametrize("reply, status", [
    ({"body": requests.ReadTimeout("slow")}, RemoteStatus.UNKNOWN),
    ({"status": 502, "json": {}}, RemoteStatus.UNKNOWN),
    ({"status": 429, "json": {}, "headers": {"Retry-After": "1"}}, RemoteStatus.RETRY),
])
def test_a_reversal_without_an_answer(lcp, mocked, reply, status):
    lookup_of(mocked, record(), key="transactionId", value=TXN)
    mocked.post(f"{BASE}/Reversal", **reply)
    assert lcp.reversal(TXN, 500, "xfr-rev-1").status is status


def test_a_reversal_of_a_transaction_the_partner_does_not_know_is_refused_unsent(lcp, mocked):
    lookup_of(mocked, key="transactionId", value=TXN)
    result = lcp.reversal(TXN, 500, "xfr-rev-1")
    assert result.status is RemoteStatus.FAILURE
    assert [c.request.method for c in mocked.calls] == ["GET"]  # no /Reversal registered: none sent


@pytest.mark.parametrize("reply", [
    {"body": requests.ReadTimeout("slow")},
    {"status": 500, "json": {}},
    {"status": 200, "json": {"transactions": [record(amount=0)]}},
])
def test_a_reversal_whose_original_cannot_be_read_is_not_sent(lcp, mocked, reply):
    mocked.get(f"{BASE}/Transactions", **reply)
    result = lcp.reversal(TXN, 500, "xfr-rev-1")
    assert result.status is RemoteStatus.RETRY and "not sent" in result.detail
    assert len(mocked.calls) == 1


def test_config_falls_back_to_the_local_sandbox():
    program = LcpProgram({"password": "from-env"})
    assert program._http.base_url == "http://127.0.0.1:8090/lcp"
    assert program._http.timeout == (3.05, 10.0)
