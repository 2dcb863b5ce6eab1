"""Member-to-member transfers inside one program (family sharing), within the program's limits.

A transfer is one ledger transfer in the program's ledger, from the sender's member account to
the recipient's (code "transfer", ref_type "member_transfer", ref_id the transfer's id), and
one member_transfers row, from which the sender's daily total is counted, with the sender's
note (sealed; never in the ledger, which erasure cannot touch). Both commit in the caller's
transaction, or neither does.

The program's policy (programs.transfer_max_points and transfer_daily_limit) caps each
transfer and what one sender gives in any rolling 24 hours; a None cap does not apply, and
with neither set the program is closed to transfers (as every program starts). A program
hosted by its partner keeps its balances in the partner's system, out of the hub's reach, so
it offers no transfers.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from hub import ledger, pagination
from hub.actor import Actor
from hub.audit import trail
from hub.db import run, utcnow
from hub.errors import Conflict, Invalid, NotFound
from hub.exchange.models import MemberTransfer
from hub.programs.models import Membership, Program
from hub.programs.service import partner_program, refuse_hosted, resolve_membership

TRANSFER_CODE = "transfer"
REF_TYPE = "member_transfer"
WINDOW = timedelta(hours=24)
MAX_POINTS = 10**12  # as the spec's bounds on points

_transfers = MemberTransfer.__table__
_programs = Program.__table__
_INSERT = insert(_transfers)


@dataclass(frozen=True)
class Policy:
    program: str
    max_points: int | None
    daily_limit: int | None

    @property
    def open(self) -> bool:
        return self.max_points is not None or self.daily_limit is not None


def policy_of(program: Program) -> Policy:
    return Policy(program.code, program.transfer_max_points, program.transfer_daily_limit)


def set_policy(session: Session, actor: Actor, code: str, max_points: int | None,
               daily_limit: int | None) -> Policy:
    """Open, limit or close transfers in a program: ops (ops:write) in any program, a partner
    in its own (another partner's is a 404, as if it did not exist)."""
    for name, value in (("max_points", max_points), ("daily_limit", daily_limit)):
        if value is not None and not 0 < value <= MAX_POINTS:
            raise Invalid(f"{name} must be 1..{MAX_POINTS}, or null for no cap", slug="invalid-transfer-policy")
    if max_points is not None and daily_limit is not None and max_points > daily_limit:
        raise Invalid("max_points above daily_limit: no transfer could use it", slug="invalid-transfer-policy")
    if "ops:write" in actor.scopes:
        program = session.scalar(select(Program).where(Program.code == code))
        if program is None:
            raise NotFound(f"no program {code}", slug="program-not-found")
    else:
        program = partner_program(session, actor, code)
    refuse_hosted(program)
    before = {"max_points": program.transfer_max_points, "daily_limit": program.transfer_daily_limit}
    program.transfer_max_points, program.transfer_daily_limit = max_points, daily_limit
    trail.record(session, actor=trail.who(actor), action="transfer_policy.set", target=f"program:{code}",
                 before=before, after={"max_points": max_points, "daily_limit": daily_limit})
    session.flush()
    return policy_of(program)


@dataclass(frozen=True)
class TransferView:
    id: uuid.UUID
    program: str
    from_member_id: uuid.UUID
    to_member_id: uuid.UUID
    points: int
    note: str | None
    created_at: datetime


def send(session: Session, actor: Actor, body: dict) -> TransferView:
    """Move `points` from the sender to the recipient (`to`), or refuse with nothing moved.

    The sender is the member themselves (a member's token) or, for a partner, `from` in one
    of the partner's programs."""
    code, points = body["program"], body["points"]
    program = _program_of_sender(session, actor, code)
    refuse_hosted(program)
    policy = policy_of(program)
    if not policy.open:
        raise Invalid(f"{code} does not allow transfers between members", slug="transfers-closed")
    if policy.max_points is not None and points > policy.max_points:
        raise Invalid(f"{code} allows at most {policy.max_points} points per transfer",
                      slug="transfer-too-large", max_points=policy.max_points)
    sender = _sender(session, actor, program, body)
    recipient = resolve_membership(session, program, body["to"])
    if recipient.member_id == sender.member_id:
        raise Invalid("a member cannot transfer points to themselves", slug="same-member")

    transfer_id = uuid.uuid4()
    note = body.get("note")
    # The debit first: it takes the sender's account row lock (ledger.post's guarded UPDATE,
    # held until commit) and refuses an overdraft (409 insufficient-points).
    (ledger_id,) = ledger.post(session, [ledger.TransferSpec(
        debit=sender.account_id, credit=recipient.account_id, amount=points, code=TRANSFER_CODE,
        ledger=program.id, caused_by=actor.ref, ref_type=REF_TYPE, ref_id=str(transfer_id),
    )])
    now = utcnow()
    if policy.daily_limit is not None:
        _check_daily_limit(session, program, sender.member_id, points, policy.daily_limit, now)
    row = {"id": transfer_id, "program_id": program.id, "from_member_id": sender.member_id,
           "to_member_id": recipient.member_id, "points": points, "transfer_id": ledger_id,
           "note": note, "caused_by": actor.ref, "created_at": now}
    run(session.connection(), _INSERT, row)
    return TransferView(transfer_id, program.code, sender.member_id, recipient.member_id, points, note, now)


def _check_daily_limit(session: Session, program: Program, member_id: uuid.UUID, points: int, limit: int,
                       now: datetime) -> None:
    """Refuse the transfer if the sender's total in the last 24 hours would pass the limit.

    Counted AFTER the debit, under the lock it took on the sender's account in this program:
    every other transfer of this sender in this program debits that same row, so it waits
    here until this transaction ends, and this count cannot miss one that committed first.
    Counting before the debit would let two concurrent transfers both see the old total and
    both squeeze under the limit. (PostgreSQL, READ COMMITTED: this statement's snapshot is
    taken after the lock was granted, so it sees the transfer that held it. Under REPEATABLE
    READ the waiting UPDATE fails to serialize instead, and Database.write retries the whole
    transaction. SQLite: BEGIN IMMEDIATE runs write transactions one at a time anyway.)
    Refusing here rolls the debit back with the transaction: nothing moves."""
    t = _transfers
    sent = session.execute(
        select(func.coalesce(func.sum(t.c.points), 0))
        .where(t.c.program_id == program.id, t.c.from_member_id == member_id, t.c.created_at > now - WINDOW)
    ).scalar_one()
    sent = int(sent)  # PostgreSQL sums a BIGINT into a NUMERIC
    if sent + points > limit:
        left = max(limit - sent, 0)
        raise Conflict(f"{program.code} allows {limit} points per sender in 24 hours; {sent} given already, "
                       f"{left} left", slug="daily-limit-reached", daily_limit=limit, remaining=left)


def _program_of_sender(session: Session, actor: Actor, code: str) -> Program:
    """A member may give in any program they belong to (checked with the sender); a partner
    only in its own programs."""
    if actor.member_id is None:
        return partner_program(session, actor, code)
    program = session.scalar(select(Program).where(Program.code == code))
    if program is None:
        raise NotFound(f"no program {code}", slug="program-not-found")
    return program


def _sender(session: Session, actor: Actor, program: Program, body: dict) -> Membership:
    if actor.member_id is None:
        if "from" not in body:
            raise Invalid("name the member who gives the points in `from`", slug="member-required")
        return resolve_membership(session, program, body["from"])
    if "from" in body:
        # Ignoring it would let a caller believe it moved someone else's points.
        raise Invalid("a member gives their own points: leave `from` out", slug="from-not-allowed")
    sender = session.scalar(select(Membership).where(Membership.member_id == actor.member_id,
                                                     Membership.program_id == program.id))
    if sender is None:
        raise Invalid(f"you have no membership in {program.code}", slug="not-a-member")
    return sender


# --- reading ---------------------------------------------------------------------------

def _query(actor: Actor):
    """Transfers the actor may see: a member those they gave or received (through a partner's
    app, narrowed by sharing.through_brand: only in that partner's programs), ops (ops:read)
    all, a partner those of its programs."""
    t, p = _transfers, _programs
    q = (select(t.c.id, p.c.code, t.c.from_member_id, t.c.to_member_id, t.c.points, t.c.note, t.c.created_at)
         .join(p, p.c.id == t.c.program_id))
    if actor.member_id is not None:
        q = q.where(or_(t.c.from_member_id == actor.member_id, t.c.to_member_id == actor.member_id))
        if actor.partner_id is None:
            return q
    elif "ops:read" in actor.scopes:
        return q
    return q.where(p.c.partner_id == actor.partner_id)


def _view(row) -> TransferView:
    return TransferView(*row)


def get(session: Session, actor: Actor, transfer_id: uuid.UUID) -> TransferView:
    row = session.execute(_query(actor).where(_transfers.c.id == transfer_id)).first()
    if row is None:
        raise NotFound(f"no member transfer {transfer_id}", slug="member-transfer-not-found")
    return _view(row)


def list_transfers(session: Session, actor: Actor, cursor: str | None, limit: int,
                   member_id: uuid.UUID | None = None) -> tuple[list[TransferView], str | None]:
    """Newest first; with `member_id`, only those that member gave or received."""
    t = _transfers
    q = _query(actor)
    if member_id is not None:
        q = q.where(or_(t.c.from_member_id == member_id, t.c.to_member_id == member_id))
    rows, next_cursor = pagination.newest_first(session, q, t.c.created_at, t.c.id, cursor, limit,
                                                lambda row: (row.created_at, row.id))
    return [_view(row) for row in rows], next_cursor
