"""Partner webhooks: events that concern a partner (a member's tier changed, ...), signed the
Standard Webhooks way (https://www.standardwebhooks.com) and delivered to the partner's
endpoints (docs/webhooks.md is the partner's guide).

`emit` runs in the transaction of the change: it records the event and one delivery per
subscribed endpoint, each with an outbox message, so an event goes out if and only if its
change committed. A partner with no endpoint for the event costs one indexed read and no
write. The deliveries are then sent by Celery (hub/notify/webhook_delivery.py).

`sign` and `verify` are the signature scheme both ways: the hub signs with them, and partners'
tests (and docs/webhooks.md) verify with them.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

from sqlalchemy import Uuid, bindparam, insert, select
from sqlalchemy.orm import Session

from hub.db import bind_values, one_of, run, utcnow, values_shape
from hub.notify import outbox
from hub.notify.webhook_models import PENDING, WebhookDelivery, WebhookEndpoint, WebhookEvent
from hub.programs.models import Program

# Outbox topic of a delivery to make (payload {"delivery_id": ...}).
TOPIC = "webhooks.delivery"

# Every event type a partner can subscribe to (an endpoint with none listed gets them all).
EVENT_TYPES = (
    "tier.changed",
    "points.earned",
    "points.reversed",
    "redemption.fulfilled",
    "redemption.failed",
    "conversion.completed",
    "member.linked",
    "member.erased",
    "settlement.closed",
)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64
TOLERANCE = 5 * 60  # seconds either side of now a webhook-timestamp may be (the spec's window)

# How long after a failed attempt the next one goes (each with +-10 % jitter): the first try
# and seven retries, over about 27 hours (docs/webhooks.md has the table). After the last, the
# delivery has failed; ops or the partner can still replay it.
RETRY_SCHEDULE = tuple(timedelta(seconds=s) for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600))
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1


class WebhookVerificationError(Exception):
    """A webhook whose headers or signature do not check out: reject it (HTTP 400/401)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_` (the spec's rule)."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64 HMAC-SHA256>` of "{msg_id}.{timestamp}.{body}"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def sign(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three webhook-* headers; during a secret rotation, one signature per secret,
    space-separated (a receiver accepts the request if any of them matches its secret)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
    }


def header(headers: Mapping[str, str], name: str) -> str:
    """HTTP header names are case-insensitive; a plain dict is not."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return ""


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance: int = TOLERANCE) -> dict:
    """Check a webhook the hub sent (what a partner's receiver does) and return its JSON body.

    Raises WebhookVerificationError when a header is missing, the timestamp is more than
    `tolerance` seconds from `now` (a replayed capture), or no v1 signature matches."""
    msg_id = header(headers, "webhook-id")
    stamp = header(headers, "webhook-timestamp")
    given = header(headers, "webhook-signature")
    if not (msg_id and stamp and given):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance window")
    expected = signature(secret, msg_id, timestamp, body).encode()
    # Compare every candidate (no early exit): which one matched leaks nothing then.
    matched = False
    for candidate in given.split(" "):
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise WebhookVerificationError("no signature matches")
    try:
        return json.loads(body)
    except ValueError:
        raise WebhookVerificationError("body is not JSON") from None


def body_of(event_type: str, timestamp: str, data: dict) -> bytes:
    """The JSON body a delivery sends (and signs): the same bytes on every attempt."""
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": data},
                      separators=(",", ":"), sort_keys=True).encode()


def subscribed(event_types: list[str], event_type: str) -> bool:
    return not event_types or event_type in event_types


# Live endpoints, with their partner: of one partner (emit), or of the partners of some
# programs (emit_for_programs). Built once: they run for every event.
_ENDPOINT_COLUMNS = (WebhookEndpoint.id, WebhookEndpoint.event_types, WebhookEndpoint.partner_id)
_ENDPOINTS = select(*_ENDPOINT_COLUMNS).where(
    WebhookEndpoint.partner_id == bindparam("p", type_=Uuid()), WebhookEndpoint.disabled_at.is_(None))
# By how the program ids are bound (hub.db.one_of): one program, the usual case (a
# redemption's outcome), goes through `run` straight to the driver.
_PROGRAMS_ENDPOINTS = {
    shape: select(*_ENDPOINT_COLUMNS).distinct()
    .join(Program, Program.partner_id == WebhookEndpoint.partner_id)
    .where(one_of(Program.id, "programs", shape), WebhookEndpoint.disabled_at.is_(None))
    for shape in ("one", "in", "array")
}


def emit(session: Session, partner_id: uuid.UUID, event_type: str, data: dict) -> str:
    """Queue event `event_type` (e.g. "tier.changed") with `data` for the partner's webhook
    endpoints, in the caller's transaction. Returns the event id (msg_..., the webhook-id
    partners deduplicate on). `data` must be JSON (ids and amounts as strings or integers)."""
    (event_id,) = emit_many(session, partner_id, event_type, [data])
    return event_id


def emit_many(session: Session, partner_id: uuid.UUID, event_type: str, events: list[dict]) -> list[str]:
    """`emit` of several events of one type to one partner (a batch of purchases): one read
    of its endpoints, and one insert of events and one of deliveries, for all of them.
    Returns their event ids, in order."""
    event_ids = [_event_id() for _ in events]
    rows, _ = run(session.connection(), _ENDPOINTS, {"p": partner_id})
    _fan_out(session, rows, event_type, [({partner_id: event_id}, data) for event_id, data in zip(event_ids, events)])
    return event_ids


def emit_for_programs(session: Session, program_ids: Iterable[uuid.UUID], event_type: str,
                      data: Callable[[], dict]) -> None:
    """`emit` to the partners of these programs (each partner once): for an event about
    programs rather than one partner (a conversion concerns both sides). `data` is called
    only if some endpoint is subscribed, so it may query: without one, this is one read."""
    emit_to(session, program_endpoints(session, program_ids), event_type, data)


def program_endpoints(session: Session, program_ids: Iterable[uuid.UUID]) -> list[tuple]:
    """The live endpoints of these programs' partners, each once: read once for several
    events (`emit_to`), such as the outcomes of a relay wave's orders of one program."""
    conn, programs = session.connection(), list(set(program_ids))
    shape = values_shape(conn, programs)
    rows, _ = run(conn, _PROGRAMS_ENDPOINTS[shape], {"programs": bind_values(shape, programs)})
    return rows


def emit_to(session: Session, endpoints: list[tuple], event_type: str, data: Callable[[], dict]) -> None:
    """`emit_for_programs` to endpoints read by `program_endpoints`."""
    _fan_out(session, endpoints, event_type, [({}, data)])


def _event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _fan_out(session: Session, rows, event_type: str,
             events: list[tuple[dict[uuid.UUID, str], dict | Callable[[], dict]]]) -> None:
    """For each event (its ids per partner, given or made here, and its data): the event,
    once per partner, and a delivery with its outbox message for each endpoint of `rows`
    (id, event_types, partner_id) subscribed to it."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    targets = [(endpoint_id, partner_id) for endpoint_id, types, partner_id in rows
               if subscribed(types or [], event_type)]
    if not targets:
        return
    now = utcnow()
    partners = list(dict.fromkeys(partner_id for _, partner_id in targets))
    event_rows, deliveries = [], []
    for event_ids, data in events:
        if callable(data):
            data = data()
        for partner_id in partners:
            event_ids.setdefault(partner_id, _event_id())
            event_rows.append({"id": event_ids[partner_id], "partner_id": partner_id, "type": event_type,
                               "data": data, "created_at": now})
        deliveries += [{"id": uuid.uuid4(), "event_id": event_ids[partner_id], "endpoint_id": endpoint_id,
                        "status": PENDING, "attempts": 0, "max_attempts": MAX_ATTEMPTS, "next_attempt_at": now,
                        "created_at": now}
                       for endpoint_id, partner_id in targets]
    session.execute(insert(WebhookEvent), event_rows)
    session.execute(insert(WebhookDelivery), deliveries)
    for delivery in deliveries:
        outbox.enqueue(session, TOPIC, str(delivery["id"]), {"delivery_id": str(delivery["id"])})
