"""Engagement events partners post (a survey answered, a review, a social share, the app
installed): points per kind, with daily caps and once-only kinds.

Every event is recorded, rewarded or not: one beyond its cap gets 0 points, `capped` and
the reason, so the partner and the member see why. The partner's event_id is unique per
program: the same event again is answered with the original, other content under the same
id is a conflict. The points are an award keyed by the event id.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.errors import Conflict, Invalid
from hub.programs.earning import parse_time
from hub.programs.models import Membership
from hub.programs.service import partner_program, refuse_hosted, resolve_membership
from hub.rules import periods, versions
from hub.rules.awards import Recipient, award
from hub.rules.document import Finding
from hub.rules.frequency_models import EngagementEvent

ENGAGEMENT = "engagement"
LABELS = {"survey": "a survey", "review": "a review", "social_share": "a social share",
          "app_download": "installing the app"}


@dataclass(frozen=True)
class EventView:
    event: EngagementEvent
    program: str
    member_id: uuid.UUID


def post(session: Session, actor: Actor, body: dict) -> tuple[bool, EventView]:
    """Record an event and award its points. Returns (created now, the event)."""
    program = partner_program(session, actor, body["program"])
    refuse_hosted(program)
    membership = resolve_membership(session, program, body["member"])
    occurred_at = parse_time(body["occurred_at"])
    kind = body["kind"]
    prior = session.scalar(select(EngagementEvent).where(
        EngagementEvent.program_id == program.id, EngagementEvent.event_id == body["event_id"]))
    if prior is not None:
        if (prior.membership_id, prior.kind, prior.occurred_at) != (membership.id, kind, occurred_at):
            raise Conflict(f"event_id {body['event_id']} was already posted with other content",
                           slug="duplicate-event")
        return False, EventView(prior, program.code, membership.member_id)
    rules = versions.in_force(session, program.id, occurred_at)
    offer = ((rules.section(ENGAGEMENT) if rules else None) or {}).get(kind)
    if offer is None:
        raise Invalid(f"{program.code} gives no points for {kind} events", slug="engagement-kind-not-offered")
    day = periods.local_day(occurred_at, rules).isoformat()
    # One member's events are counted and rewarded one at a time (the membership row's lock),
    # so two events at once cannot both take the last place under a cap.
    session.execute(select(Membership.id).where(Membership.id == membership.id).with_for_update())
    refusal = _cap_reached(session, membership.id, kind, day, offer)
    points = 0 if refusal else offer["points"]
    event = EngagementEvent(
        id=uuid.uuid4(), program_id=program.id, membership_id=membership.id, event_id=body["event_id"], kind=kind,
        occurred_at=occurred_at, local_day=day, points=points, capped=refusal is not None,
        reason=refusal or f"Points for {LABELS[kind]}", client_id=actor.client_id)
    if refusal is None:
        _, event.award_id = award(
            session, Recipient(program.id, program.issuance_account_id, membership.id, membership.account_id),
            kind=ENGAGEMENT, key=body["event_id"], points=points, reason=event.reason, caused_by=actor.ref)
    session.add(event)
    session.flush()
    return True, EventView(event, program.code, membership.member_id)


def _cap_reached(session: Session, membership_id: uuid.UUID, kind: str, day: str, offer: dict) -> str | None:
    """Why this event earns nothing, or None."""
    rewarded = select(func.count()).select_from(EngagementEvent).where(
        EngagementEvent.membership_id == membership_id, EngagementEvent.kind == kind,
        EngagementEvent.capped.is_(False))
    if offer.get("once") and session.scalar(rewarded):
        return f"{LABELS[kind]} is rewarded once per member"
    cap = offer.get("daily_cap")
    if cap and session.scalar(rewarded.where(EngagementEvent.local_day == day)) >= cap:
        return f"daily cap reached: {cap} {kind} event(s) rewarded per day"
    return None


def lint(document: dict) -> list[Finding]:
    found = []
    for kind, offer in (document.get(ENGAGEMENT) or {}).items():
        if offer["points"] <= 0:
            found.append(Finding(f"/engagement/{kind}/points", "an offered kind must grant points"))
        if not (offer.get("daily_cap") or offer.get("once") or offer.get("allow_unbounded")):
            found.append(Finding(f"/engagement/{kind}/daily_cap",
                                 'a kind with neither daily_cap nor once needs "allow_unbounded": true'))
    return found
