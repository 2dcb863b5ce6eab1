"""/v1/me: a member's own data, with the member's access token (actor.member_id)."""
from hub.api import views
from hub.api.common import db, ok
from hub.api.security import actor
from hub.identity import consent
from hub.programs import service


def get(token_info):
    with db().read() as s:
        found = service.own_balances(s, actor(token_info).member_id)
        return ok({"memberships": [
            {"program": b.program.code, "program_name": b.program.name, "partner": partner,
             "balance": views.balance(b)} for partner, b in found]})


def consents(token_info):
    with db().read() as s:
        return ok({"items": [
            {"partner": c.partner, "client_id": c.client_id, "scopes": c.scopes, "claims": c.claims,
             "granted_at": views.ts(c.granted_at)} for c in consent.list_for(s, actor(token_info).member_id)]})


def revoke_consent(partner, token_info):
    member_id = actor(token_info).member_id
    db().write(lambda s: consent.revoke(s, member_id, partner))
    return None, 204
