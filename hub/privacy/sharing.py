"""Consent-gated sharing: what a partner may see of a member beyond its own programs.

A partner always sees what it created: the member's memberships in its own programs and
their movements (hub/programs/service.py). Anything more needs the member's explicit consent
to that partner for a purpose of PURPOSES; the member grants and withdraws it on the hub's
dashboard (or a first-party app of the hub), never a partner: a partner's app holding the
member's token may withdraw consent to its own partner, not grant any. A withdrawal counts
from the next read, as every read checks the table (nothing is cached).

`_granted` is the one test of consent: every partner read that shares anything (`profile`,
`elsewhere`) puts it in the same SQL statement that fetches the shared data, so a read costs
one extra indexed query (on the consents' primary key), and nothing is fetched without it.
Ops are not partners: they get nothing through here. A member's token issued to a partner's
app sees what that partner would see plus what the member shares with it (`through_brand`,
docs/consent.md). SharingConsentEvent keeps every grant and withdrawal as proof.

Two purposes let a partner target the member rather than read anything: `attributes` and
`programs_held` gate its segments' conditions of those names (hub/rules/segments.py checks
them in the refresh's own statement), and withdrawing one takes the member out of them at once.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import delete, exists, false, select
from sqlalchemy.orm import Session

from hub.actor import Actor
from hub.db import utcnow
from hub.errors import Forbidden, NotFound
from hub.identity.account_models import MemberAccount
from hub.identity.models import ApiClient
from hub.privacy.sharing_models import SharingConsent, SharingConsentEvent
from hub.programs.models import Membership, Partner, Program
from hub.rules.models import Segment, SegmentMember

# The purposes a member can consent to, each a partner read that shows more with it
# (docs/consent.md). Small on purpose: each is something a member can judge.
PROFILE = "profile"  # name and email of the member's coalition account: GET /members/{id}
PURCHASE_HISTORY = "purchase_history"  # movements in other partners' programs: /history
BALANCES = "balances"  # balances in other partners' programs: /balances
# Targeting: the partner's segments (hub/rules/segments.py, whose conditions bear the same
# names) may match the member on what they told about themselves, or on which other partners'
# programs they hold; offers aimed at those segments follow.
ATTRIBUTES = "attributes"
PROGRAMS_HELD = "programs_held"
PURPOSES = (PROFILE, PURCHASE_HISTORY, BALANCES, ATTRIBUTES, PROGRAMS_HELD)
DASHBOARD, API, ERASURE = "dashboard", "api", "erasure"  # the channels a change comes through


# --- the partner's side: what a read may add --------------------------------------------

def _granted(actor: Actor, member_id, purpose: str):
    """The SQL condition that the member consented to share `purpose` with the calling
    partner: false for anyone who is not a partner."""
    if actor.partner_id is None or actor.member_id is not None:
        return false()
    return exists().where(
        SharingConsent.member_id == member_id,
        SharingConsent.partner_id == actor.partner_id,
        SharingConsent.purpose == purpose,
    )


@dataclass(frozen=True)
class Profile:
    given_name: str | None
    family_name: str | None
    email: str


def profile(session: Session, actor: Actor, member_id: uuid.UUID) -> Profile | None:
    """The member's coalition account details, if shared with the caller (and they have an
    account: a member a partner enrolled who never signed up has none)."""
    account = session.scalar(
        select(MemberAccount).where(MemberAccount.member_id == member_id, _granted(actor, member_id, PROFILE))
    )
    if account is None:
        return None
    return Profile(account.given_name, account.family_name, account.email)


@dataclass(frozen=True)
class Elsewhere:
    """The member's membership in another partner's program."""

    partner: str
    membership: Membership
    program: Program


def elsewhere(session: Session, actor: Actor, member_id: uuid.UUID, purpose: str) -> list[Elsewhere]:
    """The member's memberships in other partners' programs if `purpose` is shared with the
    caller, else none: one query either way."""
    rows = session.execute(
        select(Membership, Program, Partner.code)
        .join(Program, Program.id == Membership.program_id)
        .join(Partner, Partner.id == Program.partner_id)
        .where(Membership.member_id == member_id, Program.partner_id != actor.partner_id,
               _granted(actor, member_id, purpose))
        .order_by(Program.code)
    ).all()
    return [Elsewhere(code, membership, program) for membership, program, code in rows]


# --- the member's side: granting and withdrawing ----------------------------------------

@dataclass(frozen=True)
class Choice:
    """One purpose for one of the member's partners, and whether it is shared."""

    partner: str
    partner_name: str
    purpose: str
    granted_at: datetime | None


def brand_partner(session: Session, actor: Actor) -> uuid.UUID | None:
    """The partner whose app the member's token came through; None for the hub's own pages
    and first-party apps (clients of no partner)."""
    return session.scalar(select(ApiClient.partner_id).where(ApiClient.client_id == actor.client_id))


def through_brand(session: Session, actor: Actor, purpose: str) -> Actor:
    """A member's token through a partner's app sees of the member what that partner would
    see, plus `purpose` if the member shares it with that partner: the actor narrowed to that
    partner (`partner_id` set besides `member_id`). Unchanged for the hub's own pages,
    first-party apps and a member who shares `purpose` with the brand's partner."""
    if actor.member_id is None:
        return actor
    partner = brand_partner(session, actor)
    if partner is None or session.get(SharingConsent, (actor.member_id, partner, purpose)) is not None:
        return actor
    return replace(actor, partner_id=partner)


def partner_programs(session: Session, actor: Actor) -> set[str] | None:
    """The codes of the programs a narrowed actor (`through_brand`) stays within; None: all."""
    if actor.partner_id is None:
        return None
    return set(session.scalars(select(Program.code).where(Program.partner_id == actor.partner_id)))


def _member_partners(session: Session, member_id: uuid.UUID, only: uuid.UUID | None = None) -> list[Partner]:
    """The partners the member holds a membership with: the only ones consent can go to."""
    q = (
        select(Partner)
        .where(Partner.id.in_(
            select(Program.partner_id).join(Membership, Membership.program_id == Program.id)
            .where(Membership.member_id == member_id)))
        .order_by(Partner.code)
    )
    if only is not None:
        q = q.where(Partner.id == only)
    return list(session.scalars(q))


def choices(session: Session, actor: Actor) -> list[Choice]:
    """Every purpose for every partner the member belongs to; a partner's app sees only its
    own partner's (it learns nothing of the member's other partners)."""
    partners = _member_partners(session, actor.member_id, brand_partner(session, actor))
    granted = {
        (row.partner_id, row.purpose): row.granted_at
        for row in session.scalars(select(SharingConsent).where(SharingConsent.member_id == actor.member_id))
    }
    return [Choice(p.code, p.name, purpose, granted.get((p.id, purpose))) for p in partners for purpose in PURPOSES]


def _choice(session: Session, actor: Actor, partner_code: str, purpose: str) -> tuple[Partner, SharingConsent | None]:
    if purpose not in PURPOSES:
        raise NotFound(f"no purpose {purpose}", slug="sharing-purpose-not-found")
    found = [p for p in _member_partners(session, actor.member_id) if p.code == partner_code]
    if not found:
        raise NotFound(f"you hold no membership with a partner {partner_code}", slug="sharing-partner-not-found")
    return found[0], session.get(SharingConsent, (actor.member_id, found[0].id, purpose))


def _record(session: Session, actor: Actor, partner_id: uuid.UUID, purpose: str, action: str, channel: str) -> None:
    session.add(SharingConsentEvent(
        member_id=actor.member_id, partner_id=partner_id, purpose=purpose, action=action, channel=channel,
        by=actor.ref, client_id=actor.client_id if channel == API else None))


def _refuse_brands(session: Session, actor: Actor) -> None:
    if actor.member_id is None or brand_partner(session, actor) is not None:
        raise Forbidden("a partner's app cannot grant consent for the member: the member grants it "
                        "on the hub's dashboard", slug="sharing-grant-refused")


def grant(session: Session, actor: Actor, partner_code: str, purpose: str, channel: str) -> Choice:
    """The member shares `purpose` with the partner (granting again changes nothing)."""
    _refuse_brands(session, actor)
    partner, row = _choice(session, actor, partner_code, purpose)
    if row is None:
        row = SharingConsent(member_id=actor.member_id, partner_id=partner.id, purpose=purpose, granted_at=utcnow())
        session.add(row)
        _record(session, actor, partner.id, purpose, "grant", channel)
        session.flush()
    return Choice(partner.code, partner.name, purpose, row.granted_at)


def revoke(session: Session, actor: Actor, partner_code: str, purpose: str, channel: str) -> Choice:
    """The member stops sharing `purpose` with the partner, from the next read on. A
    partner's app may withdraw consent to its own partner only (another's is answered as none)."""
    brand = brand_partner(session, actor)
    partner, row = _choice(session, actor, partner_code, purpose)
    if brand is not None and brand != partner.id:
        raise NotFound(f"you hold no membership with a partner {partner_code}", slug="sharing-partner-not-found")
    if row is not None:
        session.delete(row)
        _record(session, actor, partner.id, purpose, "revoke", channel)
        leave_segments(session, actor.member_id, {purpose}, partner.id)
        session.flush()
    return Choice(partner.code, partner.name, purpose, None)


def leave_segments(session: Session, member_id: uuid.UUID, conditions: set[str],
                   partner_id: uuid.UUID | None = None) -> None:
    """Take the member out of the (partner's) segments whose definition uses one of
    `conditions`, at once rather than at their next refresh (which puts the member back if they
    still match): what a withdrawn targeting purpose, or a changed attribute, matched on."""
    q = (select(Segment.id, Segment.definition).join(SegmentMember, SegmentMember.segment_id == Segment.id)
         .where(SegmentMember.member_id == member_id))
    if partner_id is not None:
        q = q.where(Segment.partner_id == partner_id)
    left = [segment_id for segment_id, definition in session.execute(q)
            if conditions & set(definition.get("conditions", {}))]
    if left:
        session.execute(delete(SegmentMember).where(
            SegmentMember.member_id == member_id, SegmentMember.segment_id.in_(left)))


# --- one switch for every partner (PUT /v1/me/attributes' `share`) ----------------------

def everywhere(session: Session, actor: Actor, purpose: str) -> bool:
    """Whether the member shares `purpose` with every partner they belong to (through a
    partner's app: with its partner, as it sees no other); false with no partner at all."""
    found = [c.granted_at for c in choices(session, actor) if c.purpose == purpose]
    return bool(found) and all(found)


def set_everywhere(session: Session, actor: Actor, purpose: str, shared: bool, channel: str) -> None:
    """Grant `purpose` to every partner the member belongs to, or withdraw it from every one,
    each recorded as proof. A partner's app withdraws from its own partner only, and cannot
    turn it on (unless already on for its partner: then nothing changes)."""
    if shared and not everywhere(session, actor, purpose):
        _refuse_brands(session, actor)
    for choice in choices(session, actor):
        if choice.purpose == purpose and shared != (choice.granted_at is not None):
            (grant if shared else revoke)(session, actor, choice.partner, purpose, channel)


# --- export and erasure (wired by hub/privacy/export.py and erasure.py) ------------------

def export_rows(session: Session, member_id: uuid.UUID) -> list[dict]:
    """The member's consents in force and every grant and withdrawal, as plain rows."""
    now = session.execute(
        select(SharingConsent, Partner.code).join(Partner, Partner.id == SharingConsent.partner_id)
        .where(SharingConsent.member_id == member_id).order_by(SharingConsent.granted_at))
    events = session.execute(
        select(SharingConsentEvent, Partner.code).join(Partner, Partner.id == SharingConsentEvent.partner_id)
        .where(SharingConsentEvent.member_id == member_id).order_by(SharingConsentEvent.id))
    return [
        *({"kind": "sharing_consent", "partner": code, "purpose": c.purpose, "granted_at": c.granted_at.isoformat()}
          for c, code in now),
        *({"kind": "sharing_consent_event", "partner": code, "purpose": e.purpose, "action": e.action,
           "channel": e.channel, "by": e.by, "client_id": e.client_id, "at": e.at.isoformat()}
          for e, code in events),
    ]


def forget(session: Session, member_id: uuid.UUID) -> None:
    """Erasure: every consent ends now, recorded as withdrawn through erasure. The proof rows
    stay: they hold only the member's id (the pseudonym erasure keeps), partners and times."""
    erased = Actor(client_id="erasure", partner_id=None, scopes=frozenset(), member_id=member_id)
    for row in session.scalars(select(SharingConsent).where(SharingConsent.member_id == member_id)):
        _record(session, erased, row.partner_id, row.purpose, "revoke", ERASURE)
    session.execute(delete(SharingConsent).where(SharingConsent.member_id == member_id))
    session.flush()
