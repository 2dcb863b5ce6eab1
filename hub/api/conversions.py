"""Conversion rates, pairs, quotes and conversions (hub/exchange)."""
import uuid
from decimal import Decimal

from hub.api import common, runtime
from hub.api.common import Call, Reply, db, flask_call, flask_reply, ok
from hub.actor import Actor
from hub.api.security import actor
from hub.api.views import ts
from hub.audit import review_notes
from hub.exchange import conversions, rates
from hub.exchange.models import PENDING
from hub.privacy import sharing


def _terms() -> conversions.Terms:
    return conversions.Terms.from_settings(runtime.current().settings)


def list_rates(token_info, program=None, include_closed=False):
    with db().read() as s:
        pairs = rates.list_pairs(s, actor(token_info), program, include_closed)
        return ok({"items": [pair_view(p) for p in pairs]})


def set_rate(body, token_info):
    caller = actor(token_info)
    rate = db().write(lambda s: rates.set_rate(s, body["program"], Decimal(body["point_value"]), caller.ref))
    return ok(rate_view(rate, body["program"]), 201)


def rate_history(program, token_info, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = rates.rate_history(s, program, cursor, limit)
        return ok({"items": [rate_view(r, program) for r in items], "next_cursor": next_cursor})


def set_pair(from_program, to_program, body, token_info):
    caller = actor(token_info)

    return ok(db().write(lambda s: pair_view(rates.set_pair(
        s, from_program, to_program, open=body["open"], fee_bps=body.get("fee_bps", 0),
        min_points=body.get("min_points", 1), increment=body.get("increment", 1), updated_by=caller.ref))))


def create_quote(body, token_info):
    return flask_reply(post_quote(flask_call(), body, token_info))


def post_quote(call: Call, body: dict, token_info: dict) -> Reply:
    """What `create_quote` does, without Flask: the lean path (hub/api/lean.py) runs it too."""
    caller, terms = actor(token_info), _terms()
    with db().read() as s:
        quote, remote_check = conversions.quote(s, caller, body, terms)
    if remote_check is not None:
        remote_check.run(runtime.current().hosted)
    return Reply(201, quote_view(quote, terms.secret_key, caller))


def create(body, token_info):
    return flask_reply(post(flask_call(), body, token_info))


def post(call: Call, body: dict, token_info: dict) -> Reply:
    """What `create` does, without Flask (the lean path runs it too)."""
    caller = actor(token_info)

    def work(s):
        view = conversions.execute(s, caller, body, _terms())
        return (202 if view.conversion.state == PENDING else 201), conversion_view(view, caller)

    return common.create(call, caller, body, work)


def list_conversions(token_info, member_id=None, cursor=None, limit=50):
    caller = actor(token_info)
    with db().read() as s:
        items, next_cursor = conversions.list_conversions(
            s, sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY), cursor, limit,
            uuid.UUID(member_id) if member_id else None)
        return ok({"items": [conversion_view(v, caller) for v in items], "next_cursor": next_cursor})


def get(conversion_id, token_info):
    caller = actor(token_info)
    with db().read() as s:
        seen = sharing.through_brand(s, caller, sharing.PURCHASE_HISTORY)
        view = conversions.get(s, seen, uuid.UUID(conversion_id))
        shown = conversion_view(view, caller)
        if _ops(caller):  # ops' own notes: never to a partner or a member
            shown["review_notes"] = [note_view(n) for n in review_notes.about(s, review_notes.CONVERSION,
                                                                              view.conversion.id)]
        return ok(shown)


def _ops(caller: Actor) -> bool:
    return caller.member_id is None and caller.partner_id is None and "ops:read" in caller.scopes


def _member_id(member_id: uuid.UUID, caller: Actor) -> str | None:
    """The hub's member id, for partners and ops; a member's token (held by a brand) gets none."""
    return None if caller.member_id is not None else str(member_id)


def pair_view(p: rates.PairView) -> dict:
    example = p.rate
    return {
        "from": p.from_code, "to": p.to_code, "open": p.open,
        "from_value": format(p.from_value, "f"), "to_value": format(p.to_value, "f"),
        "fee_bps": p.fee_bps, "min_points": p.min_points, "increment": p.increment,
        "example": {"points": p.increment, "receive": example.points_out,
                    "fee_units": format(example.fee_units, "f")},
        "updated_at": ts(p.updated_at),
    }


def rate_view(r, program_code: str) -> dict:
    return {"program": program_code, "point_value": format(r.point_value.normalize(), "f"),
            "valid_from": ts(r.valid_from), "set_by": r.set_by}


def quote_view(q: conversions.Quote, secret_key: str, caller: Actor) -> dict:
    return {
        "quote": q.sign(secret_key), "id": str(q.id), "member_id": _member_id(q.member_id, caller),
        "from": q.from_code,
        "to": q.to_code, "points": q.points_in, "receive": q.points_out,
        "from_value": format(q.from_value, "f"), "to_value": format(q.to_value, "f"),
        "fee_bps": q.fee_bps, "fee_units": format(q.fee_units, "f"), "expires_at": ts(q.expires_at),
    }


def note_view(n: review_notes.Note) -> dict:
    return {"action": n.action, "by": n.actor, "reason": n.reason, "in_review_for": n.in_review_for,
            "created_at": ts(n.created_at)}


def conversion_view(v: conversions.ConversionView, caller: Actor) -> dict:
    c = v.conversion
    return {
        "id": str(c.id), "quote_id": str(c.quote_id), "state": c.state, "member_id": _member_id(c.member_id, caller),
        "from": v.from_code, "to": v.to_code, "points": c.points_in, "receive": c.points_out,
        "from_value": format(c.from_value, "f"), "to_value": format(c.to_value, "f"),
        "fee_bps": c.fee_bps, "fee_units": format(c.fee_units, "f"), "units": format(c.units_out, "f"),
        "hosted_side": c.hosted_side, "failure": c.failure, "created_at": ts(c.created_at),
        "resolved_at": ts(c.resolved_at) if c.resolved_at else None,
    }
