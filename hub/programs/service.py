"""Partners, programs and members: the reference data that earning and the ledger use."""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session

from hub import ledger, money, pagination
from hub.actor import Actor
from hub.audit import trail
from hub.errors import Conflict, Gone, Invalid, NotFound
from hub.privacy.erasure_models import MemberErasure
from hub.exchange.models import ProgramRate
from hub.identity.oidc import subjects
from hub.ledger import models as ledger_models
from hub.privacy import blind, sharing
from hub.privacy.blind import normalise
from hub.programs.models import (
    IDENTIFIER_KINDS,
    Member,
    Membership,
    MembershipIdentifier,
    Partner,
    Program,
)
from hub.rules import referrals
from hub.rules.why import Cause, Why, explain

CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,15}$")  # as the spec's Code schema
MEMBER_ACCOUNT = "member"
ISSUANCE_ACCOUNT = "issuance"
REDEMPTION_ACCOUNT = "redemption"
CLEARING_ACCOUNT = "clearing"
BREAKAGE_ACCOUNT = "breakage"
# What the cursors this API issues encode: a partner or program code, or a ledger transfer
# id (a BIGINT, pagination.id_cursor). Anything else decoded from a cursor is refused before
# it reaches a query (where it failed as a 500: int() of a string, an id past BIGINT, a NUL
# for PostgreSQL).


def code_cursor(cursor: str | None) -> str | None:
    after = pagination.decode(cursor)
    if after is None or (isinstance(after, str) and "\x00" not in after):
        return after
    raise Invalid("cursor is not one this API issued", slug="invalid-cursor")


# --- partners and programs (ops) -------------------------------------------------------

def _check_code(code: str) -> None:
    if not CODE.fullmatch(code):
        raise Invalid(f"{code!r} is not a code: 2-16 of A-Z, 0-9, _", slug="invalid-code")


def create_partner(session: Session, code: str, name: str, *, by: str) -> Partner:
    _check_code(code)
    if session.scalar(select(Partner.id).where(Partner.code == code)):
        raise Conflict(f"partner {code} already exists", slug="partner-exists")
    partner = Partner(code=code, name=name)
    session.add(partner)
    session.flush()
    trail.record(session, actor=by, action="partner.create", target=f"partner:{code}",
                 after={"id": str(partner.id), "code": code, "name": name})
    return partner


def code_page(session: Session, q, code, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """A page of the ORM objects `q` selects, ordered by their `code` column (unique)."""
    after = code_cursor(cursor)
    q = q.order_by(code).limit(limit + 1)
    if after is not None:
        q = q.where(code > after)
    rows = list(session.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, pagination.encode(rows[-1].code) if more else None


def list_partners(session: Session, cursor: str | None, limit: int) -> tuple[list[Partner], str | None]:
    return code_page(session, select(Partner), Partner.code, cursor, limit)


def partner_by_code(session: Session, code: str) -> Partner:
    partner = session.scalar(select(Partner).where(Partner.code == code))
    if partner is None:
        raise NotFound(f"no partner {code}", slug="partner-not-found")
    return partner


def create_program(
    session: Session,
    *,
    partner_code: str,
    code: str,
    name: str,
    point_value: Decimal,
    earn_currency: str,
    earn_rate: Decimal,
    hosted_by: str | None = None,
    by: str,
) -> Program:
    """A program and its system accounts; its point value opens its rate history.
    `hosted_by`: the connector of a program whose balances the partner keeps."""
    partner = partner_by_code(session, partner_code)
    money.exponent(earn_currency)
    _check_code(code)
    if not (point_value.is_finite() and point_value > 0):
        raise Invalid("point_value must be a number greater than zero", slug="invalid-rate")
    if not (earn_rate.is_finite() and earn_rate >= 0):
        raise Invalid("points per unit must be a number of zero or more", slug="invalid-rate")
    if session.scalar(select(Program.id).where(Program.code == code)):
        raise Conflict(f"program {code} already exists", slug="program-exists")
    program_id = uuid.uuid4()
    issuance, redemption, clearing, breakage = (
        ledger.open_account(session, program_id, code, cached=False, no_overdraft=False)
        for code in (ISSUANCE_ACCOUNT, REDEMPTION_ACCOUNT, CLEARING_ACCOUNT, BREAKAGE_ACCOUNT)
    )
    program = Program(
        id=program_id,
        partner_id=partner.id,
        code=code,
        name=name,
        point_value=point_value,
        earn_currency=earn_currency,
        earn_rate=earn_rate,
        issuance_account_id=issuance,
        redemption_account_id=redemption,
        clearing_account_id=clearing,
        breakage_account_id=breakage,
        hosted_by=hosted_by,
    )
    session.add(program)
    session.flush()
    session.add(ProgramRate(program_id=program_id, point_value=point_value, valid_from=program.created_at,
                            set_by=f"program {code} created"))
    trail.record(session, actor=by, action="program.create", target=f"program:{code}",
                 after={"id": str(program_id), "partner": partner_code, "point_value": str(point_value),
                        "earn_currency": earn_currency, "earn_rate": str(earn_rate), "hosted_by": hosted_by})
    return program


def list_programs(
    session: Session, actor: Actor, cursor: str | None, limit: int
) -> tuple[list[tuple[Program, str]], str | None]:
    """Programs with their partner's code: all for ops, a partner's own otherwise."""
    after = code_cursor(cursor)
    q = (
        select(Program, Partner.code)
        .join(Partner, Partner.id == Program.partner_id)
        .order_by(Program.code)
        .limit(limit + 1)
    )
    if "ops:read" not in actor.scopes:
        q = q.where(Program.partner_id == actor.partner_id)
    if after is not None:
        q = q.where(Program.code > after)
    rows = [tuple(r) for r in session.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, pagination.encode(rows[-1][0].code) if more else None


def refuse_hosted(program) -> None:
    """A partner-hosted program's points live in its partner's system, reached only through
    its connector (hub/exchange/hosted.py, by conversions): the hub's ledger never earns,
    reverses, spends or transfers them. `program`: anything with `code` and `hosted_by`."""
    if program.hosted_by:
        raise Invalid(f"{program.code} points are kept by its partner: the hub cannot move them",
                      slug="program-hosted")


def partner_program(session: Session, actor: Actor, code: str) -> Program:
    """One of the caller's own programs; another partner's is indistinguishable from none."""
    program = session.scalar(
        select(Program).where(Program.code == code, Program.partner_id == actor.partner_id)
    )
    if program is None:
        raise NotFound(f"no program {code}", slug="program-not-found")
    return program


# --- members ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MembershipView:
    membership: Membership
    program: Program
    identifiers: dict[str, str]


@dataclass(frozen=True)
class MemberView:
    id: uuid.UUID
    memberships: list[MembershipView]
    profile: sharing.Profile | None = None  # only where the member shares it (member_detail)


def enrol(session: Session, actor: Actor, body: dict) -> MemberView:
    program = partner_program(session, actor, body["program"])
    referrer = referrals.referrer_for(session, program.id, body.get("referral_code"))
    identifiers = {k: normalise(k, body[k]) for k in IDENTIFIER_KINDS if k in body}
    if "member_id" in body:
        member_id = uuid.UUID(body["member_id"])
        member_view(session, actor, member_id)  # 404 unless this partner knows the member
        if session.scalar(
            select(Membership.id).where(
                Membership.member_id == member_id, Membership.program_id == program.id
            )
        ):
            raise Conflict(f"member is already enrolled in {program.code}", slug="already-enrolled")
    else:
        member = Member()
        session.add(member)
        session.flush()
        member_id = member.id
    taken = session.scalars(
        select(MembershipIdentifier.kind).where(
            MembershipIdentifier.program_id == program.id,
            _identifier_match(identifiers),
        )
    ).all()
    if taken:
        raise Conflict(
            f"{', '.join(sorted(taken))} already identifies a member of {program.code}",
            slug="identifier-taken",
        )
    account_id = ledger.open_account(
        session, program.id, MEMBER_ACCOUNT, cached=True, no_overdraft=True
    )
    membership = Membership(member_id=member_id, program_id=program.id, account_id=account_id)
    session.add(membership)
    session.flush()
    session.add_all(
        MembershipIdentifier(
            membership_id=membership.id, program_id=program.id, kind=kind, value=value
        )
        for kind, value in identifiers.items()
    )
    session.flush()
    referrals.enrolled(session, actor, program, membership, referrer)
    return member_view(session, actor, member_id)


def _identifier_match(identifiers: dict[str, str]):
    clauses = [
        and_(MembershipIdentifier.kind == k, MembershipIdentifier.value_index == blind.index(k, v))
        for k, v in identifiers.items()
    ]
    return or_(*clauses) if clauses else false()


def _memberships(session: Session, actor: Actor, member_ids: Iterable[uuid.UUID]) -> dict:
    rows = session.execute(
        select(Membership, Program)
        .join(Program, Program.id == Membership.program_id)
        .where(Membership.member_id.in_(list(member_ids)), Program.partner_id == actor.partner_id)
        .order_by(Program.code)
    ).all()
    ids = [m.id for m, _ in rows]
    idents: dict[uuid.UUID, dict[str, str]] = {i: {} for i in ids}
    for ident in session.scalars(
        select(MembershipIdentifier).where(MembershipIdentifier.membership_id.in_(ids))
    ):
        idents[ident.membership_id][ident.kind] = ident.value
    views: dict[uuid.UUID, list[MembershipView]] = {}
    for membership, program in rows:
        views.setdefault(membership.member_id, []).append(
            MembershipView(membership, program, idents[membership.id])
        )
    return views


def member_view(session: Session, actor: Actor, member_id: uuid.UUID) -> MemberView:
    """The member as this partner sees them: only memberships in its own programs. Erased,
    they are gone (410) only to a partner that had them: to another, as unknown as ever (404)."""
    memberships = _memberships(session, actor, [member_id]).get(member_id)
    if not memberships:
        raise NotFound("no such member", slug="member-not-found")
    refuse_erased(session, member_id)
    return MemberView(member_id, memberships)


def member_detail(session: Session, actor: Actor, member_id: uuid.UUID) -> MemberView:
    """member_view, with the member's profile if they share it with this partner."""
    return replace(member_view(session, actor, member_id), profile=sharing.profile(session, actor, member_id))


def lookup(session: Session, actor: Actor, program_code: str | None, query: dict) -> list[MemberView]:
    given = {k: normalise(k, v) for k, v in query.items() if k in IDENTIFIER_KINDS and v}
    if len(given) != 1:
        raise Invalid(
            "give exactly one of external_id, card_number, phone or email",
            slug="invalid-lookup",
        )
    q = (
        select(Membership.member_id)
        .join(MembershipIdentifier, MembershipIdentifier.membership_id == Membership.id)
        .join(Program, Program.id == Membership.program_id)
        .where(Program.partner_id == actor.partner_id, _identifier_match(given))
    )
    if program_code:
        q = q.where(Program.code == program_code)
    member_ids = list(dict.fromkeys(session.scalars(q)))
    views = _memberships(session, actor, member_ids)
    return [MemberView(m, views[m]) for m in member_ids if m in views]


@dataclass(frozen=True)
class BalanceView:
    program: Program
    balance: ledger.Balance


@dataclass(frozen=True)
class Balances:
    own: list[BalanceView]
    shared: list[tuple[str, BalanceView]]  # (partner code, balance) in other partners' programs


def balances(session: Session, actor: Actor, member_id: uuid.UUID, coalition: bool = False) -> Balances:
    """Balances in this partner's programs; `coalition`: also in the other partners' the
    member shares their balances with it (docs/consent.md)."""
    view = member_view(session, actor, member_id)
    shared = sharing.elsewhere(session, actor, member_id, sharing.BALANCES) if coalition else []
    return Balances(
        [BalanceView(m.program, ledger.balance(session, m.membership.account_id)) for m in view.memberships],
        # A hosted program's balance is in its partner's system, not the hub's: left out.
        [(e.partner, BalanceView(e.program, ledger.balance(session, e.membership.account_id)))
         for e in shared if not e.program.hosted_by],
    )


def own_balances(session: Session, member_id: uuid.UUID) -> list[tuple[str, BalanceView]]:
    """A member's own view (their access token): every membership, with its partner's code."""
    rows = session.execute(
        select(Membership, Program, Partner.code)
        .join(Program, Program.id == Membership.program_id)
        .join(Partner, Partner.id == Program.partner_id)
        .where(Membership.member_id == member_id)
        .order_by(Program.code)
    ).all()
    return [(code, BalanceView(program, ledger.balance(session, m.account_id)))
            for m, program, code in rows]


def resolve_membership(session: Session, program: Program, ref: dict) -> Membership:
    """The membership a purchase names, by exactly one identifier."""
    ((kind, value),) = ref.items()
    if kind == "subject":
        member_id = subjects.member_for(session, str(program.partner_id), value)
        kind, value = ("member_id", str(member_id)) if member_id else (kind, value)
    if kind == "member_id":
        q = select(Membership).where(
            Membership.member_id == uuid.UUID(value), Membership.program_id == program.id
        )
    else:
        q = (
            select(Membership)
            .join(MembershipIdentifier, MembershipIdentifier.membership_id == Membership.id)
            .where(
                MembershipIdentifier.program_id == program.id,
                MembershipIdentifier.kind == kind,
                MembershipIdentifier.value_index == blind.index(kind, value),
            )
        )
    membership = session.scalar(q)
    if membership is None:
        raise NotFound(f"no member of {program.code} with that {kind}", slug="member-not-found")
    refuse_erased(session, membership.member_id)
    return membership


def refuse_erased(session: Session, member_id: uuid.UUID) -> None:
    """An erased member (hub.privacy.erasure) is gone for partners: 410, so that a partner
    still posting to them learns why (it was told by the member.erased webhook)."""
    if session.get(MemberErasure, member_id) is not None:
        raise Gone("this member erased their data and left the coalition", slug="member-erased")


@dataclass(frozen=True)
class Movement:
    id: int
    program: str
    code: str
    points: int
    status: str
    hub_transaction_id: str | None
    ref_type: str | None  # what it belongs to: transaction, redemption, conversion, ...
    ref_id: str | None
    created_at: object
    why: Why | None = None  # a purchase's rating lines or a bonus's reason (hub.rules.why)


def history(
    session: Session,
    actor: Actor,
    member_id: uuid.UUID,
    program_code: str | None,
    cursor: str | None,
    limit: int,
    coalition: bool = False,
) -> tuple[list[Movement], str | None]:
    """Movements newest first. A reservation shows once, with its resolution as status.
    `coalition`: also those in other partners' programs, if the member shares their purchase
    history with this partner (docs/consent.md)."""
    view = member_view(session, actor, member_id)
    shared = sharing.elsewhere(session, actor, member_id, sharing.PURCHASE_HISTORY) if coalition else []
    held = [(m.membership, m.program) for m in view.memberships] + [(e.membership, e.program) for e in shared]
    accounts = {
        membership.account_id: program.code for membership, program in held if program_code in (None, program.code)
    }
    if not accounts:
        raise NotFound(f"member has no membership in {program_code}", slug="membership-not-found")
    return _movements(session, accounts, cursor, limit)


def own_history(
    session: Session, member_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[Movement], str | None]:
    """A member's own movements across all their programs, newest first (their dashboard)."""
    accounts = {account_id: code for account_id, code in session.execute(
        select(Membership.account_id, Program.code)
        .join(Program, Program.id == Membership.program_id)
        .where(Membership.member_id == member_id)
    )}
    if not accounts:
        return [], None
    return _movements(session, accounts, cursor, limit)


def _movements(
    session: Session, accounts: dict[int, str], cursor: str | None, limit: int
) -> tuple[list[Movement], str | None]:
    """Movements of these accounts (ledger account id -> program code), newest first."""
    before = pagination.id_cursor(cursor)
    t = ledger_models.Transfer
    resolver = t.__table__.alias("resolver")
    q = (
        select(t, resolver.c.phase, resolver.c.amount)
        .outerjoin(resolver, resolver.c.pending_id == t.id)
        .where(
            or_(t.debit_account_id.in_(accounts), t.credit_account_id.in_(accounts)),
            t.phase.in_((ledger_models.POSTED, ledger_models.PENDING)),
        )
        .order_by(t.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        q = q.where(t.id < before)
    rows = session.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    whys = explain(session, (Cause(t.id, t.code, t.ref_type, t.ref_id, t.amount) for t, _, _ in rows))
    items = []
    for transfer, resolved_phase, resolved_amount in rows:
        status, amount = "posted", transfer.amount
        if transfer.phase == ledger_models.PENDING:
            status = {None: "pending", ledger_models.VOID_PENDING: "voided"}.get(
                resolved_phase, "posted"
            )
            if resolved_phase == ledger_models.POST_PENDING:
                amount = resolved_amount
        credit = transfer.credit_account_id in accounts
        items.append(
            Movement(
                id=transfer.id,
                program=accounts[transfer.credit_account_id if credit else transfer.debit_account_id],
                code=transfer.code,
                points=amount if credit else -amount,
                status=status,
                hub_transaction_id=transfer.ref_id if transfer.ref_type == "transaction" else None,
                ref_type=transfer.ref_type,
                ref_id=transfer.ref_id,
                created_at=transfer.created_at,
                why=whys.get(transfer.id),
            )
        )
    return items, pagination.encode(items[-1].id) if more else None
