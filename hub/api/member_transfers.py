"""Member-to-member transfers and programs' transfer policies (hub/exchange/transfers.py)."""
import uuid

from hub.api import views
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.exchange import transfers
from hub.privacy import sharing


def create(body, token_info):
    caller = actor(token_info)
    return created(caller, body, lambda s: (201, views.member_transfer(transfers.send(s, caller, body), caller)))


def list_(token_info, member_id=None, cursor=None, limit=50):
    caller = actor(token_info)
    with db().read() as s:
        items, next_cursor = transfers.list_transfers(
            s, sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY), cursor, limit,
            uuid.UUID(member_id) if member_id else None)
        return ok({"items": [views.member_transfer(t, caller) for t in items], "next_cursor": next_cursor})


def get(transfer_id, token_info):
    caller = actor(token_info)
    with db().read() as s:
        seen = sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY)
        return ok(views.member_transfer(transfers.get(s, seen, uuid.UUID(transfer_id)), caller))


def set_policy(code, body, token_info):
    caller = actor(token_info)
    policy = db().write(
        lambda s: transfers.set_policy(s, caller, code, body["max_points"], body["daily_limit"]))
    return ok(views.transfer_policy(policy))
