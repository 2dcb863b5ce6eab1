"""/v1/me/attributes: what the member tells the hub about themselves, and what the partners
they belong to may use (hub/rules/attributes.py)."""
from hub.api.common import db, ok
from hub.api.security import actor
from hub.privacy import sharing
from hub.rules import attributes


def get(token_info):
    caller = actor(token_info)
    with db().read() as s:
        return ok(_shown(s, caller, attributes.get(s, caller.member_id)))


def put(body, token_info):
    caller = actor(token_info)
    return ok(db().write(lambda s: _shown(s, caller, attributes.put(s, caller.member_id, body))))


def _shown(s, caller, profile: attributes.Profile) -> dict:
    """A partner never reads the attributes (only who is in its segments), so neither does its
    app with the member's token: it sees and sets the sharing switches, and may write them."""
    if sharing.brand_partner(s, caller) is not None:
        profile = attributes.Profile(share_attributes=profile.share_attributes, share_programs=profile.share_programs)
    return profile.as_dict()
