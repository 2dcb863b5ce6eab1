"""Statements in the console (hub/settlement/statements.py): closed periods and their
statements, a statement's lines, and the transfers behind a line. Read through the user's
Actor, so partner_admin sees its partner's statements only (another's is 404, as in the API).
The statements and a line's transfers are paged (a page of queries.PAGE, then a link on)."""
from __future__ import annotations

import uuid

from flask import abort, request

from hub.errors import DomainError
from hub.pagination import MAX_ID
from hub.settlement import statements
from hub.web import common
from hub.web.ops import queries
from hub.web.ops.console import blueprint, current_ops, page, refusal, refused


@blueprint.get("/statements")
def statements_list():
    period = request.args.get("period") or None
    try:
        with common.db().read() as session:
            rows, more = statements.statements_for(session, current_ops().actor, period=period,
                                                   cursor=request.args.get("cursor"), limit=queries.PAGE)
            periods = statements.periods(session)
    except DomainError as exc:
        return refusal(exc)
    return page("statements.html", rows=rows, more=more, periods=periods, period=period)


@blueprint.get("/statements/<uuid:statement_id>")
def statement(statement_id: uuid.UUID):
    try:
        with common.db().read() as session:
            found = statements.statement(session, current_ops().actor, statement_id)
            lines = statements.lines(session, found.id)
    except DomainError:
        abort(404)
    return page("statement.html", statement=found, lines=lines, traceable=statements.traceable)


@blueprint.get("/statements/<uuid:statement_id>/lines/<int:line_id>")
def line_transfers(statement_id: uuid.UUID, line_id: int):
    # Ids are BIGINTs: another number is no line (and would overflow the query). Checked here:
    # connexion's `int` converter takes any signed number and ignores min/max.
    if not 0 < line_id <= MAX_ID:
        abort(404)
    after = request.args.get("after")
    if after is not None:
        if not (after.isascii() and after.isdigit() and len(after) <= 19 and 0 < int(after) <= MAX_ID):
            return refused(400, "That is not a page of this line's transfers.")
        after = int(after)
    try:
        with common.db().read() as session:
            found = statements.statement(session, current_ops().actor, statement_id)
            rows, more = statements.line_transfers(session, current_ops().actor, statement_id, line_id, after,
                                                   queries.PAGE)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        return refusal(exc)
    return page("transfers.html", statement=found, line_id=line_id, rows=rows, more=more)
