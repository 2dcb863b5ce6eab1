"""Surprise rewards: points ops grant a member outside any rule, with the reason the member
sees. Each is an award (hub.rules.awards, kind "surprise") keyed by the caller's own
surprise_id, so a retried grant pays once.

Only ops grant them (the API's scope says so): a partner's own bonuses come from its rules,
which bound what they award. Each grant is capped (MAX_POINTS), so a slip of the keyboard
cannot mint a fortune.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.audit import trail
from hub.errors import Conflict, Invalid
from hub.programs.service import refuse_hosted, resolve_membership
from hub.rules import admin
from hub.rules.awards import Recipient, award
from hub.rules.models import Award

KIND = "surprise"
MAX_POINTS = 100_000


@dataclass(frozen=True)
class SurpriseView:
    id: uuid.UUID
    program: str
    member_id: uuid.UUID
    surprise_id: str
    points: int
    reason: str
    created_at: datetime


def grant(session: Session, actor: Actor, code: str, member: dict, points: int, reason: str,
          surprise_id: str) -> tuple[bool, SurpriseView]:
    """(granted now, the grant). A repeat of surprise_id with the same member, points and
    reason is the first grant; with anything else a 409."""
    if not 0 < points <= MAX_POINTS:
        raise Invalid(f"a surprise is 1 to {MAX_POINTS} points", slug="surprise-too-large")
    reason = reason.strip()
    program = admin.program_for(session, actor, code)
    refuse_hosted(program)
    membership = resolve_membership(session, program, member)
    recipient = Recipient(program.id, program.issuance_account_id, membership.id, membership.account_id)
    granted, award_id = award(session, recipient, kind=KIND, key=surprise_id, points=points, reason=reason,
                              caused_by=actor.ref)
    row = session.get(Award, award_id)
    if not granted and (row.membership_id, row.points, row.reason) != (membership.id, points, reason):
        raise Conflict(f"surprise {surprise_id} was granted before with another member, points or reason",
                       slug="surprise-conflict")
    if granted:  # the reason is free text: it stays out of the trail
        trail.record(session, actor=trail.who(actor), action="surprise.grant", target=f"program:{code}",
                     after={"surprise_id": surprise_id, "member_id": str(membership.member_id), "points": points})
    return granted, SurpriseView(row.id, program.code, membership.member_id, row.key, row.points, row.reason, row.created_at)
