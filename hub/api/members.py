import uuid

from hub.api import runtime, views
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.identity import ratelimit
from hub.programs import service


def enrol(body, token_info):
    caller = actor(token_info)
    runtime.current().limiter.attempt(ratelimit.ENROL_CLIENT, caller.client_id)
    return created(caller, body, lambda s: (201, views.member(service.enrol(s, caller, body))),
                   member_fields=("id",))  # the reply is the member


def lookup(token_info, program=None, **identifiers):
    with db().read() as s:
        found = service.lookup(s, actor(token_info), program, identifiers)
        return ok({"items": [views.member(m) for m in found]})


def get(member_id, token_info):
    with db().read() as s:
        return ok(views.member(service.member_detail(s, actor(token_info), uuid.UUID(member_id))))


def balances(member_id, token_info, scope="partner"):
    with db().read() as s:
        found = service.balances(s, actor(token_info), uuid.UUID(member_id), coalition=scope == "coalition")
        body = {"items": [views.balance(b) for b in found.own]}
        if found.shared:  # only with the member's consent (hub/privacy/sharing.py)
            body["shared"] = [{**views.balance(b), "partner": partner} for partner, b in found.shared]
        return ok(body)


def history(member_id, token_info, program=None, limit=50, cursor=None, scope="partner"):
    with db().read() as s:
        items, next_cursor = service.history(
            s, actor(token_info), uuid.UUID(member_id), program, cursor, limit, coalition=scope == "coalition"
        )
        return ok({"items": [views.movement(m) for m in items], "next_cursor": next_cursor})
