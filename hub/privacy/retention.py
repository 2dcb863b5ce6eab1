"""Retention (issue 7, item 1; docs/privacy.md, "Retention"): delete what has outlived its
period. Each job deletes rows in batches, one transaction per batch, oldest first, so it
holds no long locks and can stop and rerun at any point (idempotent: a second run finds
nothing). `run` runs them all: `hub privacy retention` and the daily Celery task.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, or_, select

from hub.db import Database, utcnow
from hub.idempotency import IdempotencyKey
from hub.identity.account_models import AccountToken, LinkRequest, LoginSession, OutgoingMail
from hub.identity.oidc.models import AuthorizationCode, RefreshToken
from hub.notify.outbox import OutboxMessage
from hub.notify.webhook_models import PENDING, WebhookAttempt, WebhookDelivery, WebhookEvent
from hub.settings import Settings

BATCH = 1000


@dataclass(frozen=True)
class Job:
    name: str
    days: Callable[[Settings], int]
    key: object  # the primary key column
    due: Callable[[datetime], object]  # cutoff -> where clause


def _webhook_events_due(cutoff: datetime):
    pending = exists().where(WebhookDelivery.event_id == WebhookEvent.id, WebhookDelivery.status == PENDING)
    return and_(WebhookEvent.created_at < cutoff, ~pending)


JOBS = (
    Job("outgoing_mail", lambda s: s.retention_mail_days, OutgoingMail.id,
        lambda cutoff: OutgoingMail.created_at < cutoff),
    Job("account_tokens", lambda s: s.retention_tokens_days, AccountToken.id,
        lambda cutoff: or_(AccountToken.expires_at < cutoff, AccountToken.used_at < cutoff)),
    Job("link_requests", lambda s: s.retention_tokens_days, LinkRequest.id,
        lambda cutoff: or_(LinkRequest.expires_at < cutoff, LinkRequest.used_at < cutoff)),
    Job("oidc_codes", lambda s: s.retention_tokens_days, AuthorizationCode.code_hash,
        lambda cutoff: AuthorizationCode.expires_at < cutoff),
    Job("oidc_refresh_tokens", lambda s: s.retention_tokens_days, RefreshToken.token_hash,
        lambda cutoff: RefreshToken.expires_at < cutoff),
    Job("login_sessions", lambda s: s.retention_sessions_days, LoginSession.id,
        lambda cutoff: or_(LoginSession.ended_at < cutoff, LoginSession.expires_at < cutoff)),
    Job("idempotency_keys", lambda s: s.retention_idempotency_days, IdempotencyKey.id,
        lambda cutoff: IdempotencyKey.created_at < cutoff),
    Job("webhook_events", lambda s: s.retention_webhooks_days, WebhookEvent.id, _webhook_events_due),
    Job("outbox", lambda s: s.retention_outbox_days, OutboxMessage.id, lambda cutoff: OutboxMessage.done_at < cutoff),
)


def _purge(db: Database, job: Job, cutoff: datetime, batch: int) -> int:
    table = job.key.table
    total = 0
    while True:
        def one(session) -> int:
            ids = list(session.scalars(select(job.key).where(job.due(cutoff)).limit(batch)))
            if not ids:
                return 0
            if table is WebhookEvent.__table__:  # its deliveries and their attempts first
                deliveries = select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(ids))
                session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
                session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
            session.execute(delete(table).where(job.key.in_(ids)))
            return len(ids)
        done = db.write(one)
        total += done
        if done < batch:
            return total


def run(db: Database, settings: Settings, *, now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Run every job: {job name: rows deleted}."""
    now = now or utcnow()
    return {job.name: _purge(db, job, now - timedelta(days=job.days(settings)), batch) for job in JOBS}
