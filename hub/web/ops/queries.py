"""What the ops console's pages read, each within a reach: `partner_id` None for the ops
roles (every partner), a partner's id for partner_admin (that partner only; anything of
another partner is NotFound, as in the API). No Flask here.

Secrets never leave: API clients without their secret hash, webhook endpoints without their
signing secrets, redemptions without recipient or delivery.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.errors import Invalid, NotFound
from hub.identity.models import ApiClient
from hub.notify.webhook_models import DELIVERY_STATES, WebhookDelivery, WebhookEndpoint, WebhookEvent
from hub.programs.models import Partner, Program
from hub.rewards.models import NEEDS_REVIEW, Redemption, Reward

PAGE = 100  # rows a list shows (the newest)


@dataclass(frozen=True)
class PartnerRow:
    code: str
    name: str
    programs: int
    clients: int


def partners(session: Session, partner_id: uuid.UUID | None) -> list[PartnerRow]:
    programs = (select(func.count()).select_from(Program).where(Program.partner_id == Partner.id)
                .correlate(Partner).scalar_subquery())
    clients = (select(func.count()).select_from(ApiClient).where(ApiClient.partner_id == Partner.id,
                                                                 ApiClient.revoked_at.is_(None))
               .correlate(Partner).scalar_subquery())
    q = select(Partner.code, Partner.name, programs, clients).order_by(Partner.code)
    if partner_id is not None:
        q = q.where(Partner.id == partner_id)
    return [PartnerRow(*row) for row in session.execute(q)]


@dataclass(frozen=True)
class PartnerDetail:
    partner: Partner
    programs: list[Program]
    clients: list[ApiClient]
    endpoints: list[WebhookEndpoint]


def partner(session: Session, code: str, partner_id: uuid.UUID | None) -> PartnerDetail:
    q = select(Partner).where(Partner.code == code)
    if partner_id is not None:
        q = q.where(Partner.id == partner_id)
    found = session.scalar(q)
    if found is None:
        raise NotFound(f"no partner {code}", slug="partner-not-found")
    return PartnerDetail(
        found,
        list(session.scalars(select(Program).where(Program.partner_id == found.id).order_by(Program.code))),
        list(session.scalars(select(ApiClient).where(ApiClient.partner_id == found.id).order_by(ApiClient.created_at))),
        list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.partner_id == found.id)
                             .order_by(WebhookEndpoint.created_at))),
    )


@dataclass(frozen=True)
class DeliveryRow:
    id: uuid.UUID
    partner: str
    url: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: object


def deliveries(session: Session, partner_id: uuid.UUID | None, status: str | None = None) -> list[DeliveryRow]:
    """The newest webhook deliveries (of one status, if given)."""
    q = (select(WebhookDelivery.id, Partner.code, WebhookEndpoint.url, WebhookEvent.type, WebhookDelivery.status,
                WebhookDelivery.attempts, WebhookDelivery.last_status_code, WebhookDelivery.last_error,
                WebhookDelivery.created_at)
         .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
         .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
         .join(Partner, Partner.id == WebhookEndpoint.partner_id)
         .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(PAGE))
    if partner_id is not None:
        q = q.where(WebhookEndpoint.partner_id == partner_id)
    if status:
        if status not in DELIVERY_STATES:
            raise Invalid(f"status is one of {', '.join(DELIVERY_STATES)}", slug="invalid-status")
        q = q.where(WebhookDelivery.status == status)
    return [DeliveryRow(*row) for row in session.execute(q)]


@dataclass(frozen=True)
class ReviewRow:
    id: uuid.UUID
    program: str
    reward: str
    points: int
    provider: str | None
    attempts: int
    failure: str | None
    created_at: object


def redemptions_in_review(session: Session) -> list[ReviewRow]:
    """Orders waiting for a person, oldest first (the ops roles only: no partner reach)."""
    q = (select(Redemption.id, Program.code, Reward.code, Redemption.points, Redemption.provider,
                Redemption.attempts, Redemption.failure, Redemption.created_at)
         .join(Program, Program.id == Redemption.program_id).join(Reward, Reward.id == Redemption.reward_id)
         .where(Redemption.state == NEEDS_REVIEW).order_by(Redemption.created_at, Redemption.id).limit(PAGE))
    return [ReviewRow(*row) for row in session.execute(q)]

