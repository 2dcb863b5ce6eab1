"""Reconciliation of a provider's report through the HTTP API, on real redemptions relayed
by a scripted provider (tests/integration/test_redemptions.py) that reports in Tango's layout."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from hub.audit.models import AuditEntry
from hub.identity import roles
from hub.identity.clients import create_client
from hub.rewards import providers
from hub.rewards.providers import Outcome, Status
from hub.settlement.reconciliation_models import ReconciliationException, ReconciliationLine, ReconciliationRun
from partners.tango import report as tango_report
from tests.conftest import Api, assert_problem, token_for
from tests.integration.test_redemptions import CARD, provider, redeem, reward_code, rich_member, run_relay  # noqa: F401

HEADER = ",".join(tango_report.HEADER)


@pytest.fixture
def reporting(provider, monkeypatch):
    """The scripted provider, reporting in Tango's layout under its own (unique) name."""
    monkeypatch.setitem(providers._REPORTS, provider.name, tango_report.LAYOUT)
    return provider


def order(db, partner, member, provider, outcome: Outcome) -> str:
    """A redemption of 10.00 USD relayed to the provider, which answers `outcome`."""
    response = redeem(partner, member, reward_code(db, provider), amount="10.00")
    assert response.status_code in (201, 202), response.text
    redemption_id = response.json()["id"]
    provider.place_script = [outcome]
    run_relay(db, provider, redemption_id)
    return redemption_id


def line(redemption_id: str, amount="10.00", status="COMPLETE", at: datetime | None = None) -> str:
    when = (at or datetime.now(timezone.utc)).strftime(tango_report.DATE_FORMAT)
    reference = f"rdm{uuid.UUID(redemption_id).hex}"
    return f"RA-{reference[-8:]},{reference},{when},hub-sandbox,CARD-10,Test card,{amount},USD,{status}"


def csv(*lines: str) -> str:
    return "\r\n".join((HEADER, *lines)) + "\r\n"


def fulfilled():
    return Outcome(Status.FULFILLED, provider_order_id="P-1", delivery=CARD)


def period() -> dict:
    now = datetime.now(timezone.utc)
    return {"period_start": (now - timedelta(hours=1)).isoformat(), "period_end": (now + timedelta(hours=1)).isoformat()}


def counts(db) -> tuple[int, int, int]:
    with db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(t))
                     for t in (ReconciliationRun, ReconciliationLine, ReconciliationException))


@pytest.fixture
def analyst(http, db) -> Api:
    """An ops_analyst: ops:read only."""
    client, secret = db.write(lambda s: create_client(s, name="test analyst", partner_id=None,
                                                      role=roles.OPS_ANALYST, by="test"))
    return Api(http, token_for(http, client.client_id, secret))


@pytest.fixture
def one_of_each(db, partner, reporting, ops):
    """A run with one line of each class; returns (run, ids by class)."""
    member = rich_member(partner)
    ids = {kind: order(db, partner, member, reporting, fulfilled())
           for kind in ("matched", "amount_mismatch", "status_mismatch", "missing_at_provider")}
    voided = order(db, partner, member, reporting, Outcome(Status.FAILED, detail="402"))  # never placed
    stranger = str(uuid.uuid4())
    text = csv(line(ids["matched"]), line(ids["amount_mismatch"], amount="25.00"),
               line(ids["status_mismatch"], status="CANCELLED"), line(stranger), line(voided, status="FAILED"))
    response = ops.post("/v1/reconciliation/runs", {"provider": reporting.name, "csv": text, **period()})
    assert response.status_code == 201, response.text
    return response.json(), ids | {"missing_in_hub": stranger, "voided": voided}, text


def test_a_report_with_one_line_of_each_class(one_of_each, ops):
    run, ids, _ = one_of_each
    assert run["report_lines"] == 5
    assert run["figures"] == {"matched": 2, "missing_in_hub": 1, "missing_at_provider": 1,
                              "amount_mismatch": 1, "status_mismatch": 1}
    assert ops.get(f"/v1/reconciliation/runs/{run['id']}").json() == run
    response = ops.get("/v1/reconciliation/exceptions", run_id=run["id"], status="open")
    assert response.status_code == 200, response.text
    items = {e["kind"]: e for e in response.json()["items"]}
    assert set(items) == {"missing_in_hub", "missing_at_provider", "amount_mismatch", "status_mismatch"}
    assert items["amount_mismatch"]["provider_amount"] == "25.00" and items["amount_mismatch"]["hub_amount"] == "10.00"
    assert items["amount_mismatch"]["line"] == 3 and items["amount_mismatch"]["redemption_id"] == ids["amount_mismatch"]
    assert (items["status_mismatch"]["provider_status"], items["status_mismatch"]["hub_state"]) == ("failed", "fulfilled")
    assert items["missing_in_hub"]["redemption_id"] is None and items["missing_in_hub"]["line"] == 5
    assert items["missing_at_provider"]["line"] is None
    assert items["missing_at_provider"]["redemption_id"] == ids["missing_at_provider"]
    listed = ops.get("/v1/reconciliation/runs", provider=run["provider"]).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]


def test_the_same_file_twice_is_the_same_run(one_of_each, ops, db):
    run, _, text = one_of_each
    before = counts(db)
    again = ops.post("/v1/reconciliation/runs", {"provider": run["provider"], "csv": text})
    assert again.status_code == 200, again.text
    assert again.json() == run
    assert counts(db) == before


def test_a_malformed_report_is_refused_whole(db, partner, reporting, ops):
    member = rich_member(partner)
    good = order(db, partner, member, reporting, fulfilled())
    before = counts(db)
    text = csv(line(good), line(str(uuid.uuid4()), amount="12,5").replace("12,5", '"12,5"'))
    response = ops.post("/v1/reconciliation/runs", {"provider": reporting.name, "csv": text})
    problem = assert_problem(response, 422, "malformed-report")
    assert (problem["line"], problem["column"]) == (3, "Amount")
    assert problem["detail"].startswith('line 3, column "Amount": \'12,5\' is not an amount')
    assert counts(db) == before


@pytest.mark.parametrize("column, cell, problem", [
    # Each would fail PostgreSQL's insert (String(100), no NUL): a 500 before it was checked.
    (1, "rdm" + "0" * 98, "is 101 characters long (at most 100)"),
    (0, "RA-" + "9" * 98, "is 101 characters long (at most 100)"),
    (1, "rdm\x00", "holds a control character (U+0000)"),
    # One day past it is not a date: the period arithmetic overflowed.
    (2, "9999-12-31 23:59:59", "is not a year from 1970 to 9998"),
])
def test_a_cell_the_hub_cannot_keep_is_refused_whole(db, partner, reporting, ops, column, cell, problem):
    member = rich_member(partner)
    good = order(db, partner, member, reporting, fulfilled())
    before = counts(db)
    cells = line(str(uuid.uuid4())).split(",")
    cells[column] = cell
    text = csv(line(good), ",".join(cells))
    response = ops.post("/v1/reconciliation/runs", {"provider": reporting.name, "csv": text})
    problem_doc = assert_problem(response, 422, "malformed-report")
    named = tango_report.HEADER[column]
    assert (problem_doc["line"], problem_doc["column"]) == (3, named)
    assert problem_doc["detail"].startswith(f'line 3, column "{named}": ') and problem in problem_doc["detail"]
    assert counts(db) == before


def test_a_reference_echoed_in_another_spelling_matches_its_order(db, partner, reporting, ops):
    member = rich_member(partner)
    redemption_id = order(db, partner, member, reporting, fulfilled())
    ours = uuid.UUID(redemption_id)
    shouted = line(redemption_id).replace(f"rdm{ours.hex}", f"RDM{str(ours).upper()}")
    response = ops.post("/v1/reconciliation/runs", {"provider": reporting.name, "csv": csv(shouted), **period()})
    assert response.status_code == 201, response.text
    assert response.json()["figures"] == {"matched": 1, "missing_in_hub": 0, "missing_at_provider": 0,
                                          "amount_mismatch": 0, "status_mismatch": 0}


@pytest.mark.parametrize("provider_name, text, missing", [
    ("no-such-provider", csv(), None),
    ("tango", "Order ID,External ID,Created At,Amount,Currency Code,Status\r\n", ["Currency", "External Ref ID",
                                                                                  "Order Date", "Reference Order ID"]),
])
def test_an_unknown_layout_is_refused(ops, db, provider_name, text, missing):
    before = counts(db)
    problem = assert_problem(ops.post("/v1/reconciliation/runs", {"provider": provider_name, "csv": text}),
                             422, "unknown-report-layout")
    assert sorted(problem.get("missing_columns") or []) == (missing or [])
    assert counts(db) == before


def test_an_ops_analyst_reads_but_cannot_resolve(one_of_each, analyst, ops):
    run, _, _ = one_of_each
    assert analyst.get(f"/v1/reconciliation/runs/{run['id']}").status_code == 200
    (first, *_) = analyst.get("/v1/reconciliation/exceptions", run_id=run["id"]).json()["items"]
    response = analyst.post(f"/v1/reconciliation/exceptions/{first['id']}/resolve",
                            {"resolution": "accepted", "reason": "checked with the provider"})
    assert_problem(response, 403, "insufficient-scope")
    assert analyst.post("/v1/reconciliation/runs", {"provider": "tango", "csv": csv()}).status_code == 403
    still = ops.get("/v1/reconciliation/exceptions", run_id=run["id"], status="open").json()["items"]
    assert len(still) == 4


def test_resolving_is_audited_and_happens_once(one_of_each, ops, db):
    run, _, _ = one_of_each
    (amount,) = [e for e in ops.get("/v1/reconciliation/exceptions", run_id=run["id"]).json()["items"]
                 if e["kind"] == "amount_mismatch"]
    path = f"/v1/reconciliation/exceptions/{amount['id']}/resolve"
    assert_problem(ops.post(path, {"resolution": "provider_credit", "reason": "   "}), 422, "reason-required")
    response = ops.post(path, {"resolution": "provider_credit", "reason": "Tango credit note CN-881"})
    assert response.status_code == 200, response.text
    resolved = response.json()
    assert (resolved["status"], resolved["resolution"], resolved["reason"]) == (
        "resolved", "provider_credit", "Tango credit note CN-881")
    assert resolved["resolved_by"].startswith("client:") and resolved["resolved_at"]
    with db.read() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "reconciliation.resolve",
                                                     AuditEntry.target == f"reconciliation_exception:{amount['id']}")).all()
    assert [(e.before["status"], e.after["status"], e.after["resolution"]) for e in entries] == [
        ("open", "resolved", "provider_credit")]
    assert entries[0].actor == resolved["resolved_by"]
    assert_problem(ops.post(path, {"resolution": "written_off", "reason": "again"}), 409, "exception-already-resolved")
    open_now = ops.get("/v1/reconciliation/exceptions", run_id=run["id"], status="open").json()["items"]
    assert amount["id"] not in {e["id"] for e in open_now} and len(open_now) == 3
    assert_problem(ops.post(f"/v1/reconciliation/exceptions/{uuid.uuid4()}/resolve",
                            {"resolution": "accepted", "reason": "x"}), 404, "reconciliation-exception-not-found")


def test_an_idempotency_key_replays_the_first_answer(reporting, ops):
    body = {"provider": reporting.name, "csv": csv(line(str(uuid.uuid4())))}
    key = uuid.uuid4().hex
    first = ops.post("/v1/reconciliation/runs", body, key=key)
    assert first.status_code == 201, first.text
    again = ops.post("/v1/reconciliation/runs", body, key=key)
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
