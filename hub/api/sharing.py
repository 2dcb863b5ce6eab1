"""/v1/me/sharing: what the member shares with their partners, per purpose (hub/privacy/sharing.py)."""
from hub.api import views
from hub.api.common import db, ok
from hub.api.security import actor
from hub.privacy import sharing


def _choice(c: sharing.Choice) -> dict:
    return {"partner": c.partner, "partner_name": c.partner_name, "purpose": c.purpose,
            "shared": c.granted_at is not None, "granted_at": views.ts(c.granted_at) if c.granted_at else None}


def list_(token_info):
    with db().read() as s:
        return ok({"items": [_choice(c) for c in sharing.choices(s, actor(token_info))]})


def grant(partner, purpose, token_info):
    caller = actor(token_info)
    return ok(_choice(db().write(lambda s: sharing.grant(s, caller, partner, purpose, sharing.API))))


def revoke(partner, purpose, token_info):
    caller = actor(token_info)
    return ok(_choice(db().write(lambda s: sharing.revoke(s, caller, partner, purpose, sharing.API))))
