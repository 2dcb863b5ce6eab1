"""award(): bonus points granted once per cause, with a reason the member sees.

Every feature that grants points outside a purchase's rating (welcome and referral bonuses,
engagement events, stamp cards, streaks, challenges, surprise rewards from ops) goes through
here, so each grant is one award row (kind, key, reason) and one ledger transfer from the
program's issuance account, coded "bonus" and linked to the award (ref_type "award").
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from hub import ledger
from hub.db import insert_once, utcnow
from hub.errors import Invalid
from hub.rules.models import Award

BONUS = "bonus"
_awards = Award.__table__
_INSERT_ONCE = insert_once(_awards, ("program_id", "kind", "key"), _awards.c.id)


@dataclass(frozen=True)
class Recipient:
    """Who gets the points: a membership, its ledger account, and its program's issuance."""

    program_id: uuid.UUID
    issuance_account_id: int
    membership_id: uuid.UUID
    account_id: int


def award(session, recipient: Recipient, *, kind: str, key: str, points: int, reason: str,
          caused_by: str) -> tuple[bool, uuid.UUID]:
    """Grant `points` for (kind, key) unless that cause was already awarded in this program.
    Returns (granted now, award id). Zero points records the award (a badge) and moves
    nothing."""
    if points < 0:
        raise Invalid("an award cannot take points away", slug="invalid-points")
    conn = session.connection()
    award_id = uuid.uuid4()
    row = {
        "id": award_id, "program_id": recipient.program_id, "membership_id": recipient.membership_id,
        "kind": kind, "key": key, "points": points, "reason": reason[:300], "transfer_id": None,
        "caused_by": caused_by, "created_at": utcnow(),
    }
    if conn.execute(_INSERT_ONCE[conn.dialect.name], row).first() is None:
        existing = session.scalar(select(Award.id).where(
            Award.program_id == recipient.program_id, Award.kind == kind, Award.key == key))
        return False, existing
    if points:
        (transfer_id,) = ledger.post(session, [ledger.TransferSpec(
            debit=recipient.issuance_account_id, credit=recipient.account_id, amount=points,
            code=BONUS, ledger=recipient.program_id, caused_by=caused_by,
            ref_type="award", ref_id=str(award_id),
        )])
        conn.execute(_awards.update().where(_awards.c.id == award_id).values(transfer_id=transfer_id))
    return True, award_id
