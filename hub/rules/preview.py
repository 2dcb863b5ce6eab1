"""Rule preview: what a hypothetical purchase would earn, and why, under the rules in force
at its occurred_at (which may be in the future, to try a version before it starts). Reads
only: counters are read, not taken, so a preview never spends a cap or a budget."""
from __future__ import annotations

from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.db import utcnow
from hub.programs import earning
from hub.programs.service import refuse_hosted, resolve_membership
from hub.rules import admin, counters, rating, versions
from hub.rules.segments import segments_of


def preview(session: Session, actor: Actor, program_code: str, body: dict) -> rating.Rating:
    program = admin.program_for(session, actor, program_code)  # ops: any; a partner: its own
    refuse_hosted(program)
    amount_minor = earning.amount_of(body, program.earn_currency)
    occurred_at = earning.parse_time(body["occurred_at"], past_only=False) if "occurred_at" in body else utcnow()
    items = earning.items_of(body, amount_minor) or ()
    purchase = rating.PurchaseFacts(amount_minor, occurred_at, body.get("store_id"), body.get("channel"),
                                    tuple((i["category"], i["amount_minor"]) for i in items))
    membership = resolve_membership(session, program, body["member"]) if "member" in body else None
    tier = body.get("tier", membership.tier if membership else None)
    if "segments" in body:
        segments = frozenset(body["segments"])
    elif membership is not None:
        segments = frozenset(segments_of(session, program.partner_id, [membership.member_id]).get(membership.member_id, ()))
    else:
        segments = frozenset()
    member = rating.MemberFacts(tier, segments)
    rules = versions.in_force(session, program.id, occurred_at)
    first = rating.rate(program.earn_rate, body["currency"], rules, purchase, member)
    if not first.claims:
        return first
    usage = counters.usage(session, program.id, membership.id if membership else None, first.claims)
    return rating.rate(program.earn_rate, body["currency"], rules, purchase, member, usage)
