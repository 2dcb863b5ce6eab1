"""A fake LCP loyalty partner (the partner's side of Points' LCP partner-program API), mounted
by hub.sandbox at /lcp. In memory and thread-safe; README.md has the shapes.

    POST /MemberValidation  {memberId}
    POST /Posting           {callback, amount, bonus, order{orderType, confirmationNumber}, pic, memberId}
    POST /RetryTransaction  {transactionId}
    POST /Reversal          {transactionId, amount, confirmationNumber?}
    GET  /Transactions?confirmationNumber=...|transactionId=...   (our extension)

Basic auth with partners.lcp.config's username and password (401 otherwise); /_sandbox/* needs none.

Members: any memberId matching [A-Za-z0-9][A-Za-z0-9._-]* exists with START_BALANCE points,
except ids ending in "-unknown". A confirmationNumber is applied at most once: a repeat answers
with the original transaction. Balances move only when a transaction is applied.

Magic amounts, by abs(amount) % 100 (a debit of 1095 points is "95"):
    99  failure, never applied
    94  pending for ever
    95  pending; applied (success) on the first look at least `pending_delay` s later
    96  pending; failure on the first look at least `pending_delay` s later
    91  systemError, not applied; RetryTransaction applies it and answers success
    97  systemError, applied; RetryTransaction answers success, applying nothing more
    98  systemError, not applied; RetryTransaction answers failure
    93  applied, then the answer waits `timeout_sleep` s (past a client's read timeout)
A "look" is a lookup, a repeated posting or a RetryTransaction.
"""
from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from partners._fake import FakeApp, json_body, json_response
from partners.lcp.config import DEFAULTS

NAME = "lcp"
START_BALANCE = 100_000
UNKNOWN_SUFFIX = "-unknown"
MAGIC = (91, 93, 94, 95, 96, 97, 98, 99)
_MEMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SIGNS = {"REDEEM_DEBIT": -1, "EXCHANGE_CREDIT": 1}  # the sign a posting's amount must carry


@dataclass
class Transaction:
    id: str
    member_id: str
    amount: int                  # signed, as posted
    order_type: str
    confirmation: str
    magic: int | None
    status: str = "success"      # success | failure | pending | systemError
    message: str = ""
    applied: int = 0             # times the balance moved for it: the fake's proof of "at most once"
    reversed: int = 0            # signed sum of its reversals
    created: float = field(default_factory=time.monotonic)

    def answer(self) -> dict[str, Any]:
        body = {"status": self.status, "transactionId": self.id}
        return {**body, "statusMessage": self.message} if self.message else body

    def view(self) -> dict[str, Any]:
        return {**self.answer(), "amount": self.amount, "memberId": self.member_id,
                "order": {"orderType": self.order_type, "confirmationNumber": self.confirmation},
                "reversedAmount": self.reversed}


class LcpFake(FakeApp):
    name = NAME

    def __init__(self, *, pending_delay: float = 1.0, credentials: tuple[str, str] | None = None, **options: Any):
        super().__init__(pending_delay=pending_delay, **options)
        self.pending_delay = pending_delay
        self.credentials = credentials or (DEFAULTS["username"], DEFAULTS["password"])
        self._lock = threading.Lock()
        self._ids = itertools.count(10_000_001)
        self._balances: dict[str, int] = {}
        self._postings: dict[str, Transaction] = {}     # by confirmationNumber
        self._by_id: dict[str, Transaction] = {}
        self._reversals: dict[str, dict[str, Any]] = {}  # applied reversals' answers, by confirmationNumber

    def rules(self) -> list[Rule]:
        return [
            Rule("/MemberValidation", endpoint="validate", methods=["POST"]),
            Rule("/Posting", endpoint="posting", methods=["POST"]),
            Rule("/RetryTransaction", endpoint="retry", methods=["POST"]),
            Rule("/Reversal", endpoint="reversal", methods=["POST"]),
            Rule("/Transactions", endpoint="transactions", methods=["GET"]),
        ]

    def error(self, status: int, message: str, code: str | None = None, field: str | None = None) -> Response:
        code = code or HTTP_STATUS_CODES.get(status, "error").upper().replace(" ", "_")
        return json_response({"errors": [{"code": code, "description": message, "field": field}]}, status)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if not request.path.startswith("/_sandbox/") and not self._authorized(request):
            response = self.error(401, "Basic authentication required")
            response.headers["WWW-Authenticate"] = 'Basic realm="lcp"'
            return response(environ, start_response)
        return super().__call__(environ, start_response)

    def _authorized(self, request: Request) -> bool:
        auth = request.authorization
        return auth is not None and auth.type == "basic" and (auth.username, auth.password) == self.credentials

    # Test helpers (the fake object is reachable as hub.sandbox's mounts["/lcp"]).

    def balance(self, member_id: str) -> int:
        with self._lock:
            return self._balances.get(member_id, START_BALANCE)

    def set_balance(self, member_id: str, points: int) -> None:
        with self._lock:
            self._balances[member_id] = points

    def transaction(self, confirmation: str) -> dict[str, Any] | None:
        """A posting's view plus `applied`, without settling it (a test's look is no lookup)."""
        with self._lock:
            txn = self._postings.get(confirmation)
            return {**txn.view(), "applied": txn.applied} if txn else None

    # The API.

    def on_validate(self, request: Request) -> Response:
        data = json_body(request)
        member_id = data.get("memberId") if data else None
        if not isinstance(member_id, str) or not member_id:
            return self.error(400, "memberId is required", "INVALID_FIELD", "memberId")
        if not _known(member_id):
            return json_response({"status": "failure", "statusMessage": "Error: Unknown Member"})
        return json_response({"status": "success", "memberId": member_id, "accountStatus": "Active",
                              "balance": self.balance(member_id)})

    def on_posting(self, request: Request) -> Response:
        data = json_body(request)
        problem = _invalid_posting(data)
        if problem:
            return self.error(400, *problem)
        order = data["order"]
        with self._lock:
            txn = self._postings.get(order["confirmationNumber"])
            if txn is not None:  # the confirmationNumber was seen: the original, never a second
                self._settle_if_due(txn)
                return json_response(txn.answer())
            magic = abs(data["amount"]) % 100
            txn = Transaction(str(next(self._ids)), data["memberId"], data["amount"], order["orderType"],
                              order["confirmationNumber"], magic if magic in MAGIC else None)
            self._postings[txn.confirmation] = self._by_id[txn.id] = txn
            self._first_attempt(txn)
            answer = txn.answer()
        if txn.magic == 93:
            time.sleep(self.timeout_sleep)  # applied; the caller has given up by now
        return json_response(answer)

    def on_retry(self, request: Request) -> Response:
        data = json_body(request)
        transaction_id = data.get("transactionId") if data else None
        if not isinstance(transaction_id, str) or not transaction_id:
            return self.error(400, "transactionId is required", "INVALID_FIELD", "transactionId")
        with self._lock:
            txn = self._by_id.get(transaction_id)
            if txn is None:
                return _refused(transaction_id, "Error: No such transactionId")
            self._settle_if_due(txn)
            if txn.status == "systemError":  # the same transaction again, never a new one
                if txn.magic == 98:
                    _fail(txn, "Error: Retry declined (sandbox amount 98)")
                elif txn.applied:
                    txn.status, txn.message = "success", ""
                else:
                    self._apply(txn)
            return json_response(txn.answer())  # any other status: what it already is

    def on_reversal(self, request: Request) -> Response:
        data = json_body(request)
        problem = _invalid_reversal(data)
        if problem:
            return self.error(400, *problem)
        transaction_id, amount, confirmation = data["transactionId"], data["amount"], data.get("confirmationNumber")
        with self._lock:
            if confirmation in self._reversals:  # our extension: one reversal per confirmationNumber
                return json_response(self._reversals[confirmation])
            txn = self._by_id.get(transaction_id)
            if txn is None:
                return _refused(transaction_id, "Error: No such transactionId")
            self._settle_if_due(txn)
            if txn.status != "success":
                return _refused(transaction_id, f"Error: Transaction is {txn.status}, not success")
            if (amount > 0) == (txn.amount > 0):
                return _refused(transaction_id, "Error: A reversal's sign must undo the transaction")
            if abs(txn.reversed + amount) > abs(txn.amount):
                return _refused(transaction_id, "Error: Reversal exceeds the original amount")
            if not self._move(txn.member_id, amount):
                return _refused(transaction_id, "Error: Insufficient balance")
            txn.reversed += amount
            answer = {"status": "success", "transactionId": transaction_id}
            if confirmation:
                self._reversals[confirmation] = answer
            return json_response(answer)

    def on_transactions(self, request: Request) -> Response:
        confirmation, transaction_id = request.args.get("confirmationNumber"), request.args.get("transactionId")
        if not confirmation and not transaction_id:
            return self.error(400, "confirmationNumber or transactionId is required", "INVALID_FIELD")
        with self._lock:
            txn = self._postings.get(confirmation) if confirmation else self._by_id.get(transaction_id)
            if txn is None or transaction_id not in (None, txn.id):  # both given: both must match
                return json_response({"transactions": []})
            self._settle_if_due(txn)
            return json_response({"transactions": [txn.view()]})

    def on_sandbox_orders(self, request: Request) -> Response:
        with self._lock:
            return json_response({c: {**t.view(), "applied": t.applied} for c, t in self._postings.items()})

    def on_sandbox_reset(self, request: Request) -> Response:
        with self._lock:
            self._balances.clear()
            self._postings.clear()
            self._by_id.clear()
            self._reversals.clear()
        return json_response({"reset": True})

    # State changes, all under self._lock.

    def _first_attempt(self, txn: Transaction) -> None:
        if not _known(txn.member_id):
            _fail(txn, "Error: Unknown Member")
        elif txn.magic == 99:
            _fail(txn, "Error: Declined (sandbox amount 99)")
        elif txn.magic in (94, 95, 96):
            txn.status = "pending"
        elif txn.magic in (91, 98):
            txn.status, txn.message = "systemError", "Error: System unavailable, retry later"
        elif self._apply(txn) and txn.magic == 97:  # applied, yet answered as if maybe not
            txn.status, txn.message = "systemError", "Error: System unavailable, retry later"

    def _settle_if_due(self, txn: Transaction) -> None:
        due = time.monotonic() - txn.created >= self.pending_delay
        if txn.status == "pending" and txn.magic in (95, 96) and due:
            if txn.magic == 95:
                self._apply(txn)
            else:
                _fail(txn, "Error: Declined after review (sandbox amount 96)")

    def _apply(self, txn: Transaction) -> bool:
        if not self._move(txn.member_id, txn.amount):
            _fail(txn, "Error: Insufficient balance")
            return False
        txn.applied += 1
        txn.status, txn.message = "success", ""
        return True

    def _move(self, member_id: str, amount: int) -> bool:
        balance = self._balances.get(member_id, START_BALANCE) + amount
        if balance < 0:
            return False
        self._balances[member_id] = balance
        return True


def _known(member_id: str) -> bool:
    return bool(_MEMBER.fullmatch(member_id)) and not member_id.endswith(UNKNOWN_SUFFIX)


def _fail(txn: Transaction, message: str) -> None:
    txn.status, txn.message = "failure", message


def _refused(transaction_id: str, message: str) -> Response:
    """LCP's refusal of a retry or reversal: 400 with status failure."""
    return json_response({"status": "failure", "statusMessage": message, "transactionId": transaction_id}, 400)


def _integer(value: Any) -> bool:
    return type(value) is int and value != 0


def _invalid_posting(data: dict | None) -> tuple[str, str, str] | None:
    """(description, code, field) of the first problem, as LCP's errors list them."""
    if data is None:
        return "body must be a JSON object", "INVALID_REQUEST", None
    for key in ("callback", "memberId"):
        if not isinstance(data.get(key), str) or not data[key]:
            return f"{key} is required", "INVALID_FIELD", key
    if not _integer(data.get("amount")):
        return "amount must be a non-zero integer", "INVALID_FIELD", "amount"
    order = data.get("order")
    if not isinstance(order, dict) or order.get("orderType") not in _SIGNS:
        return f"order.orderType must be one of {', '.join(_SIGNS)}", "INVALID_FIELD", "order.orderType"
    if not isinstance(order.get("confirmationNumber"), str) or not order["confirmationNumber"]:
        return "order.confirmationNumber is required", "INVALID_FIELD", "order.confirmationNumber"
    if data["amount"] * _SIGNS[order["orderType"]] < 0:
        return f"amount has the wrong sign for {order['orderType']}", "INVALID_FIELD", "amount"
    return None


def _invalid_reversal(data: dict | None) -> tuple[str, str, str] | None:
    if data is None:
        return "body must be a JSON object", "INVALID_REQUEST", None
    if not isinstance(data.get("transactionId"), str) or not data["transactionId"]:
        return "transactionId is required", "INVALID_FIELD", "transactionId"
    if not _integer(data.get("amount")):
        return "amount must be a non-zero integer", "INVALID_FIELD", "amount"
    if data.get("confirmationNumber") is not None and not isinstance(data["confirmationNumber"], str):
        return "confirmationNumber must be a string", "INVALID_FIELD", "confirmationNumber"
    return None


def create_app(**options: Any) -> LcpFake:
    return LcpFake(**options)
