"""Engagement events, members' progress (stamp cards, streaks, vouchers, referrals) and
referral codes: for partners, and the member's own (/v1/me/...)."""
import uuid

from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.privacy import sharing
from hub.rules import engagement, progress as member_progress


def post(body, token_info):
    caller = actor(token_info)

    def work(s):
        is_new, view = engagement.post(s, caller, body)
        return (201 if is_new else 200), _event(view)

    return created(caller, body, work)


def progress(member_id, program, token_info):
    with db().read() as s:
        return ok(_progress(member_progress.for_partner(s, actor(token_info), uuid.UUID(member_id), program)))


def referral_code(member_id, program, token_info):
    caller = actor(token_info)
    code = db().write(lambda s: member_progress.referral_code(s, caller, uuid.UUID(member_id), program))
    return ok(_code(code))


def own_progress(token_info):
    """Through a partner's app: its partner's programs only, unless the member shares their
    purchase history with it (stamps, streaks and referrals tell of purchases)."""
    caller = actor(token_info)
    with db().read() as s:
        shown = sharing.partner_programs(s, sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY))
        found = [p for p in member_progress.own(s, caller.member_id) if shown is None or p.program.code in shown]
        # A brand holds the member's token: it never gets the hub's member id.
        return ok({"items": [_progress(p, with_member_id=False) for p in found]})


def own_referral_code(program, token_info):
    member_id = actor(token_info).member_id
    return ok(_code(db().write(lambda s: member_progress.own_referral_code(s, member_id, program))))


def _code(found: tuple[str, str]) -> dict:
    return {"program": found[0], "code": found[1]}


def _event(view: engagement.EventView) -> dict:
    e = view.event
    return {"id": str(e.id), "program": view.program, "member_id": str(view.member_id), "event_id": e.event_id,
            "kind": e.kind, "occurred_at": ts(e.occurred_at), "points": e.points, "capped": e.capped,
            "reason": e.reason, "created_at": ts(e.created_at)}


def _progress(p: member_progress.Progress, with_member_id: bool = True) -> dict:
    referred = p.referral.referred
    return {
        "program": p.program.code,
        "program_name": p.program.name,
        "member_id": str(p.member_id) if with_member_id else None,
        "stamp_cards": [{"id": c.id, "name": c.name, "stamps": c.stamps, "of": c.of, "completed": c.completed}
                        for c in p.cards],
        "streaks": [{"id": r.id, "period": r.period, "run": r.run, "length": r.length, "completed": r.completed}
                    for r in p.streaks],
        "vouchers": [{"code": v.code, "reward": v.reward_code, "reward_name": v.reward, "issued_at": ts(v.issued_at)}
                     for v in p.vouchers],
        "referral": {
            "offered": p.referrals_offered,
            "code": p.referral.code,
            "referred": p.referral.referrals,
            "referred_by": {"state": referred.state, "reason": referred.reason} if referred else None,
        },
    }
