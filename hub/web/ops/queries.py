"""What the ops console's pages read, each within a reach: `partner_id` None for the ops
roles (every partner), a partner's id for partner_admin (that partner only; anything of
another partner is NotFound, as in the API). No Flask here.

Every list is a page of at most PAGE rows in a stable order (a unique code, or a time with the
id to order rows of the same instant), with the opaque cursor of the next page (None on the
last; hub.pagination): a list is never cut short without a way on. A cursor the hub did not
issue is Invalid (`invalid-cursor`).

Secrets never leave: API clients without their secret hash, webhook endpoints without their
signing secrets, redemptions without recipient or delivery.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import pagination
from hub.errors import Invalid, NotFound
from hub.identity.models import ApiClient
from hub.notify.webhook_models import DELIVERY_STATES, WebhookDelivery, WebhookEndpoint, WebhookEvent
from hub.programs.models import Partner, Program
from hub.rewards.models import NEEDS_REVIEW, Redemption, Reward

PAGE = 100  # rows a page of any console list shows


def _oldest_first(session: Session, model, cursor: str | None, *where) -> tuple[list, str | None]:
    """A page of `model`'s rows (matching `where`), oldest first by (created_at, id)."""
    rows, next_cursor = pagination.oldest_first(session, select(model).where(*where), model.created_at, model.id,
                                                cursor, PAGE, lambda row: (row[0].created_at, row[0].id))
    return [row[0] for row in rows], next_cursor


@dataclass(frozen=True)
class PartnerRow:
    code: str
    name: str
    programs: int
    clients: int


def partners(session: Session, partner_id: uuid.UUID | None,
             cursor: str | None = None) -> tuple[list[PartnerRow], str | None]:
    programs = (select(func.count()).select_from(Program).where(Program.partner_id == Partner.id)
                .correlate(Partner).scalar_subquery())
    clients = (select(func.count()).select_from(ApiClient).where(ApiClient.partner_id == Partner.id,
                                                                 ApiClient.revoked_at.is_(None))
               .correlate(Partner).scalar_subquery())
    q = select(Partner.code, Partner.name, programs, clients)
    if partner_id is not None:
        q = q.where(Partner.id == partner_id)
    rows, next_cursor = pagination.by_text(session, q, Partner.code, cursor, PAGE)
    return [PartnerRow(*row) for row in rows], next_cursor


@dataclass(frozen=True)
class PartnerDetail:
    """A partner and a page of each of its lists, with each list's next cursor."""
    partner: Partner
    programs: tuple[list[Program], str | None]
    clients: tuple[list[ApiClient], str | None]
    endpoints: tuple[list[WebhookEndpoint], str | None]


def partner(session: Session, code: str, partner_id: uuid.UUID | None, programs: str | None = None,
            clients: str | None = None, endpoints: str | None = None) -> PartnerDetail:
    """The partner `code` (within the reach) and the pages of its lists at the cursors given."""
    q = select(Partner).where(Partner.code == code)
    if partner_id is not None:
        q = q.where(Partner.id == partner_id)
    found = session.scalar(q)
    if found is None:
        raise NotFound(f"no partner {code}", slug="partner-not-found")
    program_rows, next_programs = pagination.by_text(
        session, select(Program, Program.code).where(Program.partner_id == found.id), Program.code, programs, PAGE)
    return PartnerDetail(
        found,
        ([row[0] for row in program_rows], next_programs),
        _oldest_first(session, ApiClient, clients, ApiClient.partner_id == found.id),
        _oldest_first(session, WebhookEndpoint, endpoints, WebhookEndpoint.partner_id == found.id),
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


def deliveries(session: Session, partner_id: uuid.UUID | None, status: str | None = None,
               cursor: str | None = None) -> tuple[list[DeliveryRow], str | None]:
    """Webhook deliveries (of one status, if given), newest first."""
    q = (select(WebhookDelivery.id, Partner.code, WebhookEndpoint.url, WebhookEvent.type, WebhookDelivery.status,
                WebhookDelivery.attempts, WebhookDelivery.last_status_code, WebhookDelivery.last_error,
                WebhookDelivery.created_at)
         .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
         .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
         .join(Partner, Partner.id == WebhookEndpoint.partner_id))
    if partner_id is not None:
        q = q.where(WebhookEndpoint.partner_id == partner_id)
    if status:
        if status not in DELIVERY_STATES:
            raise Invalid(f"status is one of {', '.join(DELIVERY_STATES)}", slug="invalid-status")
        q = q.where(WebhookDelivery.status == status)
    rows, next_cursor = pagination.newest_first(session, q, WebhookDelivery.created_at, WebhookDelivery.id, cursor,
                                                PAGE, lambda row: (row.created_at, row.id))
    return [DeliveryRow(*row) for row in rows], next_cursor


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


def redemptions_in_review(session: Session, cursor: str | None = None) -> tuple[list[ReviewRow], str | None]:
    """Orders waiting for a person, oldest first (the ops roles only: no partner reach)."""
    q = (select(Redemption.id, Program.code, Reward.code, Redemption.points, Redemption.provider,
                Redemption.attempts, Redemption.failure, Redemption.created_at)
         .join(Program, Program.id == Redemption.program_id).join(Reward, Reward.id == Redemption.reward_id)
         .where(Redemption.state == NEEDS_REVIEW))
    rows, next_cursor = pagination.oldest_first(session, q, Redemption.created_at, Redemption.id, cursor, PAGE,
                                                lambda row: (row.created_at, row.id))
    return [ReviewRow(*row) for row in rows], next_cursor

