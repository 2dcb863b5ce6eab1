"""Personalised offers (hub/rules/offers.py): the member's own, or a partner's view of them."""
import uuid

from hub.api.common import db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.privacy import sharing
from hub.programs import service
from hub.rules import offers


def view(offer: offers.Offer) -> dict:
    return {
        "kind": offer.kind, "code": offer.code, "name": offer.name, "program": offer.program,
        "score": offer.score, "reason": offer.reason, "ends_at": ts(offer.ends_at) if offer.ends_at else None,
        "points": offer.points, "progress": offer.progress, "target": offer.target,
    }


def mine(token_info, limit=50):
    """Through a partner's app, that partner's offers only: consent never shows a partner
    another partner's objects (nor what their targeting says of the member)."""
    caller = actor(token_info)
    with db().read() as s:
        found = offers.for_member(s, caller.member_id, partner_id=sharing.brand_partner(s, caller), limit=limit)
        return ok({"items": [view(o) for o in found]})


def of_member(member_id, token_info, limit=50):
    caller = actor(token_info)
    member = uuid.UUID(member_id)
    with db().read() as s:
        service.member_view(s, caller, member)  # 404 unless the member holds one of its programs
        found = offers.for_member(s, member, partner_id=caller.partner_id, limit=limit)
        return ok({"items": [view(o) for o in found]})
