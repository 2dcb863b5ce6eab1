"""Statements and their drill-down in the ops console, on test_settlement.py's closed month:
an admin sees every statement and the transfers behind a line; a partner_admin only its own."""
from __future__ import annotations

import re

from hub.identity import roles
from tests.integration.test_account_pages import flask_app  # noqa: F401  (fixture)
from tests.integration.test_ops_console import log_in, make_user  # noqa: F401  (fixture)
from tests.integration.test_settlement import MONTH, _own, month, provider  # noqa: F401  (fixtures)


def _links(page: str, pattern: str) -> list[str]:
    return re.findall(rf'href="({pattern})"', page)


def test_an_admin_drills_from_the_period_to_the_transfers_of_a_line(flask_app, make_user, month):
    a, b = month["a"], month["b"]
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    page = browser.get(f"/ops/statements?period={MONTH}").get_data(as_text=True)
    statement = f"/ops/statements/{_own(month, a)['id']}"
    assert statement in page and f"/ops/statements/{_own(month, b)['id']}" in page
    page = browser.get(statement).get_data(as_text=True)
    assert "1,256" in page  # a's net due, as the API's figures by hand (test_settlement)
    (first, *_) = _links(page, re.escape(statement) + r"/lines/\d+")
    transfers = browser.get(first)
    assert transfers.status_code == 200 and "<td class=\"num\">" in browser.text()
    assert browser.get(statement + "/lines/999999999").status_code == 404


def test_a_partner_admin_sees_only_its_own_statements(flask_app, make_user, month):
    a, b = month["a"], month["b"]
    browser = log_in(flask_app, make_user(roles.PARTNER_ADMIN, a.code))
    page = browser.get(f"/ops/statements?period={MONTH}").get_data(as_text=True)
    assert _own(month, a)["id"] in page and _own(month, b)["id"] not in page
    other = f"/ops/statements/{_own(month, b)['id']}"
    assert browser.get(other).status_code == 404
    assert browser.get(other + "/lines/1").status_code == 404
    assert browser.get("/ops/reconciliation").status_code == 403
