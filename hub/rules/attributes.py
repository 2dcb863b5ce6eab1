"""What a member tells the hub about themselves for personalised offers.

Only a fixed list of attributes exists (NAMES); each is stored normalised, one row per value.
Partners may target the member by them only with the member's consent to that partner for
the purpose `attributes` (hub/privacy/sharing.py; segments' `attributes` condition matches
nobody else), and by which other partners' programs they hold with `programs_held`.

A partner never reads the attributes themselves: it learns only that a member is in one of
its segments (and how many are). Changing them takes the member out of the segments that used
them at once.
"""
from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.errors import Invalid
from hub.privacy import sharing
from hub.rules.engage_models import MemberAttribute

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


def get(session: Session, member_id: uuid.UUID) -> dict:
    """The member's attributes as they gave them (normalised): name -> value, or list."""
    found: dict = {}
    for row in session.scalars(select(MemberAttribute).where(MemberAttribute.member_id == member_id)
                               .order_by(MemberAttribute.name, MemberAttribute.value)):
        value = _shown(row.name, row.value)
        if row.name in LIST_NAMES:
            found.setdefault(row.name, []).append(value)
        else:
            found[row.name] = value
    return found


def put(session: Session, member_id: uuid.UUID, given: dict) -> None:
    """Replace the member's attributes with `given` (an attribute left out is forgotten)."""
    values: set[tuple[str, str]] = set()
    for name, value in given.items():
        if name not in NAMES:
            raise Invalid(f"unknown attribute {name!r}; known: {', '.join(NAMES)}", slug="invalid-attribute")
        many = name in LIST_NAMES
        if many and (not isinstance(value, list) or len(value) > MAX_INTERESTS):
            raise Invalid(f"{name} must be a list of at most {MAX_INTERESTS}", slug="invalid-attribute")
        values |= {(name, normalise(name, v)) for v in (value if many else [value])}
    session.execute(delete(MemberAttribute).where(MemberAttribute.member_id == member_id))
    session.add_all(MemberAttribute(member_id=member_id, name=n, value=v) for n, v in sorted(values))
    sharing.leave_segments(session, member_id, {sharing.ATTRIBUTES})
    session.flush()
