"""A statement's lines and every transfer behind each line, streamed as CSV or JSON.

Chunks are yielded as they are read (a server-side cursor on PostgreSQL): memory stays the
same for ten lines or ten million transfers."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from sqlalchemy.orm import Session

from hub.errors import Invalid
from hub.settlement import statements
from hub.settlement.models import Statement, StatementLine

FORMATS = ("csv", "json")
COLUMNS = ("record", "line_id", "category", "program_id", "points", "count", "amount_minor", "currency",
           "transfer_id", "debit_account_id", "credit_account_id", "amount", "code", "phase", "created_at")
_FLUSH_ROWS = 500


def stream(session: Session, found: Statement, fmt: str) -> Iterator[str]:
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}", slug="invalid-format")
    return _csv(session, found) if fmt == "csv" else _json(session, found)


def _line(found: Statement, line: StatementLine) -> dict:
    return {"line_id": line.id, "category": line.category,
            "program_id": None if line.program_id is None else str(line.program_id),
            "points": line.points, "count": line.count, "amount_minor": line.amount_minor,
            "currency": found.currency}


def _transfer(row) -> dict:
    return {"transfer_id": row.id, "debit_account_id": row.debit_account_id,
            "credit_account_id": row.credit_account_id, "amount": row.amount, "code": row.code,
            "phase": row.phase, "created_at": row.created_at.isoformat()}


def _csv(session: Session, found: Statement) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = 0
    for line in statements.lines(session, found.id):
        writer.writerow({"record": "line", **_line(found, line)})
        if statements.traceable(line):
            for row in statements.iter_line_transfers(session, found, line):
                writer.writerow({"record": "transfer", "line_id": line.id, **_transfer(row)})
                rows += 1
                if rows % _FLUSH_ROWS == 0:
                    yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    chunk = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return chunk


def _json(session: Session, found: Statement) -> Iterator[str]:
    head = {"id": str(found.id), "period": found.period, "party_kind": found.party_kind, "party": found.party,
            "currency": found.currency, "net_due_minor": found.net_due_minor, "digest": found.digest}
    yield json.dumps(head)[:-1] + ', "lines": ['
    for i, line in enumerate(statements.lines(session, found.id)):
        yield ("," if i else "") + json.dumps(_line(found, line))[:-1] + ', "transfers": ['
        if statements.traceable(line):
            chunk = []
            for j, row in enumerate(statements.iter_line_transfers(session, found, line)):
                chunk.append(("," if j else "") + json.dumps(_transfer(row)))
                if len(chunk) == _FLUSH_ROWS:
                    yield "".join(chunk)
                    chunk = []
            yield "".join(chunk)
        yield "]}"
    yield "]}"
