"""Partner webhooks' tables: endpoints, events, deliveries (one per event and subscribed
endpoint) and the attempts of each delivery."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigId, JSONDoc, UTCDateTime, utcnow

# Delivery states: pending (being tried, or waiting for its next attempt), then succeeded (a
# 2xx answer) or failed (out of attempts, or its endpoint disabled: 410 Gone or by its owner).
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
DELIVERY_STATES = (PENDING, SUCCEEDED, FAILED)


class WebhookEndpoint(Base):
    """Where a partner receives its events. The signing secret is kept sealed (hub/crypto);
    after a rotation the previous one signs too until `previous_secret_until`."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_partner", "partner_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    event_types: Mapped[list] = mapped_column(JSONDoc, default=list)  # empty: every event type
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), default=None)


class WebhookEvent(Base):
    """One event as it happened; its id is the webhook-id every delivery of it carries."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # msg_<32 hex>
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """An event on its way to one endpoint. `lease_until` keeps two deliveries of its task
    from sending at once; `max_attempts` is the retry schedule's, or one more than those made
    when ops or the partner replayed it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_endpoint_status", "endpoint_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class WebhookAttempt(Base):
    """One HTTP request of a delivery: what came back, how long it took (never the secret)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300), default=None)
