"""A fake Tremendous API v2, mounted by hub.sandbox at /tremendous (so /tremendous/api/v2/orders).

Shapes: Tremendous's OpenAPI as generated in tremendous-rewards/tremendous-python (order,
reward, product and error models). Bearer auth with partners.tremendous.config's api_key.
A new order answers 201 (delivered: the LINK is in the answer) or 202 (pending); a repeated
external_id answers 201 with the original. Magic e-mail tags: partners/_fake.py; "+fail"
answers 400. With a webhook URL (the `webhook_url` option or POST /webhooks), a pending order
settles on a timer and the fake POSTs a signed ORDERS.APPROVED / ORDERS.FAILED event to it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from partners._fake import FakeApp, Order, Verdict, json_body, json_response, major, now_iso, token
from partners.tremendous import report
from partners.tremendous.config import DEFAULTS

NAME = "tremendous"

PRODUCTS = [
    {"id": "OKMHM2X2OHYV", "name": "Amazon.com", "category": "merchant_card", "subcategory": "general_merchandise",
     "description": "Amazon.com gift card, redeemable for millions of items.", "skus": [{"min": 1, "max": 2000}],
     "currency_codes": ["USD"]},
    {"id": "Q24BD9EZ332JT", "name": "Virtual Visa", "category": "visa_card", "subcategory": None,
     "description": "A virtual prepaid Visa card, usable online.", "skus": [{"min": 5, "max": 2000}],
     "currency_codes": ["USD"]},
    {"id": "ESRNAD533W5A", "name": "Save the Children", "category": "charity", "subcategory": None,
     "description": "A donation to Save the Children.", "skus": [{"min": 1, "max": 10000}],
     "currency_codes": ["USD", "EUR"]},
]
_PRODUCTS = {p["id"]: p for p in PRODUCTS}
_STATUS = {"pending": "PENDING APPROVAL", "fulfilled": "EXECUTED", "failed": "FAILED"}
_DELIVERY = {"pending": "PENDING", "fulfilled": "SUCCEEDED", "failed": "FAILED"}


class TremendousFake(FakeApp):
    name = NAME
    report_header = report.HEADER

    def __init__(self, *, api_key: str | None = None, webhook_url: str | None = None,
                 webhook_secret: str | None = None, **options: Any):
        super().__init__(**options)
        self.api_key = api_key or DEFAULTS["api_key"]
        self.webhook_secret = webhook_secret or DEFAULTS["webhook_secret"]
        self.webhook_url = None
        if webhook_url:
            self._subscribe(webhook_url)

    def rules(self) -> list[Rule]:
        return [
            Rule("/api/v2/products", endpoint="products", methods=["GET"]),
            Rule("/api/v2/orders", endpoint="create_order", methods=["POST"]),
            Rule("/api/v2/orders", endpoint="list_orders", methods=["GET"]),
            Rule("/api/v2/orders/<order_id>", endpoint="get_order", methods=["GET"]),
            Rule("/api/v2/rewards/<reward_id>", endpoint="get_reward", methods=["GET"]),
            Rule("/api/v2/webhooks", endpoint="create_webhook", methods=["POST"]),
        ]

    def error(self, status: int, message: str, payload: dict | None = None) -> Response:
        return json_response({"errors": {"message": message, "payload": payload or {}}}, status)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/api/") and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "API key is invalid or missing")(environ, start_response)
        return super().__call__(environ, start_response)

    def on_products(self, request: Request) -> Response:
        return json_response({"products": [
            {**p, "disclosure": "", "countries": [{"abbr": "US"}],
             "images": [{"src": f"https://testflight.tremendous.com/product_images/{p['id']}/logo", "type": "logo"}]}
            for p in PRODUCTS
        ]})

    def on_create_order(self, request: Request) -> Response:
        data = json_body(request)
        problem, field_errors = self._invalid(data)
        if problem:
            return self.error(400, problem, field_errors)
        reward = data["reward"]
        reference = data.get("external_id") or f"anonymous-{uuid.uuid4().hex}"
        verdict, order = self.submit(reference, reward["recipient"].get("email"), lambda o: self._place(o, data))
        if verdict is Verdict.REFUSED:
            return self.error(400, "The recipient's e-mail address is blocked by your fraud rules",
                              {"reward": {"recipient": {"email": ["is blocked"]}}})
        misbehaviour = self.misbehaviour(verdict)
        if misbehaviour:
            return misbehaviour
        status = 202 if verdict is not Verdict.DUPLICATE and order.status == "pending" else 201
        return json_response({"order": self._view(order, link=True)}, status)

    def on_list_orders(self, request: Request) -> Response:
        wanted = request.args.get("external_id")
        orders = [o for o in self.book.placed() if wanted is None or o.fields["external_id"] == wanted]
        return json_response({"orders": [self._view(o) for o in orders], "total_count": len(orders)})

    def on_get_order(self, request: Request, order_id: str) -> Response:
        order = self.book.find_where(lambda o: o.fields["id"] == order_id)
        if order is None:
            return self.error(404, "Resource not found")
        return json_response({"order": self._view(order)})

    def on_get_reward(self, request: Request, reward_id: str) -> Response:
        order = self.book.find_where(lambda o: o.fields["reward_id"] == reward_id)
        if order is None:
            return self.error(404, "Resource not found")
        return json_response({"reward": self._view(order, link=True)["rewards"][0]})

    def on_create_webhook(self, request: Request) -> Response:
        url = (json_body(request) or {}).get("url")
        if not url:
            return self.error(400, "url is required", {"url": ["can't be blank"]})
        return json_response({"webhook": self._subscribe(url)})

    def _subscribe(self, url: str) -> dict:
        self.webhook_url = url
        self.book.on_settle = self._announce
        return {"id": token(url, "webhook", 12), "url": url, "private_key": self.webhook_secret}

    def _invalid(self, data: dict | None) -> tuple[str | None, dict]:
        if data is None:
            return "body must be a JSON object", {}
        if (data.get("payment") or {}).get("funding_source_id") != DEFAULTS["funding_source_id"]:
            return "Unknown funding source", {"payment": {"funding_source_id": ["is invalid"]}}
        reward = data.get("reward") or {}
        products = reward.get("products") or []
        if len(products) != 1 or products[0] not in _PRODUCTS:
            return "Invalid products", {"reward": {"products": ["must name one available product"]}}
        value = reward.get("value") or {}
        product = _PRODUCTS[products[0]]
        try:
            amount = Decimal(str(value.get("denomination")))
        except InvalidOperation:
            return "Invalid value", {"reward": {"value": {"denomination": ["is not a number"]}}}
        if value.get("currency_code") not in product["currency_codes"]:
            return "Invalid currency", {"reward": {"value": {"currency_code": ["is not available"]}}}
        if not any(s["min"] <= amount <= s["max"] for s in product["skus"]):
            return "Invalid value", {"reward": {"value": {"denomination": ["is out of range"]}}}
        recipient = reward.get("recipient") or {}
        if not recipient.get("email") or not recipient.get("name"):
            return "Invalid recipient", {"reward": {"recipient": ["name and email are required"]}}
        if (reward.get("delivery") or {}).get("method", "EMAIL") not in ("EMAIL", "LINK", "PHONE"):
            return "Invalid delivery", {"reward": {"delivery": {"method": ["is not supported"]}}}
        return None, {}

    def _place(self, order: Order, data: dict) -> None:
        reward = data["reward"]
        order.fields.update(
            id=token(order.reference, "order", 12), reward_id=token(order.reference, "reward", 12),
            external_id=data.get("external_id"), product=reward["products"][0], created_at=now_iso(),
            denomination=float(reward["value"]["denomination"]), currency=reward["value"]["currency_code"],
            recipient={"name": reward["recipient"]["name"], "email": reward["recipient"]["email"]},
            method=(reward.get("delivery") or {}).get("method", "EMAIL"),
            link=f"https://testflight.tremendous.com/rewards/payout/{token(order.reference, 'link', 20)}",
        )

    def report_row(self, order: Order) -> list[str]:
        f = order.fields
        return [f["id"], f["reward_id"], f["external_id"] or "", f["created_at"], f["product"],
                major(f["denomination"], f["currency"]), f["currency"], _STATUS.get(order.status, "FAILED"),
                _DELIVERY.get(order.status, "FAILED")]

    def _view(self, order: Order, link: bool = False) -> dict:
        f = order.fields
        delivery = {"method": f["method"], "status": _DELIVERY.get(order.status, "FAILED")}
        if link and order.status == "fulfilled" and f["method"] == "LINK":
            delivery["link"] = f["link"]
        return {
            "id": f["id"], "external_id": f["external_id"], "campaign_id": None, "created_at": f["created_at"],
            "status": _STATUS.get(order.status, "FAILED"), "channel": "API",
            "payment": {"subtotal": f["denomination"], "total": f["denomination"], "fees": 0.0},
            "rewards": [{
                "id": f["reward_id"], "order_id": f["id"], "created_at": f["created_at"],
                "value": {"denomination": f["denomination"], "currency_code": f["currency"]},
                "recipient": f["recipient"], "delivery": delivery,
            }],
        }

    def _announce(self, order: Order) -> None:
        """Tremendous's webhook: the event, signed with the webhook's private key."""
        url = self.webhook_url
        if not url:
            return
        body = json.dumps({
            "event": "ORDERS.FAILED" if order.status == "failed" else "ORDERS.APPROVED",
            "uuid": str(uuid.uuid4()), "created_utc": now_iso(),
            "payload": {"resource": {"id": order.fields["id"], "type": "orders"}, "meta": {}},
        }).encode()
        signature = "sha256=" + hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        try:
            requests.post(url, data=body, timeout=(1, 2), headers={
                "Content-Type": "application/json", "Tremendous-Webhook-Signature": signature})
        except requests.RequestException:
            pass  # like the real one, we do not promise delivery; the relay polls anyway


def create_app(**options: Any) -> TremendousFake:
    return TremendousFake(**options)
