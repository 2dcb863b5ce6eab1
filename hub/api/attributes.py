"""/v1/me/attributes: what the member tells the hub about themselves, and what the partners
they belong to may use (hub/rules/attributes.py)."""
from hub.api.common import db, ok
from hub.api.security import actor
from hub.rules import attributes


def get(token_info):
    with db().read() as s:
        return ok(attributes.get(s, actor(token_info).member_id).as_dict())


def put(body, token_info):
    member_id = actor(token_info).member_id
    return ok(db().write(lambda s: attributes.put(s, member_id, body).as_dict()))
