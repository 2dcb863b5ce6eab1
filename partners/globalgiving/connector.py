"""GlobalGiving connector (charity donations).

Documented by GlobalGiving: POST /secure/givingservice/donations with api_key, api_token and
optional is_test in the query and {"donation": {refcode, transactionId, email, amount,
currencyCode, project: {id}, ...}} as the body; the answer is synchronous and returns the
refcode. Projects come from GET /public/projectservice/all/projects/active.

ASSUMED (see README): the JSON shape of the answer, a repeated refcode returning the original
donation, and the lookup GET /secure/givingservice/donations/{refcode}: GlobalGiving documents
no way to find a donation by refcode, yet the relay must ask before it voids points.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from hub.rewards.providers import (
    CatalogItem, Kind, OrderRequest, Outcome, Status, WebhookEvent, WebhookRejected,
)
from partners import _http
from partners.globalgiving.config import DEFAULTS

NOT_FOUND_CODE = "donation_not_found"  # a 404 without it may be a route that does not exist
MIN_OPEN_AMOUNT = "1.01"               # "amount - a numeric value greater than one"


class GlobalGivingProvider:
    name = "globalgiving"
    kind = Kind.DONATION

    def __init__(self, config: Mapping[str, str]):
        cfg = _http.settings(DEFAULTS, config)
        self._http = _http.Client(cfg, params={"api_key": cfg["api_key"]})
        self._secure = {"api_token": cfg["api_token"]}
        if _http.flag(cfg["is_test"]):
            self._secure["is_test"] = "true"

    def catalog(self) -> list[CatalogItem]:
        data = _http.fetch(self._http, "/public/projectservice/all/projects/active")
        projects = (data.get("projects") or {}).get("project") or []
        items = []
        for project in projects:
            # Projects suggest amounts (donationOptions); they take any amount above 1 as well.
            options = ((project.get("donationOptions") or {}).get("donationOption")) or []
            amounts = tuple(sorted({_http.minor(o["amount"], "USD") for o in options if o.get("amount")}))
            items.append(CatalogItem(
                product=str(project["id"]), name=project.get("title", ""), kind=Kind.DONATION, currency="USD",
                denominations=amounts, min_minor=None if amounts else _http.minor(MIN_OPEN_AMOUNT, "USD"),
                description=(project.get("organization") or {}).get("name", ""),
            ))
        return items

    def place_order(self, order: OrderRequest) -> Outcome:
        resp = self._http.send("POST", "/secure/givingservice/donations", params=self._secure, json={
            "donation": {
                "refcode": order.reference,
                "transactionId": order.reference,
                "email": order.recipient.email,
                "amount": _http.major(order.amount_minor, order.currency),
                "currencyCode": order.currency,
                "project": {"id": _project_id(order.product)},
                "signupForGGNewsletter": False,
                "signupForCharityNewsletter": False,
            },
        })
        if isinstance(resp, Outcome):
            return resp
        if resp.status_code in (200, 201, 202):
            data = _http.body(resp)
            if not isinstance(data, dict) or not isinstance(data.get("donation"), dict):
                return _http.unreadable(resp)
            return _donation_outcome(data["donation"])
        return _http.error_outcome(resp, _message)

    def lookup(self, reference: str) -> Outcome:
        resp = self._http.send("GET", f"/secure/givingservice/donations/{reference}", params=self._secure)
        if isinstance(resp, Outcome):
            return resp
        data = _http.body(resp)
        if resp.status_code == 404 and _code(data) == NOT_FOUND_CODE:
            return Outcome(Status.NOT_FOUND, detail="no donation with this refcode")
        if resp.status_code != 200:
            return _http.lookup_error(resp, _message)
        if not isinstance(data, dict) or not isinstance(data.get("donation"), dict):
            return _http.unreadable(resp)
        return _donation_outcome(data["donation"])

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        raise WebhookRejected("GlobalGiving sends no webhooks")


def _project_id(product: str) -> int | str:
    return int(product) if product.isdigit() else product


def _donation_outcome(donation: dict[str, Any]) -> Outcome:
    """A receipt means the donation went through (the documented API is synchronous). The
    status field is the sandbox's way to model a slow or failed donation."""
    status = str(donation.get("status", "")).lower()
    receipt = donation.get("receipt") or {}
    receipt_id = receipt.get("receiptNumber")
    if status == "failed":
        return Outcome(Status.FAILED, provider_order_id=receipt_id, detail="donation failed")
    if receipt_id and status in ("", "complete"):
        project = receipt.get("project") or {}
        charity = (project.get("organization") or {}).get("name") or project.get("title") or ""
        return Outcome(Status.FULFILLED, provider_order_id=str(receipt_id), delivery={
            "receipt_id": str(receipt_id), "amount": str(receipt.get("amount", "")),
            "currency": str(receipt.get("currencyCode", "USD")), "charity": charity,
        })
    return Outcome(Status.PENDING, provider_order_id=receipt_id, detail=f"donation {status or 'without receipt'}")


def _code(data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _message(data: Any) -> str:
    """The sandbox's error body (assumed): {"error": {"code": ..., "message": ...}}."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return ""
