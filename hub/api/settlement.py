"""Settlement: program prices, closing periods, statements, their transfers and exports
(hub/settlement; docs/settlement.md)."""
import uuid
from datetime import datetime, timedelta

from flask import Response, stream_with_context
from sqlalchemy import select

from hub import pagination
from hub.api import runtime
from hub.api.common import db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.programs.models import Partner, Program
from hub.settlement import exports, prices, statements
from hub.settlement.models import Statement

_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def set_price(code, body, token_info):
    caller = actor(token_info)
    when = datetime.fromisoformat(body["effective_from"].replace("Z", "+00:00"))

    def work(s):
        price = prices.set_price(s, caller.ref, code, when, body["currency"], body["per_point_minor"],
                                 body["issuance_fee_bps"])
        return _price(code, price)

    return ok(db().write(work))


def list_prices(code, token_info):
    with db().read() as s:
        return ok({"items": [_price(code, p) for p in prices.prices(s, code)]})


def list_periods(token_info):
    with db().read() as s:
        return ok({"items": [{"period": p.period, "starts_at": ts(p.starts_at), "ends_at": ts(p.ends_at),
                              "through_id": p.through_id, "closed_at": ts(p.closed_at), "closed_by": p.closed_by}
                             for p in statements.periods(s)]})


def close(period, token_info):
    caller = actor(token_info)
    grace = timedelta(minutes=runtime.current().settings.settlement_grace_minutes)

    def work(s):
        done = statements.close(s, period, caller.ref, grace=grace)
        return {"period": done.period, "already_closed": done.already_closed, "closed": done.closed,
                "items": _statements(s, done.statements)}

    return ok(db().write(work))


def list_statements(token_info, period=None, partner=None, provider=None, cursor=None, limit=50):
    with db().read() as s:
        rows, next_cursor = statements.statements_for(
            s, actor(token_info), period, uuid.UUID(partner) if partner else None, provider, cursor, limit)
        return ok({"items": _statements(s, rows), "next_cursor": next_cursor})


def get_statement(statement_id, token_info):
    with db().read() as s:
        found = statements.statement(s, actor(token_info), uuid.UUID(statement_id))
        rows = statements.lines(s, found.id)
        codes = _program_codes(s, {line.program_id for line in rows} - {None})
        lines = [{"id": line.id, "category": line.category, "program": codes.get(line.program_id),
                  "points": line.points, "count": line.count, "amount_minor": line.amount_minor,
                  "detail": line.detail} for line in rows]
        return ok({**_statements(s, [found])[0], "lines": lines})


def line_transfers(statement_id, line_id, token_info, cursor=None, limit=100):
    with db().read() as s:
        rows, last = statements.line_transfers(s, actor(token_info), uuid.UUID(statement_id), line_id,
                                               pagination.id_cursor(cursor), limit)
        return ok({"items": [{"id": r.id, "debit_account_id": r.debit_account_id,
                              "credit_account_id": r.credit_account_id, "amount": r.amount, "code": r.code,
                              "phase": r.phase, "created_at": ts(r.created_at)} for r in rows],
                   "next_cursor": None if last is None else pagination.encode(last)})


def export(statement_id, token_info, format="csv"):
    caller = actor(token_info)
    with db().read() as s:  # refuse (404, 422) before the response starts
        found = statements.statement(s, caller, uuid.UUID(statement_id))
        exports.stream(s, found, format)

    def body():
        with db().read() as s:
            yield from exports.stream(s, s.get(Statement, found.id), format)

    filename = f"statement-{found.period}-{found.id}.{format}"
    return Response(stream_with_context(body()), mimetype=_MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _price(code, price) -> dict:
    return {"program": code, "effective_from": ts(price.effective_from), "currency": price.currency,
            "per_point_minor": format(price.per_point_minor.normalize(), "f"),
            "issuance_fee_bps": price.issuance_fee_bps}


def _program_codes(s, ids: set) -> dict:
    return dict(s.execute(select(Program.id, Program.code).where(Program.id.in_(ids))).all()) if ids else {}


def _statements(s, rows) -> list[dict]:
    ids = {r.partner_id for r in rows} - {None}
    partners = dict(s.execute(select(Partner.id, Partner.code).where(Partner.id.in_(ids))).all()) if ids else {}
    return [{"id": str(r.id), "period": r.period, "party_kind": r.party_kind, "party": r.party,
             "partner": partners.get(r.partner_id), "currency": r.currency,
             "net_due_minor": r.net_due_minor, "digest": r.digest} for r in rows]
