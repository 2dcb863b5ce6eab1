"""/v1/me: a member's own data, with the member's access token (actor.member_id)."""
from hub.api import views
from hub.api.common import db, ok
from hub.api.security import actor
from hub.errors import NotFound
from hub.identity import consent
from hub.programs import service


def get(token_info):
    with db().read() as s:
        found = service.own_balances(s, actor(token_info).member_id)
        return ok({"memberships": [
            {"program": b.program.code, "program_name": b.program.name, "partner": partner,
             "balance": views.balance(b)} for partner, b in found]})


def consents(token_info):
    """What the member shares with the calling brand's partner: a brand learns nothing of the
    member's other partners (the member sees them all on the hub's dashboard)."""
    caller = actor(token_info)
    with db().read() as s:
        sector = consent.sector_of(s, caller.client_id)
        return ok({"items": [
            {"partner": c.partner, "client_id": c.client_id, "scopes": c.scopes, "claims": c.claims,
             "granted_at": views.ts(c.granted_at)}
            for c in consent.list_for(s, caller.member_id) if c.sector == sector]})


def revoke_consent(partner, token_info):
    """A brand lets the member withdraw the consent to its own partner ("disconnect"); another
    partner's consent is not its to touch, so it is answered as none."""
    caller = actor(token_info)

    def work(s):
        if consent.sector_of(s, partner) != consent.sector_of(s, caller.client_id):
            raise NotFound("no consent given to that partner", slug="consent-not-found")
        consent.revoke(s, caller.member_id, partner)

    db().write(work)
    return None, 204
