import uuid

from flask import request

from hub import money
from hub.api import common, runtime
from hub.api.common import Call, Reply, db, flask_call, flask_reply, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.db import utcnow
from hub.errors import DomainError, NotFound
from hub.notify.policy import RelayPolicy
from hub.rewards import redemptions, relay
from hub.rewards.models import PENDING
from hub.rewards.providers import WebhookRejected


def _terms() -> redemptions.Terms:
    return redemptions.Terms.from_settings(runtime.current().settings)


def create(body, token_info):
    return flask_reply(post(flask_call(), body, token_info))


def post(call: Call, body: dict, token_info: dict) -> Reply:
    """What `create` does, without Flask: the lean path (hub/api/lean.py) runs it too."""
    caller = actor(token_info)

    def work(s):
        view = redemptions.redeem(s, caller, body, _terms())
        return (202 if view.redemption.state == PENDING else 201), redemption(view)

    # The voucher code is shown once, in this answer; a replay does not repeat it.
    return common.create(call, caller, body, work, redact=("delivery",),
                         read=lambda: redemptions.first_read(caller, body))


def list_redemptions(token_info, member_id=None, state=None, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = redemptions.list_redemptions(
            s, actor(token_info), cursor, limit, uuid.UUID(member_id) if member_id else None, state)
        return ok({"items": [redemption(v) for v in items], "next_cursor": next_cursor})


def get(redemption_id, token_info):
    with db().read() as s:
        return ok(redemption(redemptions.get(s, actor(token_info), uuid.UUID(redemption_id))))


class InvalidSignature(DomainError):
    status = 401
    slug = "invalid-signature"
    title = "Invalid signature"


def provider_webhook(provider, body):
    hub = runtime.current()
    connector = hub.providers.get(provider)
    if connector is None:
        raise NotFound(f"no provider {provider}", slug="provider-not-found")
    try:
        event = connector.verify_webhook(dict(request.headers), request.get_data(), utcnow())
    except WebhookRejected as exc:
        raise InvalidSignature(str(exc)) from exc
    status = hub.db.write(
        lambda s: relay.handle_event(s, provider, event,
                                     RelayPolicy.from_settings(hub.settings))
    )
    # handle_event answers "replayed", "ignored", "unknown" (no such order) or the order's state.
    shown = {"replayed": "replayed", "ignored": "ignored", "unknown": "ignored"}.get(status, "applied")
    return ok({"status": shown})


def redemption(v: redemptions.RedemptionView) -> dict:
    r = v.redemption
    return {
        "id": str(r.id),
        "state": r.state,
        "reward": {"code": v.reward.code, "kind": v.reward.kind, "name": v.reward.name},
        "program": v.program_code,
        "member_id": str(r.member_id),
        "points": r.points,
        "legs": [{"program": leg.program_code, "points": leg.points} for leg in v.legs],
        "amount": money.to_major(r.amount_minor, r.currency) if r.amount_minor is not None else None,
        "currency": r.currency,
        "provider": r.provider,
        "failure": r.failure,
        "delivery": v.delivery,
        "receipt": r.receipt,
        "created_at": ts(r.created_at),
        "resolved_at": ts(r.resolved_at) if r.resolved_at else None,
    }
