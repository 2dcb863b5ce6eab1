"""The console's actions (ops_admin only: console._authorize refuses other roles' POSTs).
Each runs one domain call in one transaction, which writes its audit entry (the services
audit themselves, as the actor `ops:<user id>`): the entry exists if and only if the change
committed. A refusal (the order no longer in review, an expired reservation, a missing
reason) is shown as a page with its status, and changes nothing."""
from __future__ import annotations

import uuid

from flask import redirect, request, url_for

from hub.errors import DomainError, Invalid
from hub.ledger import LedgerError
from hub.notify import webhook_endpoints
from hub.rewards import relay
from hub.web import common
from hub.web.ops.console import blueprint, current_ops, refused


def _id(field: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.form.get(field, ""))
    except ValueError:
        raise Invalid(f"{field} is not an id", slug="invalid-id") from None


def act(field: str, work, back: str, done: str):
    """Run `work(session, id)` in one transaction and go back to the list, or show why not."""
    try:
        target_id = _id(field)
        common.db().write(lambda s: work(s, target_id))
    except DomainError as exc:
        return refused(exc.status, exc.detail)
    except LedgerError as exc:  # e.g. a reservation already resolved
        return refused(409, str(exc))
    return redirect(url_for(back, done=done))


def given_reason() -> str:
    return request.form.get("reason", "")


@blueprint.post("/redemptions/retry")
def retry_redemption():
    # The reason is optional here: one given is kept as a review note (relay.requeue).
    reason, by = given_reason(), current_ops().audit_actor
    return act("redemption_id", lambda s, rid: relay.requeue(s, rid, by=by, reason=reason), "ops.redemptions",
               "requeued")


@blueprint.post("/redemptions/refund")
def refund_redemption():
    reason, by = given_reason(), current_ops().audit_actor
    return act("redemption_id", lambda s, rid: relay.resolve(s, rid, fulfilled=False, reason=reason, by=by),
                "ops.redemptions", "refunded")


@blueprint.post("/redemptions/fulfil")
def fulfil_redemption():
    reason, by = given_reason(), current_ops().audit_actor
    return act("redemption_id", lambda s, rid: relay.resolve(s, rid, fulfilled=True, reason=reason, by=by),
                "ops.redemptions", "marked fulfilled")


@blueprint.post("/webhooks/replay")
def replay_delivery():
    actor = current_ops().actor
    return act("delivery_id", lambda s, did: webhook_endpoints.replay(s, actor, did), "ops.webhooks", "replayed")
