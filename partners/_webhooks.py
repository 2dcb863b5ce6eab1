"""Webhook checks shared by the connectors: signatures compared in constant time, and a
timestamp window so that a captured request cannot be replayed days later (the caller also
refuses a seen event id, which covers replays inside the window)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from hub.notify.webhooks import header  # noqa: F401  (the connectors' too)
from hub.rewards.providers import WebhookRejected

TOLERANCE = timedelta(minutes=5)  # Standard Webhooks' replay window


def hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def require_signature(given: str, expected: str) -> None:
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected("bad or missing signature")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def payload(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookRejected("body is not a JSON object")
    return data


def timestamp(value: Any, now: datetime) -> datetime:
    """Parse an ISO 8601 timestamp and require it within ±5 minutes of now."""
    if not isinstance(value, str) or not value:
        raise WebhookRejected("no event timestamp")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookRejected(f"unreadable timestamp {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if abs(now - when) > TOLERANCE:
        raise WebhookRejected(f"timestamp {value} is outside the ±5 min window")
    return when


def required(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookRejected(f"no {key}")
    return value
