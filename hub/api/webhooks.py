"""Partner webhook endpoints and deliveries (hub/notify/webhook_endpoints.py)."""
import uuid
from datetime import timedelta

from sqlalchemy import select

from hub.api import runtime
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.notify import webhook_endpoints as endpoints
from hub.notify.webhook_models import WebhookEndpoint
from hub.programs.models import Partner


def create_endpoint(body, token_info):
    caller = actor(token_info)
    settings = runtime.current().settings

    def work(s):
        endpoint, secret = endpoints.create(s, caller, body, endpoints.UrlPolicy.from_settings(settings))
        return 201, {**_endpoint(s, endpoint), "secret": secret}

    return created(caller, body, work, redact=("secret",))


def list_endpoints(token_info, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = endpoints.list_endpoints(s, actor(token_info), cursor, limit)
        return ok({"items": [_endpoint(s, e) for e in items], "next_cursor": next_cursor})


def get_endpoint(endpoint_id, token_info):
    with db().read() as s:
        return ok(_endpoint(s, endpoints.get(s, actor(token_info), uuid.UUID(endpoint_id))))


def delete_endpoint(endpoint_id, token_info):
    caller = actor(token_info)
    return ok(db().write(lambda s: _endpoint(s, endpoints.delete(s, caller, uuid.UUID(endpoint_id)))))


def rotate_secret(endpoint_id, token_info):
    caller = actor(token_info)
    settings = runtime.current().settings

    def work(s):
        endpoint, secret = endpoints.rotate(s, caller, uuid.UUID(endpoint_id), timedelta(seconds=settings.webhooks_rotation_window))
        return {**_endpoint(s, endpoint), "secret": secret}

    return ok(db().write(work))


def list_deliveries(endpoint_id, token_info, status=None, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = endpoints.list_deliveries(s, actor(token_info), uuid.UUID(endpoint_id), status,
                                                       cursor, limit)
        return ok({"items": [_delivery(v) for v in items], "next_cursor": next_cursor})


def replay_delivery(delivery_id, token_info):
    caller = actor(token_info)
    return ok(db().write(lambda s: _delivery(endpoints.replay(s, caller, uuid.UUID(delivery_id)))), 202)


def _endpoint(s, e: WebhookEndpoint) -> dict:
    return {
        "id": str(e.id),
        "partner": s.scalar(select(Partner.code).where(Partner.id == e.partner_id)),
        "url": e.url,
        "event_types": list(e.event_types),
        "description": e.description,
        "enabled": e.disabled_at is None,
        "disabled_at": _ts(e.disabled_at),
        "disabled_reason": e.disabled_reason,
        "previous_secret_until": _ts(e.previous_secret_until),
        "created_at": ts(e.created_at),
    }


def _delivery(v: endpoints.DeliveryView) -> dict:
    d = v.delivery
    return {
        "id": str(d.id),
        "event_id": d.event_id,
        "event_type": v.event_type,
        "endpoint_id": str(d.endpoint_id),
        "status": d.status,
        "attempts": d.attempts,
        "max_attempts": d.max_attempts,
        "next_attempt_at": _ts(d.next_attempt_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": ts(d.created_at),
        "finished_at": _ts(d.finished_at),
        "attempt_log": [{"attempted_at": ts(a.attempted_at), "status_code": a.status_code,
                         "duration_ms": a.duration_ms, "error": a.error} for a in v.attempts],
    }


def _ts(value):
    return ts(value) if value is not None else None
