"""A partner's segments (hub/rules/segments.py); ops act for a partner named in `partner`."""
from hub.api.common import db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.rules import segments


def view(segment, member_count: int) -> dict:
    return {
        "code": segment.code, "name": segment.name, "conditions": segment.definition.get("conditions", {}),
        "member_count": member_count,
        "refreshed_at": ts(segment.refreshed_at) if segment.refreshed_at else None,
    }


def put(code, body, token_info, partner=None):
    caller = actor(token_info)

    def work(s):
        segment, created = segments.put(s, segments.acting_partner(s, caller, partner), code, body,
                                         by=caller.ref)
        return (201 if created else 200), view(segment, segments.counts(s, [segment.id]).get(segment.id, 0))

    status, body_out = db().write(work)
    return ok(body_out, status)


def get(code, token_info, partner=None):
    caller = actor(token_info)
    with db().read() as s:
        segment = segments.get(s, segments.acting_partner(s, caller, partner), code)
        return ok(view(segment, segments.counts(s, [segment.id]).get(segment.id, 0)))


def list_(token_info, partner=None, cursor=None, limit=50):
    caller = actor(token_info)
    with db().read() as s:
        rows, next_cursor = segments.list_(s, segments.acting_partner(s, caller, partner), cursor, limit)
        counts = segments.counts(s, [r.id for r in rows])
        return ok({"items": [view(r, counts.get(r.id, 0)) for r in rows], "next_cursor": next_cursor})


def refresh(code, token_info, partner=None):
    caller = actor(token_info)

    def work(s):
        segment = segments.get(s, segments.acting_partner(s, caller, partner), code)
        return view(segment, segments.refresh(s, segment))

    return ok(db().write(work))


def members(code, token_info, partner=None, cursor=None, limit=50):
    caller = actor(token_info)
    with db().read() as s:
        segment = segments.get(s, segments.acting_partner(s, caller, partner), code)
        rows, next_cursor = segments.members(s, segment, cursor, limit)
        return ok({"items": [{"member_id": str(m), "since": ts(since)} for m, since in rows],
                   "next_cursor": next_cursor})
