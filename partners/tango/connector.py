"""Tango Card RaaS v2 connector (gift cards).

Shapes follow Tango's swagger (tangocard/tangocard-raas-client-starter): POST /orders with
CreateOrderCriteria, answered 201 for a new order and 200 with the original order when the
externalRefID was already used; GET /orders?externalRefID= lists orders without credentials,
GET /orders/{referenceOrderID} returns one with reward.credentialList; GET /catalogs.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from hub.rewards.providers import (
    CatalogItem, Kind, OrderRequest, Outcome, Status, WebhookEvent, WebhookRejected,
)
from partners import _http, _webhooks
from partners.tango.config import DEFAULTS

# credentialList[].credentialType -> our delivery key. Labels vary by brand; types do not.
_CREDENTIAL_KEYS = {"cardNumber": "code", "cardPin": "pin", "redemptionUrl": "url", "expirationDate": "expires"}
# The label-keyed `credentials` map, for items whose credentialList lacks a type.
_LABEL_HINTS = (("pin", "pin"), ("link", "url"), ("url", "url"), ("code", "code"), ("number", "code"))
SIGNATURE_HEADER = "X-Signed-Payload"  # unverified for HMAC mode: see README


class TangoProvider:
    name = "tango"
    kind = Kind.GIFT_CARD

    def __init__(self, config: Mapping[str, str]):
        cfg = _http.settings(DEFAULTS, config)
        self._http = _http.Client(cfg, auth=(cfg["platform_name"], cfg["platform_key"]))
        self._customer = cfg["customer_identifier"]
        self._account = cfg["account_identifier"]
        self._send_email = _http.flag(cfg["send_email"])
        self._secret = cfg["webhook_secret"]

    def catalog(self) -> list[CatalogItem]:
        data = _http.fetch(self._http, "/catalogs", {"verbose": "true"})
        items = []
        for brand in data.get("brands", []):
            for item in brand.get("items", []):
                if str(item.get("status", "active")).lower() != "active":
                    continue
                currency = item["currencyCode"]
                fixed = item.get("valueType") == "FIXED_VALUE"
                items.append(CatalogItem(
                    product=item["utid"], name=item.get("rewardName") or brand.get("brandName", ""),
                    kind=Kind.GIFT_CARD, currency=currency,
                    denominations=(_http.minor(item["faceValue"], currency),) if fixed else (),
                    min_minor=None if fixed else _http.minor(item["minValue"], currency),
                    max_minor=None if fixed else _http.minor(item["maxValue"], currency),
                    description=brand.get("shortDescription") or brand.get("brandName", ""),
                ))
        return items

    def place_order(self, order: OrderRequest) -> Outcome:
        first_name = (order.recipient.name or "").split(" ")[0] or "Member"
        resp = self._http.send("POST", "/orders", json={
            "accountIdentifier": self._account,
            "customerIdentifier": self._customer,
            "amount": _http.major(order.amount_minor, order.currency),
            "utid": order.product,
            "recipient": {"email": order.recipient.email, "firstName": first_name[:100]},
            "sendEmail": self._send_email,
            "externalRefID": order.reference,
        })
        if isinstance(resp, Outcome):
            return resp
        if resp.status_code in (200, 201):  # 200: this externalRefID's original order
            data = _http.body(resp)
            return _order_outcome(data) if isinstance(data, dict) else _http.unreadable(resp)
        return _http.error_outcome(resp, _message)

    def lookup(self, reference: str) -> Outcome:
        resp = self._http.send("GET", "/orders", params={
            "externalRefID": reference, "accountIdentifier": self._account,
            "customerIdentifier": self._customer,
        })
        if isinstance(resp, Outcome):
            return resp
        data = _http.body(resp)
        if resp.status_code != 200:
            return _http.lookup_error(resp, _message)
        if not isinstance(data, dict):
            return _http.unreadable(resp)
        orders = [o for o in data.get("orders", []) if o.get("externalRefID") == reference]
        if not orders:
            return Outcome(Status.NOT_FOUND, detail="no order with this externalRefID")
        if str(orders[0].get("status", "")).upper() != "COMPLETE":
            return _order_outcome(orders[0])
        # The list view carries no credentials: fetch the order itself.
        order_id = orders[0]["referenceOrderID"]
        resp = self._http.send("GET", f"/orders/{order_id}")
        detail = None if isinstance(resp, Outcome) else _http.body(resp)
        if isinstance(resp, Outcome) or resp.status_code != 200 or not isinstance(detail, dict):
            # Placed and complete, but the card did not come back this time: ask again later.
            return Outcome(Status.PENDING, provider_order_id=order_id, detail="complete; credentials not fetched")
        return _order_outcome(detail)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        expected = _webhooks.b64(_webhooks.hmac_sha256(self._secret, body))
        _webhooks.require_signature(_webhooks.header(headers, SIGNATURE_HEADER), expected)
        data = _webhooks.payload(body)
        occurred = _webhooks.timestamp(data.get("eventOccurredAt"), now)
        event_id = _webhooks.required(data, "eventId")
        event = data.get("eventData") or {}
        if not isinstance(event, dict):
            raise WebhookRejected("eventData is not an object")
        outcome = None
        if data.get("eventType") == "AsyncOrderStatus" or "externalRefID" in event:
            # SUCCESSFUL carries no card: it only tells us to look the order up.
            failed = str(event.get("status", "")).upper() == "FAILED"
            outcome = Outcome(
                Status.FAILED if failed else Status.PENDING,
                provider_order_id=event.get("referenceOrderID") or event.get("referenceOrderId"),
                detail=f"webhook: {event.get('status')}",
            )
        return WebhookEvent(event_id=event_id, reference=event.get("externalRefID"), outcome=outcome,
                            occurred_at=occurred, raw=data)


def _order_outcome(order: dict[str, Any]) -> Outcome:
    status = str(order.get("status", "")).upper()
    order_id = order.get("referenceOrderID")
    if status == "COMPLETE":
        delivery = _credentials(order.get("reward") or {})
        if delivery:
            return Outcome(Status.FULFILLED, provider_order_id=order_id, delivery=delivery)
        return Outcome(Status.PENDING, provider_order_id=order_id, detail="complete; no credentials in this view")
    if status in ("FAILED", "CANCELLED", "CANCELED"):
        return Outcome(Status.FAILED, provider_order_id=order_id, detail=f"order {status}")
    # PENDING (Tango reviews some orders for up to a business day) or a status new to us:
    # the order exists, so all we can do is ask again.
    return Outcome(Status.PENDING, provider_order_id=order_id, detail=f"order {status or 'without status'}")


def _credentials(reward: dict[str, Any]) -> dict[str, str]:
    delivery: dict[str, str] = {}
    for cred in reward.get("credentialList") or []:
        key = _CREDENTIAL_KEYS.get(cred.get("credentialType", ""))
        if key and cred.get("value"):
            delivery.setdefault(key, str(cred["value"]))
    for label, value in (reward.get("credentials") or {}).items():
        key = next((k for hint, k in _LABEL_HINTS if hint in label.lower()), None)
        if key and value and "expir" not in label.lower():
            delivery.setdefault(key, str(value))
    if set(delivery) <= {"expires"}:
        return {}
    return delivery


def _message(data: Any) -> str:
    """Tango's error body: {timestamp, requestId, httpCode, httpPhrase, i18nKey, message, errors}."""
    if not isinstance(data, dict):
        return ""
    parts = [data.get("i18nKey"), data.get("message")]
    parts += [e.get("message") for e in data.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(str(p) for p in parts if p)
