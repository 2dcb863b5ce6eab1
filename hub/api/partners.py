from hub.api import views
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.programs import service


def create(body, token_info):
    caller = actor(token_info)
    return created(
        caller,
        body,
        lambda s: (201, views.partner(service.create_partner(s, body["code"], body["name"], by=caller.ref))),
    )


def list_(token_info, limit=50, cursor=None):
    with db().read() as s:
        rows, next_cursor = service.list_partners(s, cursor, limit)
        return ok({"items": [views.partner(p) for p in rows], "next_cursor": next_cursor})
