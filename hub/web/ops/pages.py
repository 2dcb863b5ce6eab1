"""The console's read-only pages. Every role reads them within its reach (queries.py);
partner_admin is refused the pages about the whole coalition (review with ops' review
notes, audit)."""
from __future__ import annotations

from flask import abort, request

from hub.audit import review_notes, trail
from hub.db import utcnow
from hub.errors import DomainError
from hub.settlement import activity
from hub.web import common
from hub.web.ops import charts, queries
from hub.web.ops.console import blueprint, current_ops, page, refused, require_ops


@blueprint.get("/")
def overview():
    me = current_ops()
    now = utcnow()
    with common.db().read() as session:
        daily = activity.activity(session, activity.DAY, now, me.partner_id)
        monthly = activity.activity(session, activity.MONTH, now, me.partner_id)
    return page("overview.html", spans=[
        ("Per day, the last 30 days", "day", daily, [charts.chart(a) for a in daily]),
        ("Per month, the last 12 months", "month", monthly, [charts.chart(a) for a in monthly]),
    ])


@blueprint.get("/redemptions")
def redemptions():
    require_ops()
    with common.db().read() as session:
        rows = queries.redemptions_in_review(session)
        notes = review_notes.latest(session, queries.PAGE)
    return page("redemptions.html", rows=rows, notes=notes, done=request.args.get("done"))


@blueprint.get("/partners")
def partners():
    with common.db().read() as session:
        rows = queries.partners(session, current_ops().partner_id)
    return page("partners.html", rows=rows)


@blueprint.get("/partners/<code>")
def partner(code: str):
    try:
        with common.db().read() as session:
            detail = queries.partner(session, code, current_ops().partner_id)
    except DomainError:
        abort(404)
    return page("partner.html", detail=detail)


@blueprint.get("/webhooks")
def webhooks():
    status = request.args.get("status") or None
    try:
        with common.db().read() as session:
            rows = queries.deliveries(session, current_ops().partner_id, status)
    except DomainError as exc:
        return refused(exc.status, exc.detail)
    return page("webhooks.html", rows=rows, status=status, done=request.args.get("done"))


@blueprint.get("/audit")
def audit():
    require_ops()
    try:
        with common.db().read() as session:
            entries, more = trail.entries(session, cursor=request.args.get("cursor"), limit=100)
    except DomainError as exc:
        return refused(exc.status, exc.detail)
    return page("audit.html", entries=entries, more=more)
