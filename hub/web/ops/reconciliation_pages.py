"""Reconciliation in the console (hub/settlement/reconciliation.py): the exceptions of the
providers' reports and recent runs, for the ops roles; an admin resolves an exception once,
with a resolution and a reason (the service audits it)."""
from __future__ import annotations

from flask import request

from hub.settlement import reconciliation
from hub.web import common
from hub.web.ops.actions import act, given_reason
from hub.web.ops.console import blueprint, current_ops, page, require_ops


@blueprint.get("/reconciliation")
def reconciliation_exceptions():
    require_ops()
    status = request.args.get("status", reconciliation.OPEN)
    if status not in (reconciliation.OPEN, reconciliation.RESOLVED):
        status = reconciliation.OPEN
    with common.db().read() as session:
        rows, _ = reconciliation.exceptions(session, status=status, limit=200)
        runs, _ = reconciliation.runs(session, limit=20)
    return page("reconciliation.html", rows=rows, runs=runs, status=status,
                resolutions=reconciliation.RESOLUTIONS, done=request.args.get("done"))


@blueprint.post("/reconciliation/resolve")
def resolve_exception():
    resolution, why, by = request.form.get("resolution", ""), given_reason(), current_ops().audit_actor
    return act("exception_id", lambda s, eid: reconciliation.resolve(s, eid, resolution, why, by),
               "ops.reconciliation_exceptions", "resolved")
