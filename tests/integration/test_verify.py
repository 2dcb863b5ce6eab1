"""`hub ledger verify` proves what the foreign keys dropped by migration 0003 enforced."""
from __future__ import annotations

import uuid

from sqlalchemy import Uuid, column, select, table, update

from hub.ledger.verify import verify

TXNS = table("point_transactions", column("id", Uuid), column("program_id", Uuid))


def test_verify_finds_a_purchase_whose_program_does_not_exist(partner, db):
    member = partner.enrol()
    txn_id = uuid.UUID(partner.buy(member, "10000")["id"])
    with db.read() as s:
        assert verify(s).ok
        program_id = s.scalar(select(TXNS.c.program_id).where(TXNS.c.id == txn_id))

    def move(program):
        db.write(lambda s: s.execute(update(TXNS).where(TXNS.c.id == txn_id).values(program_id=program)))

    move(uuid.uuid4())  # no foreign key refuses it any more
    try:
        with db.read() as s:
            report = verify(s)
        assert f"point transaction {txn_id}: its program does not exist" in report.violations
    finally:
        move(program_id)
    with db.read() as s:
        assert verify(s).ok
