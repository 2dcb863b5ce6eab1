"""Reconciliation in the console (hub/settlement/reconciliation.py): the exceptions of the
providers' reports and the runs, a page of each, for the ops roles; an admin resolves an
exception once, with a resolution and a reason (the service audits it)."""
from __future__ import annotations

from flask import request

from hub.errors import DomainError
from hub.settlement import reconciliation
from hub.web import common
from hub.web.ops import queries
from hub.web.ops.actions import act, given_reason
from hub.web.ops.console import blueprint, current_ops, page, refusal, require_ops


@blueprint.get("/reconciliation")
def reconciliation_exceptions():
    require_ops()
    status = request.args.get("status", reconciliation.OPEN)
    if status not in (reconciliation.OPEN, reconciliation.RESOLVED):
        status = reconciliation.OPEN
    try:
        with common.db().read() as session:
            exceptions = reconciliation.exceptions(session, status=status, cursor=request.args.get("cursor"),
                                                   limit=queries.PAGE)
            runs = reconciliation.runs(session, cursor=request.args.get("runs_cursor"), limit=queries.PAGE)
    except DomainError as exc:
        return refusal(exc)
    return page("reconciliation.html", exceptions=exceptions, runs=runs, status=status,
                resolutions=reconciliation.RESOLUTIONS, done=request.args.get("done"))


@blueprint.post("/reconciliation/resolve")
def resolve_exception():
    resolution, why, by = request.form.get("resolution", ""), given_reason(), current_ops().audit_actor
    return act("exception_id", lambda s, eid: reconciliation.resolve(s, eid, resolution, why, by),
               "ops.reconciliation_exceptions", "resolved")
