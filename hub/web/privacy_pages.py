"""The member's own data on the account pages: download it (/account/export) and delete the
account (/account/delete), both through hub/privacy. Deleting asks for the password again
(and the second factor's code when it is on): a browser left logged in must not be enough.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for

from hub.errors import DomainError, Invalid
from hub.identity import accounts as identity
from hub.identity.account_models import MemberAccount
from hub.privacy import erasure, export
from hub.web import common, privacy_text  # noqa: F401  (privacy_text adds the pages' texts)
from hub.web.i18n import t
from hub.web.session import current_login, login_url
from hub.web.state import state

blueprint = Blueprint("privacy", __name__, url_prefix="/account", template_folder="templates")
common.guard(blueprint)


@blueprint.get("/export")
def download():
    current = current_login()
    if current is None:
        return redirect(login_url(url_for(".download")))
    with common.db().read() as s:
        member_id = s.get(MemberAccount, current.account_id).member_id
    data = export.archive(common.db(), member_id)
    return current_app.response_class(data, mimetype="application/zip", headers={
        "Content-Disposition": 'attachment; filename="my-coalition-data.zip"'})


def _page(account: MemberAccount, errors: dict, status: int = 200):
    with common.db().read() as s:
        forfeited = erasure.forfeitable(s, account.member_id)
    return render_template("delete_account.html", account=account, forfeited=forfeited, errors=errors,
                           totp_on=identity.totp_enabled(account)), status


@blueprint.route("/delete", methods=["GET", "POST"])
def delete():
    account = common.current_account()
    if account is None:
        return redirect(login_url(url_for(".delete")))
    if request.method == "GET":
        return _page(account, {})
    tries = common.password_attempt(account.email)
    try:
        identity.confirm_password(state().passwords, account, request.form.get("password", ""))
    except Invalid as exc:
        return _page(account, common.errors(exc), 400)
    tries.succeeded()
    code_tries = identity.second_factor_attempt(state().limiter, account) if identity.totp_enabled(account) else None

    def work(s):
        if code_tries is not None and not identity.check_second_factor(
                s, s.get(MemberAccount, account.id), request.form.get("code", "")):
            raise Invalid("that code is not right", slug="code-wrong", field="code")
        return erasure.erase(s, account.member_id, "member")

    try:
        common.db().write(work)
    except Invalid as exc:  # a wrong code (counted: code_tries is not taken back)
        if code_tries is not None and exc.slug == "code-wrong":
            common.second_factor_failed(account, code_tries)
        return _page(account, common.errors(exc), 400)
    except DomainError as exc:  # in flight: try again once it has settled
        return _page(account, {"form": t(f"privacy.error.{exc.slug}")}, exc.status)
    if code_tries is not None:
        code_tries.succeeded()
    g.hub_login, g.hub_login_cookie = None, ""  # the erasure ended the session: drop its cookie
    return common.message("privacy.deleted_title", t("privacy.deleted_text"))
