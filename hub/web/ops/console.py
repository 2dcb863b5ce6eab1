"""The ops console's blueprint and what its pages share: the ops login of this request, the
guards every route passes, and the message page.

Guards, in this order, before every route:
1. the request's ops login is looked up, and CSRF tokens are bound to it (not to a member's);
2. CSRF on every POST (hub.web.common.guard, as on the member pages);
3. a login is needed everywhere but the login page; a POST other than logout needs ops:write
   (ops_admin): ops_analyst and partner_admin get 403.
What a role may *read* is enforced by the query functions (hub/web/ops/queries.py, the
partner reach) and by `require_ops` for the pages partner_admin has no business on.

The ops cookie is separate from the member's (hub_ops; `__Host-` prefixed, Secure, HttpOnly,
and SameSite=Strict: the console is never reached by a link from another site).
"""
from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from hub.audit import review_notes
from hub.errors import DomainError
from hub.identity import ops_users
from hub.identity.ops_users import OpsLogin
from hub.web import common
from hub.web import session as web_session

blueprint = Blueprint("ops", __name__, url_prefix="/ops")

COOKIE = "hub_ops"
SAMESITE = "Strict"
OPEN = {"ops.login"}  # reachable without an ops login
ANY_ROLE_POSTS = {"ops.logout"}  # POSTs every role may send


def current_ops() -> OpsLogin | None:
    """The ops login of this request's cookie."""
    return web_session.cookie_login("ops_login", COOKIE, ops_users)


def _bind_csrf():
    current = current_ops()
    g.csrf_session = f"ops:{current.session_id if current else ''}"


def _authorize():
    if request.endpoint in OPEN:
        return None
    current = current_ops()
    if current is None:
        return redirect(url_for("ops.login", next=request.full_path if request.method == "GET" else None))
    if request.method == "POST" and request.endpoint not in ANY_ROLE_POSTS and not current.can_write:
        abort(403)
    return None


blueprint.before_request(_bind_csrf)  # first: the CSRF check below needs the binding
common.guard(blueprint)
blueprint.before_request(_authorize)


def require_ops() -> OpsLogin:
    """The login, if its role reaches every partner (ops_admin, ops_analyst); else 403."""
    current = current_ops()
    if current.partner_id is not None:
        abort(403)
    return current


def set_login_cookie(response, token: str) -> None:
    web_session.set_cookie(response, COOKIE, token, max_age=int(ops_users.ABSOLUTE.total_seconds()),
                           samesite=SAMESITE)


def clear_login_cookie(response) -> None:
    web_session.clear_cookie(response, COOKIE, samesite=SAMESITE)


def page(template: str, status: int = 200, /, **context):  # (a page's context may hold a `status` filter)
    return render_template(f"ops/{template}", me=current_ops(), **context), status


def refused(status: int, text: str):
    titles = {400: "Refused", 403: "Not allowed", 404: "Not found", 409: "No longer possible", 422: "Refused"}
    return page("message.html", status, title=titles.get(status, "Refused"), text=text)


def refusal(exc: DomainError):
    """The page of a domain refusal. A cursor the console never issued is a bad link (400)."""
    if exc.slug == "invalid-cursor":
        return refused(400, "That is not a page of this list.")
    return refused(exc.status, exc.detail)


def page_url(param: str, cursor: str | None) -> str:
    """This page with the list named by `param` at `cursor` (None: its first page). The
    filters and the other lists' positions stay; a past action's notice does not."""
    # Only the query's own names: one spelled like the route's variables or url_for's options
    # (`endpoint`, `_external`, `_anchor`...) would be taken as those.
    args = {name: value for name, value in request.args.items()
            if name not in (param, "done", "endpoint") and name not in request.view_args and not name.startswith("_")}
    if cursor is not None:
        args[param] = cursor
    return url_for(request.endpoint, **request.view_args, **args)


@blueprint.context_processor
def _globals():
    return {"page_url": page_url, "reason_max": review_notes.REASON_MAX}


@blueprint.errorhandler(403)
def _forbidden(_exc):
    return refused(403, "Your role may not do this.")


@blueprint.errorhandler(404)
def _not_found(_exc):
    return refused(404, "There is nothing here, or nothing your role may see.")
