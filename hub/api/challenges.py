"""Coalition challenges (hub/rules/challenges.py): ops set them, anyone signed in lists the
open ones, a member sees their progress and badges."""
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.privacy import sharing
from hub.rules import challenges


def view(challenge, bonus_program: str) -> dict:
    return {
        "code": challenge.code, "name": challenge.name, "description": challenge.description,
        "starts_at": ts(challenge.starts_at), "ends_at": ts(challenge.ends_at), "goal": challenge.goal,
        "badge": {"code": challenge.badge_code, "name": challenge.badge_name},
        "bonus": {"program": bonus_program, "points": challenge.bonus_points},
    }


def progress_view(item: challenges.MemberChallenge) -> dict:
    badge = item.badge
    return {
        "challenge": view(item.challenge, item.bonus_program), "progress": item.progress, "target": item.target,
        "completed_at": ts(badge.awarded_at) if badge else None,
        "bonus_points": badge.bonus_points if badge else 0, "note": badge.note if badge else None,
    }


def create(body, token_info):
    caller = actor(token_info)
    return created(caller, body, lambda s: (201, view(challenges.create(s, caller, body), body["bonus"]["program"])))


def list_(token_info, cursor=None, limit=50):
    with db().read() as s:
        rows, next_cursor = challenges.list_active(s, cursor, limit)
        return ok({"items": [view(c, code) for c, code in rows], "next_cursor": next_cursor})


def mine(token_info):
    """Through a partner's app, progress only if the member shares their purchase history
    with its partner (challenges count purchases everywhere): the partner's view otherwise."""
    caller = actor(token_info)
    with db().read() as s:
        shared = sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY).partner_id is None
        open_, done = challenges.of_member(s, caller.member_id, with_progress=shared)
        done = done if shared else []
        return ok({"in_progress": [progress_view(c) for c in open_], "completed": [progress_view(c) for c in done]})
