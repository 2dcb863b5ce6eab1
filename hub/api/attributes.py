"""/v1/me/attributes: what the member tells the hub about themselves (hub/rules/attributes.py),
and `share`, two switches kept for compatibility that grant or withdraw the consent purposes
`attributes` and `programs_held` to all of the member's partners at once (hub/privacy/sharing.py;
the member sees and changes each partner's on /v1/me/sharing and the dashboard)."""
from hub.api.common import db, ok
from hub.api.security import actor
from hub.privacy import sharing
from hub.rules import attributes

SWITCHES = {"attributes": sharing.ATTRIBUTES, "programs": sharing.PROGRAMS_HELD}


def get(token_info):
    caller = actor(token_info)
    with db().read() as s:
        return ok(_shown(s, caller))


def put(body, token_info):
    caller = actor(token_info)

    def write(s):
        for switch, shared in body.get("share", {}).items():
            sharing.set_everywhere(s, caller, SWITCHES[switch], shared, sharing.API)
        attributes.put(s, caller.member_id, body.get("attributes", {}))
        return _shown(s, caller)

    return ok(db().write(write))


def _shown(s, caller) -> dict:
    """A partner never reads the attributes (only who is in its segments), so neither does its
    app with the member's token: it sees the switches (as they stand for its partner)."""
    values = {} if sharing.brand_partner(s, caller) is not None else attributes.get(s, caller.member_id)
    return {"attributes": values,
            "share": {switch: sharing.everywhere(s, caller, purpose) for switch, purpose in SWITCHES.items()}}
