"""Partners' webhook endpoints and their deliveries, as the API manages them.

Tenancy: a partner manages its own endpoints (another partner's is a 404, as if it did not
exist); ops (a token with no partner) manage any partner's. A signing secret is shown once,
when made (creation, rotation), and kept sealed at rest (hub/crypto); it is never logged.
"""
from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub import crypto, pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.notify import outbox, webhooks
from hub.notify.webhook_models import (
    DELIVERY_STATES, FAILED, PENDING, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent,
)
from hub.programs.models import Partner

SEAL_PURPOSE = "webhook-secret"
Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    """The host's addresses in the resolver's order of preference, each once."""
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)))


@dataclass(frozen=True)
class UrlPolicy:
    allow_http: bool
    allow_private: bool

    @classmethod
    def from_settings(cls, settings) -> "UrlPolicy":
        return cls(settings.webhooks_http_allowed, settings.webhooks_private_allowed)


class UnsafeUrl(Invalid):
    slug = "invalid-webhook-url"


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    # is_global is false for private, loopback, link-local, unique-local, shared (100.64/10),
    # reserved and unspecified addresses.
    return ip.is_global and not ip.is_multicast


def check_url(url: str, policy: UrlPolicy, resolve: Resolver = _resolve) -> str | None:
    """Refuse (UnsafeUrl) a URL the hub must not post to: not https (unless allowed), with
    credentials, or whose host resolves to any non-public address (unless allowed). Run when
    the endpoint is saved and again before every delivery: a name that resolved to a public
    address then may point inside the network now (DNS rebinding).

    Returns the checked address a delivery must connect to (the resolver's first): resolving
    the name again to connect could get another answer (a rebinding server's second one,
    127.0.0.1). None when private addresses are allowed: any address would pass."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("the webhook URL must be an absolute https URL")
    if parts.scheme == "http" and not policy.allow_http:
        raise UnsafeUrl("the webhook URL must use https")
    if parts.username or parts.password:
        raise UnsafeUrl("the webhook URL must not carry credentials")
    if policy.allow_private:
        return None
    try:
        addresses = resolve(parts.hostname, port)
    except OSError as exc:
        raise UnsafeUrl(f"the webhook URL's host {parts.hostname} does not resolve: {exc}") from None
    inside = [a for a in addresses if not _public(a)]
    if inside or not addresses:
        raise UnsafeUrl(f"the webhook URL's host {parts.hostname} resolves to a private, loopback or "
                        f"link-local address ({', '.join(inside) or 'none'})")
    return addresses[0]


def seal(secret: str) -> str:
    return crypto.seal(SEAL_PURPOSE, secret.encode())


def unseal(sealed: str) -> str:
    return crypto.unseal(SEAL_PURPOSE, sealed).decode()


def _event_types(given: list[str] | None) -> list[str]:
    unknown = sorted(set(given or ()) - set(webhooks.EVENT_TYPES))
    if unknown:
        raise Invalid(f"unknown event types: {', '.join(unknown)}", slug="invalid-event-type")
    return [t for t in webhooks.EVENT_TYPES if t in (given or ())]  # the canonical order, no repeats


def _partner_of(session: Session, actor: Actor, code: str | None) -> uuid.UUID:
    """The partner an endpoint is for: the caller's own, or (ops) the one named."""
    if actor.partner_id is not None:
        if code is not None and session.scalar(select(Partner.code).where(Partner.id == actor.partner_id)) != code:
            raise NotFound(f"no partner {code}", slug="partner-not-found")
        return actor.partner_id
    if code is None:
        raise Invalid("ops must name the partner the endpoint is for", slug="partner-required")
    partner_id = session.scalar(select(Partner.id).where(Partner.code == code))
    if partner_id is None:
        raise NotFound(f"no partner {code}", slug="partner-not-found")
    return partner_id


def create(session: Session, actor: Actor, body: dict, policy: UrlPolicy,
           resolve: Resolver = _resolve) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned this once)."""
    partner_id = _partner_of(session, actor, body.get("partner"))
    check_url(body["url"], policy, resolve)
    secret = webhooks.new_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(), partner_id=partner_id, url=body["url"], description=body.get("description"),
        event_types=_event_types(body.get("event_types")), secret_sealed=seal(secret),
        created_by=actor.ref, created_at=utcnow(),
    )
    session.add(endpoint)
    session.flush()
    _record(session, actor, "webhook_endpoint.create", endpoint,
            after={"partner_id": str(partner_id), "event_types": endpoint.event_types})
    return endpoint, secret


def get(session: Session, actor: Actor, endpoint_id: uuid.UUID, *, lock: bool = False) -> WebhookEndpoint:
    q = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if actor.partner_id is not None:
        q = q.where(WebhookEndpoint.partner_id == actor.partner_id)
    endpoint = session.scalar(q.with_for_update() if lock else q)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", slug="webhook-endpoint-not-found")
    return endpoint


def list_endpoints(session: Session, actor: Actor, cursor: str | None, limit: int) -> tuple[list, str | None]:
    q = select(WebhookEndpoint)
    if actor.partner_id is not None:
        q = q.where(WebhookEndpoint.partner_id == actor.partner_id)
    rows, next_cursor = pagination.newest_first(session, q, WebhookEndpoint.created_at, WebhookEndpoint.id, cursor,
                                                limit, lambda row: (row[0].created_at, row[0].id))
    return [row[0] for row in rows], next_cursor


def disable(session: Session, endpoint_id: uuid.UUID, reason: str) -> None:
    """No more events to this endpoint: it is skipped by `emit`, and its pending deliveries
    fail (their outbox messages end when next due: the task finds them no longer pending)."""
    now = utcnow()
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                                  WebhookEndpoint.disabled_at.is_(None))
                    .values(disabled_at=now, disabled_reason=reason[:200]))
    session.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                                  WebhookDelivery.status == PENDING)
                    .values(status=FAILED, finished_at=now, next_attempt_at=None,
                            last_error=f"endpoint disabled: {reason}"[:300]))


def delete(session: Session, actor: Actor, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """DELETE disables (the deliveries stay listed); doing it again changes nothing."""
    endpoint = get(session, actor, endpoint_id, lock=True)
    before = {"enabled": endpoint.disabled_at is None}
    disable(session, endpoint.id, f"disabled by {actor.ref}")
    session.refresh(endpoint)
    _record(session, actor, "webhook_endpoint.disable", endpoint, before=before, after={"enabled": False})
    return endpoint


def _record(session: Session, actor: Actor, action: str, endpoint: WebhookEndpoint, **change) -> None:
    """The trail names the endpoint by id: its URL may carry a token, its secrets never go in."""
    trail.record(session, actor=trail.who(actor), action=action, target=f"webhook_endpoint:{endpoint.id}", **change)


def rotate(session: Session, actor: Actor, endpoint_id: uuid.UUID,
           window: timedelta) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one keeps signing too (both signatures on every delivery)
    for `window`, so the partner can switch its receiver without missing an event."""
    endpoint = get(session, actor, endpoint_id, lock=True)
    if endpoint.disabled_at is not None:
        raise Conflict(f"webhook endpoint {endpoint_id} is disabled", slug="webhook-endpoint-disabled")
    secret = webhooks.new_secret()
    endpoint.previous_secret_sealed = endpoint.secret_sealed
    endpoint.previous_secret_until = utcnow() + window
    endpoint.secret_sealed = seal(secret)
    session.flush()
    _record(session, actor, "webhook_endpoint.rotate_secret", endpoint,
            after={"previous_secret_until": endpoint.previous_secret_until.isoformat()})
    return endpoint, secret


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    event_type: str
    attempts: list[WebhookAttempt]


def list_deliveries(session: Session, actor: Actor, endpoint_id: uuid.UUID, status: str | None,
                    cursor: str | None, limit: int) -> tuple[list[DeliveryView], str | None]:
    get(session, actor, endpoint_id)
    q = (select(WebhookDelivery, WebhookEvent.type).join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
         .where(WebhookDelivery.endpoint_id == endpoint_id))
    if status is not None:
        if status not in DELIVERY_STATES:
            raise Invalid(f"status is one of {', '.join(DELIVERY_STATES)}", slug="invalid-status")
        q = q.where(WebhookDelivery.status == status)
    rows, next_cursor = pagination.newest_first(session, q, WebhookDelivery.created_at, WebhookDelivery.id, cursor,
                                                limit, lambda row: (row[0].created_at, row[0].id))
    return _views(session, rows), next_cursor


def _views(session: Session, rows) -> list[DeliveryView]:
    """The page's deliveries with their attempts (one query for the whole page)."""
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {}
    if rows:
        for attempt in session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_([row[0].id for row in rows])).order_by(WebhookAttempt.id)):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [DeliveryView(delivery, event_type, attempts.get(delivery.id, [])) for delivery, event_type in rows]


def replay(session: Session, actor: Actor, delivery_id: uuid.UUID) -> DeliveryView:
    """One new attempt now, with the same webhook-id and body: a finished delivery (succeeded
    or failed) is pending again for exactly one attempt; a pending one is tried now instead
    of at its next retry."""
    q = (select(WebhookDelivery, WebhookEvent.type).join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
         .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
         .where(WebhookDelivery.id == delivery_id))
    if actor.partner_id is not None:
        q = q.where(WebhookEndpoint.partner_id == actor.partner_id)
    row = session.execute(q.with_for_update(of=WebhookDelivery)).first()
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}", slug="webhook-delivery-not-found")
    delivery, event_type = row
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint.disabled_at is not None:
        raise Conflict(f"its endpoint is disabled ({endpoint.disabled_reason})", slug="webhook-endpoint-disabled")
    now = utcnow()
    if delivery.status != PENDING:
        delivery.status = PENDING
        delivery.max_attempts = delivery.attempts + 1
        delivery.finished_at = None
    delivery.next_attempt_at = now
    key = str(delivery.id)
    outbox.complete(session, webhooks.TOPIC, key)  # the open message, if any: one message per delivery
    outbox.enqueue(session, webhooks.TOPIC, key, {"delivery_id": key})
    session.flush()
    _record(session, actor, "webhook_delivery.replay", endpoint, after={"delivery_id": key})
    return _views(session, [(delivery, event_type)])[0]
