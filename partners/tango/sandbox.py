"""A fake Tango Card RaaS v2, mounted by hub.sandbox at /tango (so /tango/raas/v2/orders).

Shapes: the swagger of tangocard/tangocard-raas-client-starter (OrderViewSummary,
OrderListView, CatalogViewVerbose, the ApiError body). Basic auth as configured in
partners.tango.config. Magic e-mail tags: partners/_fake.py. "+fail" answers 402, Tango's
insufficient-funds refusal.
"""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from partners._fake import FakeApp, Order, Verdict, json_body, json_response, major, now_iso, token
from partners.tango import report
from partners.tango.config import DEFAULTS

NAME = "tango"

_WHEN = "2024-01-15T00:00:00Z"
# brand -> items. `_credentials` is the fake's own note of what kind of card the item issues.
CATALOG = [
    {"brandKey": "B916708", "brandName": "Amazon.com", "shortDescription": "Amazon.com Gift Card",
     "items": [{"utid": "U666425", "rewardName": "Amazon.com Gift Card", "currencyCode": "USD",
                "valueType": "VARIABLE_VALUE", "minValue": 1.0, "maxValue": 2000.0, "_credentials": "claim"}]},
    {"brandKey": "B217633", "brandName": "Reward Link", "shortDescription": "Choose from hundreds of brands",
     "items": [{"utid": "U561593", "rewardName": "Reward Link", "currencyCode": "USD",
                "valueType": "VARIABLE_VALUE", "minValue": 1.0, "maxValue": 1000.0, "_credentials": "link"}]},
    {"brandKey": "B048297", "brandName": "Starbucks", "shortDescription": "Starbucks Card eGift",
     "items": [{"utid": "U157189", "rewardName": "Starbucks Card $10.00", "currencyCode": "USD",
                "valueType": "FIXED_VALUE", "faceValue": 10.0, "_credentials": "card"},
               {"utid": "U157190", "rewardName": "Starbucks Card $25.00", "currencyCode": "USD",
                "valueType": "FIXED_VALUE", "faceValue": 25.0, "_credentials": "card"}]},
]
_STATUS = {"pending": "PENDING", "fulfilled": "COMPLETE"}  # else FAILED
_ITEMS = {item["utid"]: (brand, item) for brand in CATALOG for item in brand["items"]}


class TangoFake(FakeApp):
    name = NAME
    report_header = report.HEADER

    def __init__(self, *, credentials: tuple[str, str] | None = None, **options: Any):
        super().__init__(**options)
        self.credentials = credentials or (DEFAULTS["platform_name"], DEFAULTS["platform_key"])
        self._numbers = itertools.count(1401)

    def rules(self) -> list[Rule]:
        return [
            Rule("/raas/v2/catalogs", endpoint="catalogs", methods=["GET"]),
            Rule("/raas/v2/orders", endpoint="create_order", methods=["POST"]),
            Rule("/raas/v2/orders", endpoint="list_orders", methods=["GET"]),
            Rule("/raas/v2/orders/<order_id>", endpoint="get_order", methods=["GET"]),
        ]

    def error(self, status: int, message: str, i18n_key: str = "RAAS:GENERIC:ERROR") -> Response:
        return json_response({
            "timestamp": now_iso(), "requestId": str(uuid.uuid4()), "httpCode": status,
            "httpPhrase": HTTP_STATUS_CODES.get(status, ""), "i18nKey": i18n_key, "message": message,
        }, status)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/raas/") and not self._authorized(request):
            return self.error(401, "Full authentication is required", "RAAS:AUTH:UNAUTHORIZED")(environ, start_response)
        return super().__call__(environ, start_response)

    def _authorized(self, request: Request) -> bool:
        auth = request.authorization
        return auth is not None and auth.type == "basic" and (auth.username, auth.password) == self.credentials

    def on_catalogs(self, request: Request) -> Response:
        def public(item):
            return {k: v for k, v in item.items() if not k.startswith("_")} | {
                "countries": ["US"], "createdDate": _WHEN, "lastUpdateDate": _WHEN, "status": "active",
                "rewardType": "gift card", "isWholeAmountValueRequired": False,
                "credentialTypes": ["redemptionUrl" if item["_credentials"] == "link" else "cardNumber"],
                "redemptionInstructions": "<p>Redeem online.</p>",
            }
        brands = [{**{k: v for k, v in b.items() if k != "items"}, "status": "active", "createdDate": _WHEN,
                   "lastUpdateDate": _WHEN, "description": b["shortDescription"], "disclaimer": "", "terms": "",
                   "imageUrls": {}, "items": [public(i) for i in b["items"]]} for b in CATALOG]
        return json_response({"catalogName": "Hub Sandbox Catalog", "brands": brands})

    def on_create_order(self, request: Request) -> Response:
        data = json_body(request)
        problem = self._invalid(data)
        if problem:
            return self.error(400, problem, "RAAS:ORDR:VALIDATION")
        recipient = data.get("recipient") or {}
        reference = data.get("externalRefID") or f"anonymous-{uuid.uuid4().hex}"
        verdict, order = self.submit(reference, recipient.get("email"), lambda o: self._place(o, data))
        if verdict is Verdict.REFUSED:
            return self.error(402, "Insufficient funds in account", "RAAS:ACCT:INSUFFICIENT_FUNDS")
        return self.misbehaviour(verdict) or json_response(
            self._view(order), 200 if verdict is Verdict.DUPLICATE else 201)

    def on_list_orders(self, request: Request) -> Response:
        wanted = request.args.get("externalRefID")
        orders = [o for o in self.book.placed() if wanted is None or o.fields["externalRefID"] == wanted]
        size = int(request.args.get("elementsPerBlock", 10))
        page = int(request.args.get("page", 0))
        shown = orders[page * size:(page + 1) * size]
        return json_response({
            "orders": [self._view(o, reward=False) for o in shown],
            "page": {"number": page, "elementsPerBlock": size, "resultCount": len(shown), "totalCount": len(orders)},
        })

    def on_get_order(self, request: Request, order_id: str) -> Response:
        order = self.book.find_where(lambda o: o.fields["id"] == order_id)
        if order is None:
            return self.error(404, f"Order {order_id} not found", "RAAS:ORDR:NOT_FOUND")
        return json_response(self._view(order))

    def report_row(self, order: Order) -> list[str]:
        f = order.fields
        placed = datetime.fromisoformat(f["createdAt"]).strftime(report.DATE_FORMAT)
        return [f["id"], f["externalRefID"] or "", placed, DEFAULTS["account_identifier"], f["utid"], f["rewardName"],
                major(f["amount"], f["currency"]), f["currency"], _STATUS.get(order.status, "FAILED")]

    def _invalid(self, data: dict | None) -> str | None:
        if data is None:
            return "body must be a JSON object"
        missing = [k for k in ("accountIdentifier", "amount", "customerIdentifier", "sendEmail", "utid") if k not in data]
        if missing:
            return f"missing {', '.join(missing)}"
        if (data["customerIdentifier"], data["accountIdentifier"]) != (
                DEFAULTS["customer_identifier"], DEFAULTS["account_identifier"]):
            return "unknown customer or account"
        if data["utid"] not in _ITEMS:
            return f"unknown utid {data['utid']}"
        try:
            amount = Decimal(str(data["amount"]))
        except InvalidOperation:
            return "amount is not a number"
        _, item = _ITEMS[data["utid"]]
        if item["valueType"] == "FIXED_VALUE" and amount != Decimal(str(item["faceValue"])):
            return f"amount must be {item['faceValue']} for {data['utid']}"
        if item["valueType"] == "VARIABLE_VALUE" and not item["minValue"] <= amount <= item["maxValue"]:
            return f"amount must be between {item['minValue']} and {item['maxValue']}"
        if data["sendEmail"] and not ((data.get("recipient") or {}).get("email") and data["recipient"].get("firstName")):
            return "recipient email and firstName are required when sendEmail is true"
        return None

    def _place(self, order: Order, data: dict) -> None:
        now = datetime.now(timezone.utc)
        _, item = _ITEMS[data["utid"]]
        order.fields.update(
            id=f"RA{now:%y%m%d}-{next(self._numbers)}-{token(order.reference, 'ra', 2, '0123456789')}",
            externalRefID=data.get("externalRefID"), utid=data["utid"], rewardName=item["rewardName"],
            amount=float(data["amount"]), currency=item["currencyCode"], credentials=item["_credentials"],
            recipient={"email": "", "firstName": "", "lastName": "", **(data.get("recipient") or {})},
            sendEmail=bool(data["sendEmail"]), createdAt=now_iso(),
        )

    def _view(self, order: Order, reward: bool = True) -> dict:
        f = order.fields
        status = _STATUS.get(order.status, "FAILED")
        view = {
            "referenceOrderID": f["id"], "customerIdentifier": DEFAULTS["customer_identifier"],
            "accountIdentifier": DEFAULTS["account_identifier"], "accountNumber": "A32386768",
            "amountCharged": {"value": f["amount"], "currencyCode": f["currency"], "total": f["amount"]},
            "denomination": {"value": f["amount"], "currencyCode": f["currency"]},
            "utid": f["utid"], "rewardName": f["rewardName"], "campaign": "", "emailSubject": "", "message": "",
            "sender": {"firstName": "", "lastName": "", "email": ""}, "recipient": f["recipient"],
            "sendEmail": f["sendEmail"], "status": status, "createdAt": f["createdAt"],
        }
        if f["externalRefID"]:
            view["externalRefID"] = f["externalRefID"]
        if reward:
            view["reward"] = _reward(order) if status == "COMPLETE" else {
                "credentials": {}, "credentialList": [], "redemptionInstructions": ""}
        return view


def _reward(order: Order) -> dict:
    ref, kind = order.reference, order.fields["credentials"]
    if kind == "link":
        creds = [("Redemption Link", f"https://sandbox.rewardlink.io/r/1/{token(ref, 'link', 43, _URLSAFE)}",
                  "url", "redemptionUrl")]
    elif kind == "card":
        creds = [("Card Number", token(ref, "card", 16, "0123456789"), "text", "cardNumber"),
                 ("PIN", token(ref, "pin", 8, "0123456789"), "text", "cardPin")]
    else:
        code = token(ref, "claim", 14)
        creds = [("Claim Code", f"{code[:4]}-{code[4:10]}-{code[10:]}", "text", "cardNumber")]
    creds.append(("Expiration Date", "2034-12-31T23:59:59Z", "date", "expirationDate"))
    return {
        "credentials": {label: value for label, value, _, _ in creds},
        "credentialList": [{"label": label, "value": value, "type": kind_, "credentialType": ctype}
                           for label, value, kind_, ctype in creds],
        "redemptionInstructions": "<p>Enter the code at checkout.</p>",
    }


_URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def create_app(**options: Any) -> TangoFake:
    return TangoFake(**options)
