"""A member's standing in a program: their tier (and the way to the next) and the points
that expire soon; for a partner (its own programs) and for the member (/v1/me)."""
import uuid

from hub.api import views
from hub.api.common import db, ok
from hub.api.security import actor
from hub.privacy import sharing
from hub.rules import expiry, tiers


def member_tier(member_id, program, token_info):
    with db().read() as s:
        return ok(_tier(tiers.member_progress(s, actor(token_info), uuid.UUID(member_id), program)))


def own_tiers(token_info):
    """Tiers and qualifying amounts tell of purchases: through a partner's app, those in its
    partner's programs only, unless the member shares their purchase history with it."""
    caller = actor(token_info)
    with db().read() as s:
        shown = sharing.partner_programs(s, sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY))
        return ok({"items": [_tier(p) for p in tiers.own_progress(s, caller.member_id)
                             if shown is None or p.program in shown]})


def member_expiring(member_id, program, token_info, days=90):
    with db().read() as s:
        return ok(_expiring(expiry.member_expiring(s, actor(token_info), uuid.UUID(member_id), program, days)))


def own_expiring(token_info, days=90):
    with db().read() as s:
        return ok({"items": [_expiring(e) for e in expiry.own_expiring(s, actor(token_info).member_id, days)]})


def _level(t: tiers.Tiers, level: tiers.Level | None) -> dict | None:
    return None if level is None else {"code": level.code, "name": level.name, "threshold": t.amount(level.threshold)}


def _tier(p: tiers.Progress) -> dict:
    t, standing = p.tiers, p.standing
    return {
        "program": p.program,
        "basis": t.basis,
        "unit": t.unit(),
        "tier": _level(t, t.level(standing.tier)),
        "tier_since": views.ts(standing.tier_since) if standing.tier_since else None,
        "qualifying": t.amount(standing.total(t)),
        "window_from": views.ts(p.window_from),
        "window_to": views.ts(p.window_to),
        "next_level": _level(t, p.next_level),
        "missing": t.amount(p.missing) if p.missing is not None else None,
        "next_review_at": views.ts(standing.tier_review_at) if standing.tier_review_at else None,
    }


def _expiring(e: expiry.Expiring) -> dict:
    return {"program": e.program,
            "items": [{"expires_at": views.ts(when), "points": points} for when, points in e.items]}
