"""Account linking: a member links a program membership they held before the coalition
(found by its card number or the partner's member id) to their coalition account, so its
balance and history show up on their dashboard. No Flask here.

Proof of ownership is a one-time 6-digit code mailed to the email address that membership
already has on file (its `email` identifier). A request is recorded and answered the same
way whether or not the card exists or has an email, so nobody learns anything about a card
whose code they cannot receive. Codes are stored as an HMAC (keyed from HUB_SECRET_KEY and
bound to the request), expire after CODE_TTL and allow MAX_ATTEMPTS wrong guesses; the pages
add per-account and per-card rate limits (hub/identity/ratelimit.py).

Linking re-points the Membership (and so its ledger account, which belongs to the membership
and not to a member: hub/programs/models.py) and that program's redemptions from the member
the partner enrolled to the account's Member, in the caller's transaction. No ledger row
changes, so `hub ledger verify` is unaffected. It is refused when the account's member
already has a membership in that program (a member has one per program), and when the
membership belongs to another coalition account.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.errors import Conflict, Invalid
from hub.identity.account_models import LinkRequest, MemberAccount
from hub.notify import webhooks
from hub.programs.models import Member, Membership, MembershipIdentifier, Partner, Program
from hub.privacy import blind
from hub.programs.service import normalise
from hub.rewards.models import Redemption

CODE_TTL = timedelta(minutes=15)
MAX_ATTEMPTS = 5
IDENTIFIER_MAX = 254
# What a member may type to name their membership: the card or the partner's member id.
LINK_KINDS = ("card_number", "external_id")
_CODE = re.compile(r"^[0-9]{6}$")

# Outcomes of `confirm`.
LINKED = "linked"
CODE_WRONG = "code-wrong"
CODE_EXPIRED = "code-expired"
TOO_MANY = "too-many-attempts"
ALREADY_MEMBER = "already-member"
LINKED_ELSEWHERE = "linked-elsewhere"


@dataclass(frozen=True)
class Started:
    request_id: uuid.UUID
    # Where to mail the code, and the code; both None when there is nothing to send (no such
    # card, or no email on file): the caller answers exactly as if it had sent one.
    send_to: str | None
    code: str | None
    program_code: str
    program_name: str


@dataclass(frozen=True)
class Outcome:
    status: str  # one of the constants above
    program_code: str | None = None
    attempts_left: int = 0


@dataclass(frozen=True)
class LinkedMembership:
    program_code: str
    program_name: str
    partner_code: str
    identifier: str | None  # the card number or member id, masked


def _code_hash(secret_key: str, request_id: uuid.UUID, code: str) -> str:
    key = hmac.new(secret_key.encode(), b"hub:link-code", hashlib.sha256).digest()
    return hmac.new(key, f"{request_id}|{code}".encode(), hashlib.sha256).hexdigest()


def programs(session: Session) -> list[tuple[str, str]]:
    """Every program one can link a membership of: (code, name)."""
    return [tuple(r) for r in session.execute(select(Program.code, Program.name).order_by(Program.name))]


def _program(session: Session, code: str) -> Program:
    program = session.scalar(select(Program).where(Program.code == code.strip()))
    if program is None:
        raise Invalid("choose a program", slug="link-program-unknown", field="program")
    return program


def _has_membership(session: Session, member_id: uuid.UUID, program_id: uuid.UUID) -> bool:
    return session.scalar(select(Membership.id).where(
        Membership.member_id == member_id, Membership.program_id == program_id)) is not None


def _typed(kind: str, value: str) -> str:
    """What a member typed, as the partner stored it: card numbers are digits (a member may
    type them in groups, 1234 5678 or 1234-5678)."""
    if kind == "card_number":
        return value.replace(" ", "").replace("-", "")
    return normalise(kind, value)


def card_subject(program_code: str, identifier: str) -> str:
    """Whom the per-card limit counts (whether or not the card exists): the value as `start`
    looks it up, so that 1234 5678 and 1234-5678 share one limit. The card number's form (no
    spaces or dashes) covers the member id too: two spellings that find the same membership
    always share it (member ids that differ only by dashes share a limit, which is harmless)."""
    return f"{program_code.strip()}|{_typed('card_number', identifier.strip())}"


def start(session: Session, secret_key: str, account: MemberAccount, program_code: str, identifier: str,
          *, now: datetime | None = None) -> Started:
    """Record a link request and make its code (to be mailed in the same transaction)."""
    now = now or utcnow()
    program = _program(session, program_code)
    value = identifier.strip()
    if not value or len(value) > IDENTIFIER_MAX or any(ord(c) < 0x20 for c in value):
        raise Invalid("enter the card number or member id", slug="link-identifier-invalid", field="identifier")
    if _has_membership(session, account.member_id, program.id):
        raise Conflict(f"already a member of {program.code}", slug="link-already-member", field="program")
    found = session.execute(
        select(Membership.id, Membership.member_id)
        .join(MembershipIdentifier, MembershipIdentifier.membership_id == Membership.id)
        .where(MembershipIdentifier.program_id == program.id,
               or_(*(
                   (MembershipIdentifier.kind == kind)
                   & (MembershipIdentifier.value_index == blind.index(kind, _typed(kind, value)))
                   for kind in LINK_KINDS)))
        .limit(1)
    ).first()
    email = None
    if found is not None:
        email = session.scalar(select(MembershipIdentifier.value).where(
            MembershipIdentifier.membership_id == found.id, MembershipIdentifier.kind == "email"))
    request = LinkRequest(id=uuid.uuid4(), account_id=account.id, program_id=program.id,
                          expires_at=now + CODE_TTL, created_at=now, attempts=0)
    code = None
    if found is not None and email:
        code = f"{secrets.randbelow(10**6):06d}"
        request.membership_id, request.from_member_id = found.id, found.member_id
        request.code_hash = _code_hash(secret_key, request.id, code)
    session.add(request)
    session.flush()
    return Started(request.id, email if code else None, code, program.code, program.name)


def confirm(session: Session, secret_key: str, account: MemberAccount, request_id: uuid.UUID, code: str,
            *, now: datetime | None = None) -> Outcome:
    """Check the code and, if right, move the membership to the account's member.

    Returns an Outcome instead of raising for a wrong code, so that the caller commits the
    counted attempt."""
    now = now or utcnow()
    # The account's member first (as redemptions do): two links for one account run one
    # after the other, so "one membership per program" is checked against committed data.
    session.execute(select(Member.id).where(Member.id == account.member_id).with_for_update())
    request = session.scalar(select(LinkRequest).where(
        LinkRequest.id == request_id, LinkRequest.account_id == account.id).with_for_update())
    if request is None or request.used_at is not None or request.expires_at <= now:
        return Outcome(CODE_EXPIRED)
    if request.attempts >= MAX_ATTEMPTS:
        return Outcome(TOO_MANY)
    code = code.strip().replace(" ", "")
    right = (request.code_hash is not None and _CODE.fullmatch(code) is not None
             and hmac.compare_digest(_code_hash(secret_key, request.id, code), request.code_hash))
    if not right:
        request.attempts += 1
        session.flush()
        left = MAX_ATTEMPTS - request.attempts
        return Outcome(TOO_MANY if left <= 0 else CODE_WRONG, attempts_left=left)
    request.used_at = now
    session.flush()
    program_code = session.scalar(select(Program.code).where(Program.id == request.program_id))
    membership = session.scalar(select(Membership).where(Membership.id == request.membership_id).with_for_update())
    if membership is None or membership.member_id != request.from_member_id:
        return Outcome(CODE_EXPIRED, program_code)  # linked or moved since the code was sent
    if _has_membership(session, account.member_id, request.program_id):
        return Outcome(ALREADY_MEMBER, program_code)
    if session.scalar(select(MemberAccount.id).where(MemberAccount.member_id == membership.member_id)):
        return Outcome(LINKED_ELSEWHERE, program_code)
    from_member = membership.member_id
    _move(session, membership, account.member_id)
    partner_id = session.scalar(select(Program.partner_id).where(Program.id == request.program_id))
    webhooks.emit(session, partner_id, "member.linked", {
        "member_id": str(account.member_id), "previous_member_id": str(from_member), "program": program_code})
    return Outcome(LINKED, program_code)


def _move(session: Session, membership: Membership, to_member: uuid.UUID) -> None:
    """Re-point the membership (its ledger account and point transactions follow it) and the
    program's redemptions made under the old member."""
    from_member = membership.member_id
    session.execute(update(Membership).where(Membership.id == membership.id).values(member_id=to_member))
    session.execute(update(Redemption).where(
        Redemption.member_id == from_member, Redemption.program_id == membership.program_id,
    ).values(member_id=to_member))
    session.flush()
    session.expire(membership)


def mask(value: str) -> str:
    """•••• 1234: enough for the member to recognise a card, not to use it."""
    return value if len(value) <= 4 else "•••• " + value[-4:]


def linked(session: Session, member_id: uuid.UUID) -> list[LinkedMembership]:
    """The member's memberships, each with its card number (else member id), masked."""
    rows = session.execute(
        select(Membership.id, Program.code, Program.name, Partner.code)
        .join(Program, Program.id == Membership.program_id)
        .join(Partner, Partner.id == Program.partner_id)
        .where(Membership.member_id == member_id)
        .order_by(Program.name)
    ).all()
    idents: dict[uuid.UUID, dict[str, str]] = {}
    for ident in session.scalars(select(MembershipIdentifier).where(
            MembershipIdentifier.membership_id.in_([r[0] for r in rows]),
            MembershipIdentifier.kind.in_(LINK_KINDS))):
        idents.setdefault(ident.membership_id, {})[ident.kind] = ident.value
    views = []
    for membership_id, code, name, partner in rows:
        found = idents.get(membership_id, {})
        value = found.get("card_number") or found.get("external_id")
        views.append(LinkedMembership(code, name, partner, mask(value) if value else None))
    return views
