"""Reconciliation exceptions in the ops console, on test_reconciliation.py's run with one line
of each class: listed for the ops roles, resolved once with a reason by an admin, audited."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from hub.audit.models import AuditEntry
from hub.audit.review_notes import REASON_MAX
from hub.identity import roles
from hub.settlement.reconciliation_models import ReconciliationException
from tests.integration.test_account_pages import flask_app  # noqa: F401  (fixture)
from tests.integration.test_ops_console import log_in, make_user  # noqa: F401  (fixture)
from tests.integration.test_reconciliation import one_of_each, provider, reporting  # noqa: F401  (fixtures)


def _open(db, run_id: str) -> list[ReconciliationException]:
    with db.read() as s:
        return list(s.scalars(select(ReconciliationException).where(
            ReconciliationException.run_id == uuid.UUID(run_id), ReconciliationException.status == "open")))


def test_an_admin_resolves_an_exception_once_with_a_reason(flask_app, make_user, one_of_each, db):
    run, ids, _ = one_of_each
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    page = browser.get("/ops/reconciliation").get_data(as_text=True)
    assert ids["missing_in_hub"].replace("-", "") in page and "amount_mismatch" in page
    first, *rest = _open(db, run["id"])
    assert browser.post("/ops/reconciliation/resolve", {"exception_id": str(first.id), "resolution": "accepted",
                                                         "reason": " "}).status_code == 422
    browser.get("/ops/reconciliation")
    assert browser.post("/ops/reconciliation/resolve", {"exception_id": str(first.id), "resolution": "accepted",
                                                         "reason": "x" * (REASON_MAX + 1)}).status_code == 422
    browser.get("/ops/reconciliation")
    response = browser.post("/ops/reconciliation/resolve", {"exception_id": str(first.id), "resolution": "accepted",
                                                             "reason": "checked with the provider"})
    assert response.status_code == 302
    assert [e.id for e in _open(db, run["id"])] == [e.id for e in rest]
    with db.read() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "reconciliation.resolve",
                                                  AuditEntry.target == f"reconciliation_exception:{first.id}"))
    assert entry.actor.startswith("ops:")
    browser.get("/ops/reconciliation")
    again = browser.post("/ops/reconciliation/resolve", {"exception_id": str(first.id), "resolution": "written_off",
                                                          "reason": "again"})
    assert again.status_code == 409


def test_an_analyst_sees_exceptions_without_the_resolve_form(flask_app, make_user, one_of_each, db):
    run, _, _ = one_of_each
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    page = browser.get("/ops/reconciliation").get_data(as_text=True)
    assert "amount_mismatch" in page and "/ops/reconciliation/resolve" not in page
    (first, *_) = _open(db, run["id"])
    assert browser.post("/ops/reconciliation/resolve", {"exception_id": str(first.id), "resolution": "accepted",
                                                         "reason": "x"}).status_code == 403
    assert len(_open(db, run["id"])) == 4
