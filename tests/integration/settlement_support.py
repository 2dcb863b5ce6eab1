"""A stored settlement statement for guard tests that walk the whole API (schemathesis, roles,
sharing): a closed period with one statement of the partner's, stored as a close stores it."""
from __future__ import annotations

from sqlalchemy import select

from hub.programs.models import Program
from hub.settlement import statements
from hub.settlement.models import SettlementPeriod, Statement, StatementLine
from hub.settlement.periods import Period

# Before any test's transfers: closing it again answers its stored statements.
SEEDED_PERIOD = "2026-10"


def seed_statement(db, partner) -> tuple[str, int]:
    """The statement's id and its one line's (issued, of the partner's program)."""
    def store(s):
        program = s.scalar(select(Program).where(Program.code == partner.program))
        period = Period.parse(SEEDED_PERIOD)
        if s.get(SettlementPeriod, period.name) is None:
            s.add(SettlementPeriod(period=period.name, starts_at=period.starts_at, ends_at=period.ends_at,
                                   through_id=0, closed_by="test"))
        draft = statements.Draft("partner", str(program.partner_id), "IDR", program.partner_id,
                                 [statements.Line("issued", 0, program.id, 0, 0)])
        found = Statement(period=period.name, party_kind="partner", party=draft.party, partner_id=program.partner_id,
                          currency="IDR", net_due_minor=0, digest=statements.digest(period.name, draft))
        s.add(found)
        s.flush()
        line = StatementLine(statement_id=found.id, position=0, category="issued", program_id=program.id,
                             points=0, count=0, amount_minor=0)
        s.add(line)
        s.flush()
        return str(found.id), line.id

    return db.write(store)
