"""Reconciliation of providers' reports (hub/settlement/reconciliation.py): ops only."""
import uuid
from datetime import datetime, timezone

from hub import money
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.errors import Invalid
from hub.settlement import reconciliation
from hub.settlement.reconciliation_models import CLASSES, ReconciliationRun


def import_report(body, token_info):
    caller = actor(token_info)
    period = _period(body.get("period_start"), body.get("period_end"))

    def work(s):
        run, new = reconciliation.import_report(s, body["provider"], body["csv"], caller.ref, period)
        return (201 if new else 200), run_view(run)

    return created(caller, body, work)


def list_runs(token_info, provider=None, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = reconciliation.runs(s, cursor, limit, provider)
        return ok({"items": [run_view(r) for r in items], "next_cursor": next_cursor})


def get_run(run_id, token_info):
    with db().read() as s:
        return ok(run_view(reconciliation.run(s, uuid.UUID(run_id))))


def list_exceptions(token_info, status=None, run_id=None, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = reconciliation.exceptions(s, status, uuid.UUID(run_id) if run_id else None, cursor, limit)
        return ok({"items": [exception_view(v) for v in items], "next_cursor": next_cursor})


def resolve(exception_id, body, token_info):
    caller = actor(token_info)
    view = db().write(lambda s: reconciliation.resolve(
        s, uuid.UUID(exception_id), body["resolution"], body["reason"], caller.ref))
    return ok(exception_view(view))


def _period(start: str | None, end: str | None) -> reconciliation.Period | None:
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise Invalid("give both period_start and period_end, or neither", slug="invalid-period")
    return reconciliation.Period(_instant(start, "period_start"), _instant(end, "period_end"))


def _instant(text: str, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:
            raise ValueError("a naive time")
        return when.astimezone(timezone.utc)  # out of range in UTC: OverflowError
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"{name} must be an RFC 3339 time with a zone, within years 1-9999",
                      slug="invalid-period") from exc


def run_view(r: ReconciliationRun) -> dict:
    return {
        "id": str(r.id), "provider": r.provider, "sha256": r.sha256,
        "period_start": r.period_start and ts(r.period_start), "period_end": r.period_end and ts(r.period_end),
        "report_lines": r.report_lines, "figures": {name: getattr(r, name) for name in CLASSES},
        "created_by": r.created_by, "created_at": ts(r.created_at),
    }


def exception_view(v: reconciliation.ExceptionView) -> dict:
    e, line = v.exception, v.line
    return {
        "id": str(e.id), "run_id": str(e.run_id), "provider": v.provider, "kind": e.kind, "status": e.status,
        "reference": line.reference, "line": line.line_no, "provider_order_id": line.provider_order_id,
        "provider_amount": _amount(line.provider_amount_minor, line.provider_currency),
        "provider_currency": line.provider_currency, "provider_status": line.provider_status,
        "occurred_at": line.occurred_at and ts(line.occurred_at),
        "redemption_id": line.redemption_id and str(line.redemption_id),
        "hub_amount": _amount(line.hub_amount_minor, line.hub_currency), "hub_currency": line.hub_currency,
        "hub_state": line.hub_state, "resolution": e.resolution, "reason": e.reason,
        "resolved_by": e.resolved_by, "resolved_at": e.resolved_at and ts(e.resolved_at),
        "created_at": ts(e.created_at),
    }


def _amount(minor: int | None, currency: str | None) -> str | None:
    return money.to_major(minor, currency) if minor is not None and currency else None
