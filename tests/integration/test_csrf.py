"""CSRF (hub/web/session.py): every form route of the pages refuses a POST without this
browser's token, or with a wrong one, and changes nothing. The routes come from the Flask
url_map, so a new form route is covered (or must be listed below with the reason it is not a
form)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

import hub.models  # noqa: F401  (every table in Base.metadata)
from hub.db import Base
from hub.identity.account_models import MemberAccount
from hub.web.i18n import MESSAGES
from tests.integration import oidc_support as oidc
from tests.integration.test_account_pages import PASSWORD, flask_app  # noqa: F401  (fixture)

FORM_BLUEPRINTS = ("accounts", "dashboard", "privacy", "sharing", "oidc", "ops")
# Posted by relying parties or with a bearer token, not forms of the hub's pages.
NOT_FORMS = {
    "/oauth/authorize": "the authorization request a brand's page may POST (RFC 6749 3.1); a code goes only "
                        "to the client's registered redirect URI",
    "/oauth/userinfo": "a bearer token's read (RFC 6750 2.2)",
}
CLIENT_ENDPOINTS = {"/oauth/token", "/oauth/revoke", "/oauth/introspect"}  # client-authenticated
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Plausible fields for any form: if a route skipped the check, these would make it act.
FIELDS = {"email": "someone@example.com", "password": PASSWORD, "confirm": "yes", "code": "000000",
          "token": "x", "program": "G1", "identifier": "1234", "decision": "allow", "next": "/account/",
          "given_name": "Siti", "family_name": "Rahayu"}


def _form_routes(flask_app) -> list[tuple[str, str]]:
    routes = []
    for rule in flask_app.url_map.iter_rules():
        methods = rule.methods & WRITE_METHODS
        if not methods or rule.rule.startswith("/v1") or rule.rule in NOT_FORMS:
            continue
        if rule.endpoint.split(".")[0] not in FORM_BLUEPRINTS:
            assert rule.rule in CLIENT_ENDPOINTS, f"{rule.rule}: a form outside the pages' blueprints"
            continue
        routes += [(rule.rule, method) for method in sorted(methods)]
    return routes


def _counts(db) -> dict[str, int]:
    with db.read() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def _account(db, account_id):
    with db.read() as s:
        account = s.get(MemberAccount, account_id)
        return {c.key: getattr(account, c.key) for c in MemberAccount.__mapper__.column_attrs}


@pytest.mark.parametrize("wrong_token", ["", "0" * 64], ids=["no token", "wrong token"])
def test_every_form_route_refuses_a_post_without_this_browsers_token_and_changes_nothing(
        app, db, flask_app, wrong_token):
    logged_in, cookie = oidc.log_in(db)
    browser = oidc.Browser(app, cookie)  # through the ASGI app, as a server runs it
    assert browser.get("/account/security").status_code == 200  # (sets this browser's CSRF cookie)
    routes = _form_routes(flask_app)
    assert len(routes) >= 15  # the pages' forms are all there (login ... consent, logout)
    before, account = _counts(db), _account(db, logged_in.account_id)
    for path, method in routes:
        fields = {**FIELDS, **({"csrf_token": wrong_token} if wrong_token else {})}
        response = browser.client.request(method, path, data=fields)
        assert response.status_code == 400, (path, response.status_code)
        if path.startswith(("/account", "/ops")):
            assert MESSAGES["en"]["form_expired_text"] in response.text
        else:  # the provider's pages: abort(400) as a problem
            assert response.json()["detail"] == "csrf", path
    assert _counts(db) == before and _account(db, logged_in.account_id) == account
    assert browser.get("/account/security").status_code == 200  # still logged in
