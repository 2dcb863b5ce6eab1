"""Connector for a partner-hosted points program speaking LCP's partner-program API.

LCP (Points Loyalty Commerce Platform, lp-reference.md) defines POST /MemberValidation,
/Posting, /RetryTransaction and /Reversal. Two extensions of ours (README): a posting's
`order.confirmationNumber` (our reference) is applied at most once, as is a reversal's
`confirmationNumber`; and GET /Transactions?confirmationNumber=|transactionId= looks a
transaction up, since LCP itself has no lookup.

Amounts follow LCP: a posting's amount is negative for a debit and positive for a credit, and
`order.orderType` (REDEEM_DEBIT / EXCHANGE_CREDIT) says the same; a reversal's amount is its
effect on the member's balance (positive gives a debit back). Callers pass positive points.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import requests

from hub.exchange.hosted import HostedUnavailable, MemberCheck, RemoteResult, RemoteStatus
from hub.rewards.providers import Outcome, Status
from partners import _http
from partners.lcp.config import DEFAULTS

DEBIT, CREDIT = "REDEEM_DEBIT", "EXCHANGE_CREDIT"

# systemError: the partner cannot say whether it applied the transaction; only its
# RetryTransaction (same transactionId) settles that. Any status new to us may be applied too.
_STATUSES = {"success": RemoteStatus.SUCCESS, "failure": RemoteStatus.FAILURE,
             "pending": RemoteStatus.PENDING, "systemError": RemoteStatus.UNKNOWN}
# partners._http answers in the reward relay's Outcome; the verdicts are the same.
_VERDICTS = {Status.RETRY: RemoteStatus.RETRY, Status.UNKNOWN: RemoteStatus.UNKNOWN,
             Status.FAILED: RemoteStatus.FAILURE}


class LcpProgram:
    name = "lcp"

    def __init__(self, config: Mapping[str, str]):
        cfg = _http.settings(DEFAULTS, config)
        self._http = _http.Client(cfg, auth=(cfg["username"], cfg["password"]))
        self._pic = cfg.get("pic") or DEFAULTS["pic"]

    def validate(self, member_id: str) -> MemberCheck:
        resp = self._http.send("POST", "/MemberValidation", json={"memberId": member_id})
        if isinstance(resp, Outcome):
            raise HostedUnavailable(resp.detail)
        data = _http.body(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            # A refused question (401, a wrong base_url's 404) says nothing about the member.
            raise HostedUnavailable(f"HTTP {resp.status_code}: {_http.describe_body(resp, _describe)}")
        if data.get("status") == "success":
            balance = data.get("balance")
            return MemberCheck(True, balance if type(balance) is int else None)
        if data.get("status") == "failure":  # LCP's answer for an unknown member
            return MemberCheck(False, detail=str(data.get("statusMessage") or "unknown member"))
        raise HostedUnavailable(f"member validation answered {data.get('status')!r}: {_describe(data)}")

    def debit(self, member_id: str, points: int, reference: str) -> RemoteResult:
        return self._post(member_id, -_positive(points), DEBIT, reference)

    def credit(self, member_id: str, points: int, reference: str) -> RemoteResult:
        return self._post(member_id, _positive(points), CREDIT, reference)

    def status(self, reference: str) -> RemoteResult:
        found = self._find("confirmationNumber", reference)
        if isinstance(found, RemoteResult):
            # The question did not get through: that proves nothing either way, not even
            # "not applied" (so never RETRY, whose meaning is exactly that).
            return _unknown(found, "lookup")
        if found is None:
            return RemoteResult(RemoteStatus.NOT_FOUND, detail="no transaction with this confirmationNumber")
        if found.get("status") != "systemError":
            return _transaction(found)
        return self._retry(found, reference)

    def reversal(self, transaction_id: str, points: int, reference: str) -> RemoteResult:
        # LCP signs a reversal by its effect on the balance, so it depends on whether the
        # original took points or gave them: look it up. /Reversal is only called once that
        # lookup has answered, so a lookup without an answer means this call applied nothing.
        magnitude = _positive(points)
        found = self._find("transactionId", transaction_id)
        if isinstance(found, RemoteResult):
            return RemoteResult(RemoteStatus.RETRY, transaction_id, f"reversal not sent: {found.detail}",
                                found.retry_after)
        if found is None:
            return RemoteResult(RemoteStatus.FAILURE, transaction_id, "no transaction with this transactionId")
        original = found.get("amount")
        if type(original) is not int or original == 0:
            return RemoteResult(RemoteStatus.RETRY, transaction_id, f"reversal not sent: original amount {original!r}")
        resp = self._http.send("POST", "/Reversal", json={
            "transactionId": transaction_id,
            "amount": magnitude if original < 0 else -magnitude,
            "confirmationNumber": reference,
        })
        return _with_id(_answer(resp, _http.error_outcome), transaction_id)

    def _post(self, member_id: str, amount: int, order_type: str, reference: str) -> RemoteResult:
        resp = self._http.send("POST", "/Posting", json={
            # LCP's callback identifies the transaction on the caller's side, for support.
            "callback": f"urn:coalition-hub:posting:{reference}",
            "amount": amount,
            "bonus": False,
            "order": {"orderType": order_type, "confirmationNumber": reference},
            "pic": self._pic,
            "memberId": member_id,
        })
        return _answer(resp, _http.error_outcome)

    def _retry(self, found: dict[str, Any], reference: str) -> RemoteResult:
        """Settle a transaction left in systemError with the partner's own retry."""
        transaction_id = found.get("transactionId")
        if not transaction_id:
            return RemoteResult(RemoteStatus.UNKNOWN, detail="systemError without a transactionId")
        resp = self._http.send("POST", "/RetryTransaction", json={"transactionId": transaction_id})
        # Whatever stopped the retry, the original may still have been applied.
        answer = _with_id(_answer(resp, _http.lookup_error), transaction_id)
        if answer.status is RemoteStatus.RETRY:
            return _unknown(answer, "retry")
        if answer.status is not RemoteStatus.FAILURE:
            return answer
        # LCP's own sample answers a retry with failure "Transaction already succeeded": a
        # failed retry proves "not applied" only when the partner's record says failure too.
        record = self._find("confirmationNumber", reference)
        if isinstance(record, dict) and record.get("status") in ("success", "failure"):
            return _transaction(record)
        return RemoteResult(RemoteStatus.UNKNOWN, transaction_id,
                            f"retry answered failure ({answer.detail}), the record does not confirm it")

    def _find(self, key: str, value: str) -> dict[str, Any] | RemoteResult | None:
        """The transaction whose `key` is `value` (our extension), None when the partner has
        none, or the RemoteResult of getting no usable answer."""
        resp = self._http.send("GET", "/Transactions", params={key: value})
        if isinstance(resp, Outcome):
            return _converted(resp)
        if resp.status_code != 200:
            return _converted(_http.lookup_error(resp, _describe))
        data = _http.body(resp)
        listed = data.get("transactions") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            return _converted(_http.unreadable(resp))
        # Only an exact match counts: a server that ignored the filter must not lend us a stranger's.
        return next((t for t in listed if isinstance(t, dict) and _key(t, key) == value), None)


def _answer(resp: requests.Response | Outcome,
            refused: Callable[[requests.Response, Callable[[Any], str]], Outcome]) -> RemoteResult:
    """A transaction's answer (posting, retry, reversal); `refused` maps a non-2xx answer."""
    if isinstance(resp, Outcome):
        return _converted(resp)
    if not 200 <= resp.status_code < 300:
        return _converted(refused(resp, _describe))
    data = _http.body(resp)
    return _transaction(data) if isinstance(data, dict) else _converted(_http.unreadable(resp))


def _transaction(data: dict[str, Any]) -> RemoteResult:
    status = data.get("status")
    mapped = _STATUSES.get(status, RemoteStatus.UNKNOWN) if isinstance(status, str) else RemoteStatus.UNKNOWN
    detail = str(data.get("statusMessage") or f"status {status!r}")
    return RemoteResult(mapped, data.get("transactionId"), detail)


def _converted(outcome: Outcome) -> RemoteResult:
    return RemoteResult(_VERDICTS.get(outcome.status, RemoteStatus.UNKNOWN), detail=outcome.detail,
                        retry_after=outcome.retry_after)


def _unknown(result: RemoteResult, step: str) -> RemoteResult:
    return dataclasses.replace(result, status=RemoteStatus.UNKNOWN, detail=f"{step}: {result.detail}")


def _with_id(result: RemoteResult, transaction_id: str) -> RemoteResult:
    return result if result.transaction_id else dataclasses.replace(result, transaction_id=transaction_id)


def _key(transaction: dict[str, Any], key: str) -> Any:
    if key == "confirmationNumber":
        order = transaction.get("order")
        return order.get(key) if isinstance(order, dict) else None
    return transaction.get(key)


def _positive(points: int) -> int:
    if type(points) is not int or points <= 0:
        raise ValueError(f"points must be a positive integer, not {points!r}")
    return points


def _describe(data: Any) -> str:
    """LCP's error bodies: {"errors": [{code, description, field}]} or {status, statusMessage}."""
    if not isinstance(data, dict):
        return ""
    parts = [": ".join(str(e[k]) for k in ("code", "description", "field") if e.get(k))
             for e in data.get("errors") or [] if isinstance(e, dict)]
    if data.get("statusMessage"):
        parts.append(str(data["statusMessage"]))
    return "; ".join(p for p in parts if p)
