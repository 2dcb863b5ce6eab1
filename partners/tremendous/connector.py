"""Tremendous API v2 connector (gift cards delivered as links).

Shapes follow Tremendous's OpenAPI (tremendous-rewards/tremendous-python): POST /orders with
{external_id, payment, reward}; a repeated external_id answers 201 with the original order;
202 means accepted and still processing. A LINK reward's link is in the POST answer
(rewards[].delivery.link); later it comes from GET /rewards/{id}. Lookup: GET /orders?external_id=.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from hub.rewards.providers import (
    CatalogItem, Kind, OrderRequest, Outcome, Status, WebhookEvent, WebhookRejected,
)
from partners import _http, _webhooks
from partners.tremendous.config import DEFAULTS

SIGNATURE_HEADER = "Tremendous-Webhook-Signature"
_FAILED_EVENTS = {"ORDERS.FAILED", "ORDERS.CANCELED"}


class TremendousProvider:
    name = "tremendous"
    kind = Kind.GIFT_CARD

    def __init__(self, config: Mapping[str, str]):
        cfg = _http.settings(DEFAULTS, config)
        self._http = _http.Client(cfg, headers={"Authorization": f"Bearer {cfg['api_key']}"})
        self._funding = cfg["funding_source_id"]
        self._secret = cfg["webhook_secret"]

    def catalog(self) -> list[CatalogItem]:
        items = []
        for product in _http.fetch(self._http, "/products").get("products", []):
            kind = Kind.DONATION if product.get("category") == "charity" else Kind.GIFT_CARD
            skus, currencies = product.get("skus") or [], product.get("currency_codes") or []
            if not currencies:
                continue
            # One item per product (the catalog is keyed by product id): USD when offered. The
            # sku bands are read in that currency, which the API does not spell out.
            currency = "USD" if "USD" in currencies else currencies[0]
            items.append(CatalogItem(
                product=product["id"], name=product["name"], kind=kind, currency=currency,
                min_minor=_http.minor(min(s["min"] for s in skus), currency) if skus else None,
                max_minor=_http.minor(max(s["max"] for s in skus), currency) if skus else None,
                description=product.get("description", ""),
            ))
        return items

    def place_order(self, order: OrderRequest) -> Outcome:
        resp = self._http.send("POST", "/orders", json={
            "external_id": order.reference,
            "payment": {"funding_source_id": self._funding},
            "reward": {
                "products": [order.product],
                "value": {"denomination": _http.major(order.amount_minor, order.currency),
                          "currency_code": order.currency},
                "recipient": {"name": order.recipient.name or order.recipient.email, "email": order.recipient.email},
                "delivery": {"method": "LINK"},
            },
        })
        if isinstance(resp, Outcome):
            return resp
        if resp.status_code in (200, 201, 202):
            data = _http.body(resp)
            if not isinstance(data, dict) or not isinstance(data.get("order"), dict):
                # 202 is "accepted" even if we cannot read the rest; 2xx otherwise may be placed.
                return (Outcome(Status.PENDING, detail="accepted (202)") if resp.status_code == 202
                        else _http.unreadable(resp))
            return _order_outcome(data["order"])
        return _http.error_outcome(resp, _message)

    def lookup(self, reference: str) -> Outcome:
        resp = self._http.send("GET", "/orders", params={"external_id": reference})
        if isinstance(resp, Outcome):
            return resp
        if resp.status_code != 200:
            return _http.lookup_error(resp, _message)
        data = _http.body(resp)
        if not isinstance(data, dict):
            return _http.unreadable(resp)
        orders = [o for o in data.get("orders", []) if o.get("external_id") == reference]
        if not orders:
            return Outcome(Status.NOT_FOUND, detail="no order with this external_id")
        order, outcome = orders[0], _order_outcome(orders[0])
        reward_id = _reward(order).get("id")
        if outcome.status is not Status.PENDING or str(order.get("status")).upper() != "EXECUTED" or not reward_id:
            return outcome
        # Executed, but list views carry no link: the reward itself does.
        resp = self._http.send("GET", f"/rewards/{reward_id}")
        data = None if isinstance(resp, Outcome) else _http.body(resp)
        if isinstance(resp, Outcome) or resp.status_code != 200 or not isinstance(data, dict):
            return Outcome(Status.PENDING, provider_order_id=order.get("id"), detail="executed; link not fetched")
        return _order_outcome({**order, "rewards": [data.get("reward") or {}]})

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        # Tremendous signs only the body: "sha256=" + hex HMAC-SHA256 with the webhook's private
        # key. The timestamp window therefore rests on the signed created_utc in the body.
        expected = "sha256=" + _webhooks.hmac_sha256(self._secret, body).hex()
        _webhooks.require_signature(_webhooks.header(headers, SIGNATURE_HEADER).strip(), expected)
        data = _webhooks.payload(body)
        occurred = _webhooks.timestamp(data.get("created_utc"), now)
        event_id = _webhooks.required(data, "uuid")
        event = _webhooks.required(data, "event")
        resource = (data.get("payload") or {}).get("resource") or {}
        if not isinstance(resource, dict):
            raise WebhookRejected("payload.resource is not an object")
        outcome = None
        if resource.get("type") == "orders" and resource.get("id"):
            # Events name the order, not our external_id, and carry no link: FAILED/CANCELED
            # settle it, anything else means "look it up".
            failed = event in _FAILED_EVENTS
            outcome = Outcome(Status.FAILED if failed else Status.PENDING,
                              provider_order_id=resource["id"], detail=f"webhook: {event}")
        return WebhookEvent(event_id=event_id, reference=None, outcome=outcome, occurred_at=occurred, raw=data)


def _reward(order: dict[str, Any]) -> dict[str, Any]:
    rewards = order.get("rewards") or []
    return rewards[0] if rewards and isinstance(rewards[0], dict) else {}


def _order_outcome(order: dict[str, Any]) -> Outcome:
    """Order status: CART, EXECUTED, FAILED, CANCELED, PENDING APPROVAL, PENDING INTERNAL
    PAYMENT APPROVAL. Only EXECUTED with a link is delivered; FAILED/CANCELED are final."""
    status = str(order.get("status", "")).upper()
    order_id = order.get("id")
    if status in ("FAILED", "CANCELED"):
        return Outcome(Status.FAILED, provider_order_id=order_id, detail=f"order {status}")
    reward = _reward(order)
    link = (reward.get("delivery") or {}).get("link")
    if status == "EXECUTED" and link:
        delivery = {"url": link}
        if reward.get("id"):
            delivery["reward_id"] = reward["id"]
        return Outcome(Status.FULFILLED, provider_order_id=order_id, delivery=delivery)
    return Outcome(Status.PENDING, provider_order_id=order_id, detail=f"order {status or 'without status'}")


def _message(data: Any) -> str:
    """Tremendous's error body: {"errors": {"message": ..., "payload": {...}}}."""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, dict):
        payload = errors.get("payload")
        return f"{errors.get('message', '')} {payload or ''}".strip()
    return ""
