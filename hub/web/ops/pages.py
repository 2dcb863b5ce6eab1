"""The console's read-only pages. Every role reads them within its reach (queries.py);
partner_admin is refused the pages about the whole coalition (review with ops' review
notes, audit). Every list is a page with the cursor of the next (queries.py); a cursor the
console did not issue answers 400."""
from __future__ import annotations

from flask import abort, request

from hub.audit import review_notes, trail
from hub.db import utcnow
from hub.errors import DomainError
from hub.settlement import activity
from hub.web import common
from hub.web.ops import charts, queries
from hub.web.ops.console import blueprint, current_ops, page, refusal, require_ops


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
    try:
        with common.db().read() as session:
            review = queries.redemptions_in_review(session, request.args.get("cursor"))
            notes = review_notes.latest(session, queries.PAGE, request.args.get("notes_cursor"))
    except DomainError as exc:
        return refusal(exc)
    return page("redemptions.html", review=review, notes=notes, done=request.args.get("done"))


@blueprint.get("/partners")
def partners():
    try:
        with common.db().read() as session:
            found = queries.partners(session, current_ops().partner_id, request.args.get("cursor"))
    except DomainError as exc:
        return refusal(exc)
    return page("partners.html", partners=found)


@blueprint.get("/partners/<code>")
def partner(code: str):
    cursors = {name: request.args.get(f"{name}_cursor") for name in ("programs", "clients", "endpoints")}
    try:
        with common.db().read() as session:
            detail = queries.partner(session, code, current_ops().partner_id, **cursors)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        return refusal(exc)
    return page("partner.html", detail=detail)


@blueprint.get("/webhooks")
def webhooks():
    status = request.args.get("status") or None
    try:
        with common.db().read() as session:
            deliveries = queries.deliveries(session, current_ops().partner_id, status, request.args.get("cursor"))
    except DomainError as exc:
        return refusal(exc)
    return page("webhooks.html", deliveries=deliveries, status=status, done=request.args.get("done"))


@blueprint.get("/audit")
def audit():
    require_ops()
    try:
        with common.db().read() as session:
            entries = trail.entries(session, cursor=request.args.get("cursor"), limit=queries.PAGE)
    except DomainError as exc:
        return refusal(exc)
    return page("audit.html", entries=entries)
