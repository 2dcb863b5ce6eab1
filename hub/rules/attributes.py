"""What a member tells the hub about themselves for personalised offers, and what they let
the partners they belong to use.

Only a fixed list of attributes exists (NAMES); each is stored normalised, one row per value.
Sharing is two switches, both off until the member turns them on:

- `attributes`: the partners whose programs the member holds may target them by these
  attributes (segments' `attributes` condition matches nobody who has not said yes);
- `programs`: those partners may also target them by which *other* partners' programs they
  hold (segments' `programs_held` condition).

A partner never reads the attributes themselves: it learns only that a member is in one of
its segments (and how many are). Changing or withdrawing them takes the member out of the
segments that used them at once.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.errors import Invalid
from hub.rules.engage_models import MemberAttribute, MemberSharing
from hub.rules.models import Segment, SegmentMember

LIST_NAMES = ("interests",)
NAMES = ("city", "birth_month", "interests", "preferred_language")
MAX_INTERESTS = 20


def normalise(name: str, value) -> str:
    """The stored (and matched) form of one value: months as 1..12, text trimmed and
    case-folded, so "Jakarta " and "jakarta" are one city."""
    if name == "birth_month":
        if type(value) is not int or not 1 <= value <= 12:
            raise Invalid("birth_month must be 1..12", slug="invalid-attribute")
        return str(value)
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 100:
        raise Invalid(f"{name} must be a non-empty text of at most 100 characters", slug="invalid-attribute")
    return value.strip().casefold()


def _shown(name: str, value: str):
    return int(value) if name == "birth_month" else value


@dataclass
class Profile:
    attributes: dict = field(default_factory=dict)
    share_attributes: bool = False
    share_programs: bool = False

    def as_dict(self) -> dict:
        return {"attributes": self.attributes,
                "share": {"attributes": self.share_attributes, "programs": self.share_programs}}


def get(session: Session, member_id: uuid.UUID) -> Profile:
    profile = Profile()
    for row in session.scalars(select(MemberAttribute).where(MemberAttribute.member_id == member_id)
                               .order_by(MemberAttribute.name, MemberAttribute.value)):
        value = _shown(row.name, row.value)
        if row.name in LIST_NAMES:
            profile.attributes.setdefault(row.name, []).append(value)
        else:
            profile.attributes[row.name] = value
    sharing = session.get(MemberSharing, member_id)
    if sharing is not None:
        profile.share_attributes, profile.share_programs = sharing.attributes, sharing.programs
    return profile


def put(session: Session, member_id: uuid.UUID, body: dict) -> Profile:
    """Replace the member's attributes and sharing choices with `body`'s (an attribute left
    out is forgotten)."""
    values: set[tuple[str, str]] = set()
    for name, given in body.get("attributes", {}).items():
        if name not in NAMES:
            raise Invalid(f"unknown attribute {name!r}; known: {', '.join(NAMES)}", slug="invalid-attribute")
        many = name in LIST_NAMES
        if many and (not isinstance(given, list) or len(given) > MAX_INTERESTS):
            raise Invalid(f"{name} must be a list of at most {MAX_INTERESTS}", slug="invalid-attribute")
        values |= {(name, normalise(name, v)) for v in (given if many else [given])}
    session.execute(delete(MemberAttribute).where(MemberAttribute.member_id == member_id))
    session.add_all(MemberAttribute(member_id=member_id, name=n, value=v) for n, v in sorted(values))
    share = body.get("share", {})
    sharing = session.get(MemberSharing, member_id) or MemberSharing(member_id=member_id)
    sharing.attributes = bool(share.get("attributes", False))
    sharing.programs = bool(share.get("programs", False))
    sharing.updated_at = utcnow()
    session.add(sharing)
    _leave_segments(session, member_id, sharing.programs)
    session.flush()
    return get(session, member_id)


def _leave_segments(session: Session, member_id: uuid.UUID, programs_shared: bool) -> None:
    """Take the member out of the segments that matched them on what they may just have
    changed or withdrawn, at once rather than at the next refresh (which puts them back if
    they still match): any segment with an attributes condition, and without programs shared
    any with a programs_held condition."""
    uses = {"attributes"} | (set() if programs_shared else {"programs_held"})
    rows = session.execute(select(Segment.id, Segment.definition).join(
        SegmentMember, SegmentMember.segment_id == Segment.id).where(SegmentMember.member_id == member_id))
    left = [segment_id for segment_id, definition in rows if uses & set(definition.get("conditions", {}))]
    if left:
        session.execute(delete(SegmentMember).where(
            SegmentMember.member_id == member_id, SegmentMember.segment_id.in_(left)))
