"""/account/sharing: the member chooses, per partner they belong to and per purpose, what that
partner may see beyond its own programs (hub/privacy/sharing.py). Nothing is shared until the
member presses "Share" here: never by enrolling, nor by signing in on a brand's site.

Thin, like dashboard.py: the POST carries the CSRF token (checked before the view) and runs
one grant or withdrawal in one transaction, then shows the page again (303).
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from hub.errors import DomainError
from hub.privacy import sharing
from hub.web import common
from hub.web import sharing_text  # noqa: F401  (adds the page's texts to the catalogue)
from hub.web.i18n import t
from hub.web.session import current_login, login_url

blueprint = Blueprint("sharing", __name__, url_prefix="/account/sharing", template_folder="templates")
common.guard(blueprint)
NOTICES = ("granted", "revoked")


@blueprint.get("/")
def page():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".page")))
    with common.db().read() as s:
        choices = sharing.choices(s, common.web_actor(current.member_id))
    partners: dict[str, list[sharing.Choice]] = {}  # partner code -> its purposes
    for choice in choices:
        partners.setdefault(choice.partner, []).append(choice)
    done = request.args.get("done")
    notice = t(f"sharing.notice_{done}") if done in NOTICES else None
    return render_template("sharing.html", partners=partners, notice=notice, purposes=sharing.PURPOSES)


@blueprint.post("/")
def change():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".page")))
    form = request.form
    act = {"grant": sharing.grant, "revoke": sharing.revoke}.get(form.get("action", ""))
    if act is None:
        return common.message("sharing.refused_title", t("sharing.refused_text"), link=url_for(".page"),
                                 link_key="sharing.back", status=400)
    actor = common.web_actor(current.member_id)
    try:
        common.db().write(lambda s: act(s, actor, form.get("partner", ""), form.get("purpose", ""),
                                            sharing.DASHBOARD))
    except DomainError:
        return common.message("sharing.refused_title", t("sharing.refused_text"), link=url_for(".page"),
                                 link_key="sharing.back", status=404)
    return redirect(url_for(".page", done="granted" if act is sharing.grant else "revoked"), 303)
