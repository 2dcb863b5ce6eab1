"""The console's actions (ops_admin only: console._authorize refuses other roles' POSTs).
Each runs one domain call and its audit entry in one transaction: the entry exists if and
only if the change committed. A refusal (the order no longer in review, an expired
reservation, a missing reason) is shown as a page with its status, and changes nothing."""
from __future__ import annotations

import uuid

from flask import redirect, request, url_for

from hub.audit import trail
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


def _act(action: str, target_kind: str, field: str, work, back: str):
    """Run `work(session, id)` (it returns the entry's `after`) and audit it, or show why not."""
    me = current_ops()
    try:
        target_id = _id(field)

        def tx(s):
            after = work(s, target_id)
            trail.record(s, actor=me.audit_actor, action=action, target=f"{target_kind}:{target_id}", after=after)

        common.db().write(tx)
    except DomainError as exc:
        return refused(exc.status, exc.detail)
    except LedgerError as exc:  # e.g. a reservation already resolved
        return refused(409, str(exc))
    return redirect(url_for(back, done=action))


def _reason() -> str:
    return request.form.get("reason", "")


@blueprint.post("/redemptions/retry")
def retry_redemption():
    def work(s, rid):
        relay.requeue(s, rid)
        return {"state": "pending"}

    return _act("redemption.retry", "redemption", "redemption_id", work, "ops.redemptions")


@blueprint.post("/redemptions/refund")
def refund_redemption():
    reason, by = _reason(), current_ops().audit_actor

    def work(s, rid):
        return {"state": relay.resolve(s, rid, fulfilled=False, reason=reason, by=by)}

    return _act("redemption.refund", "redemption", "redemption_id", work, "ops.redemptions")


@blueprint.post("/redemptions/fulfil")
def fulfil_redemption():
    reason, by = _reason(), current_ops().audit_actor

    def work(s, rid):
        return {"state": relay.resolve(s, rid, fulfilled=True, reason=reason, by=by)}

    return _act("redemption.mark_fulfilled", "redemption", "redemption_id", work, "ops.redemptions")


@blueprint.post("/webhooks/replay")
def replay_delivery():
    actor = current_ops().actor

    def work(s, did):
        webhook_endpoints.replay(s, actor, did)
        return {"status": "pending"}

    return _act("webhook.replay", "webhook_delivery", "delivery_id", work, "ops.webhooks")
