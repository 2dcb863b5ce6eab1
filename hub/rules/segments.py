"""Segments: a partner's rule-based groups of its own members, materialised in
segment_members (read at earn time for targeted promotions, and for personalised offers).

A definition is an all-of list of conditions (CONDITIONS); `members_query` turns it into one
SQL statement over the partner's members, so a refresh is set-based (two statements: drop
who left, add who joined, keeping each stayer's `since`), never a loop over members in
Python. The population is always the members holding one of the partner's programs: a
partner's segment can contain nobody else, so its counts and results are its own members.

Membership is as fresh as the last refresh: the beat job (`hub segments refresh`) runs every
SEGMENT_REFRESH minutes, and `POST /v1/segments/{code}/refresh` at once.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from hub import money, pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import utcnow
from hub.errors import Invalid, NotFound
from hub.privacy import sharing
from hub.privacy.erasure_models import MemberErasure
from hub.privacy.sharing_models import SharingConsent
from hub.programs.models import Membership, Partner, PointTransaction, Program
from hub.programs.service import code_page, partner_by_code
from hub.rules import attributes
from hub.rules.engage_models import MemberAttribute
from hub.rules.models import Segment, SegmentMember

CONDITIONS = ("tier", "spend", "recency", "programs_held", "attributes")
MAX_DAYS = 3660


def segments_of(session: Session, partner_id: uuid.UUID, member_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """member id -> codes of the partner's segments the member is in (absent: none)."""
    found: dict[uuid.UUID, set[str]] = defaultdict(set)
    if member_ids:
        rows = session.execute(
            select(SegmentMember.member_id, Segment.code)
            .join(Segment, Segment.id == SegmentMember.segment_id)
            .where(Segment.partner_id == partner_id, SegmentMember.member_id.in_(list(member_ids)))
        )
        for member_id, code in rows:
            found[member_id].add(code)
    return dict(found)


# --- evaluating a definition ---------------------------------------------------------------

def _own_members(partner_id: uuid.UUID):
    return select(Membership.member_id).join(Program, Program.id == Membership.program_id).where(
        Program.partner_id == partner_id)


def _purchases_at(partner_id: uuid.UUID, since: datetime):
    """Member ids and net amounts of purchases at the partner's programs since `since`."""
    t = PointTransaction
    net = t.amount_minor - t.refunded_minor
    return net, (select(Membership.member_id)
                 .select_from(t).join(Membership, Membership.id == t.membership_id)
                 .join(Program, Program.id == t.program_id)
                 .where(Program.partner_id == partner_id, t.kind == "purchase", t.occurred_at >= since, net > 0))


def _tier(partner_id, cond, now):
    q = _own_members(partner_id).where(Membership.tier.in_(cond["in"]))
    return q.where(Program.code == cond["program"]) if cond.get("program") else q


def _spend(partner_id, cond, now):
    net, q = _purchases_at(partner_id, now - timedelta(days=cond["days"]))
    total = func.sum(net)
    q = q.where(PointTransaction.currency == cond["currency"]).group_by(Membership.member_id).having(
        total >= cond.get("min", 0))
    return q.having(total <= cond["max"]) if cond.get("max") is not None else q


def _recency(partner_id, cond, now):
    return _purchases_at(partner_id, now - timedelta(days=cond["days"]))[1]


def _consenting(partner_id, purpose: str):
    """The members who share `purpose` with the partner (an index range of sharing_consents)."""
    return select(SharingConsent.member_id).where(SharingConsent.partner_id == partner_id,
                                                  SharingConsent.purpose == purpose)


def _programs_held(partner_id, cond, now):
    """Holding every listed program: the partner's own always count; another partner's only
    for members who share with this partner which programs they hold."""
    consenting = _consenting(partner_id, sharing.PROGRAMS_HELD)
    held = None
    for code in cond["all"]:
        q = (select(Membership.member_id).join(Program, Program.id == Membership.program_id)
             .where(Program.code == code,
                    or_(Program.partner_id == partner_id, Membership.member_id.in_(consenting))))
        held = q if held is None else held.where(Membership.member_id.in_(q.correlate(None)))
    return held


def _attributes(partner_id, cond, now):
    """Matching every listed attribute (any of its values), only for members who share their
    attributes with this partner: without that consent nobody matches."""
    q = _consenting(partner_id, sharing.ATTRIBUTES)
    for name, wanted in sorted(cond.items()):
        values = sorted({attributes.normalise(name, v) for v in wanted})
        q = q.where(SharingConsent.member_id.in_(select(MemberAttribute.member_id).where(
            MemberAttribute.name == name, MemberAttribute.value.in_(values))))
    return q


_BUILDERS = {"tier": _tier, "spend": _spend, "recency": _recency, "programs_held": _programs_held,
             "attributes": _attributes}


def members_query(partner_id: uuid.UUID, conditions: dict, now: datetime):
    """SELECT of the ids of the partner's members who meet every condition at `now`."""
    q = select(Membership.member_id.label("member_id")).distinct().join(
        Program, Program.id == Membership.program_id).where(
        Program.partner_id == partner_id, Membership.member_id.not_in(select(MemberErasure.member_id)))
    for name in CONDITIONS:
        if name in conditions:
            # correlate(None): the subqueries read memberships and programs anew, unbound
            # to the outer query's rows of the same tables.
            q = q.where(Membership.member_id.in_(_BUILDERS[name](partner_id, conditions[name], now).correlate(None)))
    return q


def check(session: Session, partner_id: uuid.UUID, conditions: dict) -> dict:
    """The conditions if they can be evaluated; else Invalid naming the first problem."""
    def bad(detail: str):
        return Invalid(detail, slug="invalid-segment")

    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise bad(f"unknown condition {unknown[0]!r}; known: {', '.join(CONDITIONS)}")
    for name in ("spend", "recency"):
        if name in conditions and not 1 <= conditions[name]["days"] <= MAX_DAYS:
            raise bad(f"conditions.{name}.days must be 1..{MAX_DAYS}")
    if "spend" in conditions:
        spend = conditions["spend"]
        money.exponent(spend["currency"])
        if spend.get("max") is not None and spend["max"] < spend.get("min", 0):
            raise bad("conditions.spend.max is below its min: nobody could match")
    codes = set(conditions.get("programs_held", {}).get("all", []))
    tier_program = conditions.get("tier", {}).get("program")
    if codes or tier_program:
        programs = dict(session.execute(select(Program.code, Program.partner_id).where(
            Program.code.in_(sorted(codes | {tier_program} - {None})))).all())
        for code in sorted(codes):
            if code not in programs:
                raise bad(f"conditions.programs_held: no program {code}")
        if tier_program and programs.get(tier_program) != partner_id:
            raise NotFound(f"no program {tier_program}", slug="program-not-found")
    for name, values in conditions.get("attributes", {}).items():
        if name not in attributes.NAMES:
            raise bad(f"unknown attribute {name!r}; known: {', '.join(attributes.NAMES)}")
        for value in values:
            attributes.normalise(name, value)
    return conditions


# --- the API's operations -------------------------------------------------------------------

def acting_partner(session: Session, actor: Actor, partner_code: str | None) -> uuid.UUID:
    """Whose segments: a partner's own; ops name the partner they act for."""
    if actor.partner_id is not None:
        if partner_code is not None and session.scalar(
                select(Partner.code).where(Partner.id == actor.partner_id)) != partner_code:
            raise NotFound(f"no partner {partner_code}", slug="partner-not-found")
        return actor.partner_id
    if not actor.scopes & {"ops:read", "ops:write"}:  # a partner-less caller that is not ops
        raise NotFound("no segments", slug="segment-not-found")
    if partner_code is None:
        raise Invalid("ops name the partner they act for: ?partner=CODE", slug="partner-required")
    return partner_by_code(session, partner_code).id


def put(session: Session, partner_id: uuid.UUID, code: str, body: dict, *, by: str) -> tuple[Segment, bool]:
    """Create or replace the segment's definition (membership follows at its next refresh).
    Returns (segment, created)."""
    conditions = check(session, partner_id, body.get("conditions", {}))
    segment = session.scalar(select(Segment).where(Segment.partner_id == partner_id, Segment.code == code))
    created = segment is None
    before = None if created else {"name": segment.name, **segment.definition}
    if created:
        segment = Segment(partner_id=partner_id, code=code)
        session.add(segment)
    segment.name = body["name"]
    segment.definition = {"conditions": conditions}
    session.flush()
    trail.record(session, actor=by, action="segment.put", target=f"segment:{partner_id}/{code}",
                 before=before, after={"name": segment.name, **segment.definition})
    return segment, created


def get(session: Session, partner_id: uuid.UUID, code: str) -> Segment:
    segment = session.scalar(select(Segment).where(Segment.partner_id == partner_id, Segment.code == code))
    if segment is None:
        raise NotFound(f"no segment {code}", slug="segment-not-found")
    return segment


def counts(session: Session, segment_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = session.execute(select(SegmentMember.segment_id, func.count())
                           .where(SegmentMember.segment_id.in_(list(segment_ids))).group_by(SegmentMember.segment_id))
    return {segment_id: n for segment_id, n in rows}


def list_(session: Session, partner_id: uuid.UUID, cursor: str | None, limit: int) -> tuple[list[Segment], str | None]:
    return code_page(session, select(Segment).where(Segment.partner_id == partner_id), Segment.code, cursor, limit)


def members(session: Session, segment: Segment, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """A page of who is in the segment (as at its last refresh): (member id, since), by id."""
    after = pagination.decode(cursor)
    try:
        after = None if after is None else uuid.UUID(after)
    except (TypeError, ValueError, AttributeError) as exc:
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor") from exc
    q = (select(SegmentMember.member_id, SegmentMember.since).where(SegmentMember.segment_id == segment.id)
         .order_by(SegmentMember.member_id).limit(limit + 1))
    if after is not None:
        q = q.where(SegmentMember.member_id > after)
    rows = session.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, pagination.encode(str(rows[-1][0])) if more else None


def refresh(session: Session, segment: Segment, now: datetime | None = None) -> int:
    """Materialise who is in the segment now; returns how many are."""
    now = now or utcnow()
    target = members_query(segment.partner_id, segment.definition.get("conditions", {}), now).subquery()
    sm = SegmentMember.__table__
    session.execute(delete(sm).where(sm.c.segment_id == segment.id, sm.c.member_id.not_in(select(target.c.member_id))))
    session.execute(insert(sm).from_select(
        ["segment_id", "member_id", "since"],
        select(literal(segment.id, sm.c.segment_id.type), target.c.member_id, literal(now, sm.c.since.type))
        .where(target.c.member_id.not_in(select(sm.c.member_id).where(sm.c.segment_id == segment.id)))))
    session.execute(update(Segment).where(Segment.id == segment.id).values(refreshed_at=now))
    session.expire(segment, ["refreshed_at"])
    return counts(session, [segment.id]).get(segment.id, 0)


def segment_ids(session: Session, partner_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    q = select(Segment.id).order_by(Segment.partner_id, Segment.code)
    return list(session.scalars(q.where(Segment.partner_id == partner_id) if partner_id else q))


def refresh_all(db, partner_id: uuid.UUID | None = None) -> dict[str, int]:
    """Refresh every segment (of one partner), each in its own transaction, so one large
    segment never holds the others' locks. Returns segment id -> members."""
    with db.read() as s:
        ids = segment_ids(s, partner_id)
    return {str(i): db.write(lambda s, i=i: refresh(s, s.get(Segment, i))) for i in ids}
