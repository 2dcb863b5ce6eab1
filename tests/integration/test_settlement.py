"""Settlement through the HTTP API: one month of activity in the future (the clock travels
there, so no other test's transfers share it), closed, re-closed, drilled into, exported,
and a late transfer that lands in the next month."""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timezone

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import func, select, update

from hub import ledger
from hub.api import runtime
from hub.identity.clients import create_client
from hub.ledger.service import TransferSpec
from hub.rewards.providers import Outcome, Status
from hub.settlement import statements
from hub.ledger.models import Account, Transfer
from hub.ledger.verify import verify
from hub.notify.webhook_models import WebhookEvent
from hub.programs.models import Membership, Program
from hub.settlement.models import StatementLine
from tests.conftest import Api, Partner, assert_problem, token_for, unique_code
from tests.integration.test_redemptions import CARD, reward_code, run_relay, scripted_provider

MONTH, NEXT = "2026-12", "2027-01"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _ops(http, db, scopes=None) -> Api:
    client, secret = db.write(lambda s: create_client(s, name="settlement ops", partner_id=None, scopes=scopes, by="test"))
    return Api(http, token_for(http, client.client_id, secret))


def _ledger(db, a: Partner, b: Partner, a_member: str, b_member: str) -> None:
    """A conversion of 10 A points into 40 B points, and 3 of A's points expiring: the ledger
    movements hub.exchange and hub.rules.expiry post."""
    def post(s):
        pa, pb = (s.scalar(select(Program).where(Program.code == p.program)) for p in (a, b))
        account = {m: s.scalar(select(Membership.account_id).where(Membership.member_id == uuid.UUID(m)))
                   for m in (a_member, b_member)}
        ledger.post(s, [TransferSpec(account[a_member], pa.clearing_account_id, 10, "conversion", pa.id, "test"),
                        TransferSpec(pb.clearing_account_id, account[b_member], 40, "conversion", pb.id, "test")])
        ledger.post(s, [TransferSpec(account[a_member], pa.breakage_account_id, 3, "expiry", pa.id, "test")])
    db.write(post)


@pytest.fixture(scope="module")
def provider(db):
    with scripted_provider(db) as fake:
        yield fake


def redeem(partner, member, reward, **extra):
    body = {"reward": reward, "program": partner.program, "member": {"member_id": member}, **extra}
    return partner.api.post("/v1/redemptions", body)


@pytest.fixture(scope="module")
def month(http, db, provider):
    """Two partners' activity in MONTH, priced, and the close's answer."""
    with time_machine.travel(_at("2026-12-10T12:00:00"), tick=True):
        ops = _ops(http, db)
        a, b = Partner(ops, http), Partner(ops, http)
        for p, per_point in ((a, "10"), (b, "2.5")):
            r = ops.http.put(f"/v1/settlement/prices/{p.program}", headers=ops.headers, json={
                "effective_from": "2026-12-01T00:00:00Z", "currency": "IDR", "per_point_minor": per_point,
                "issuance_fee_bps": 150})
            assert r.status_code == 200, r.text
        assert a.api.post("/v1/webhook-endpoints", {"url": "https://partner.example/hook",
                                                      "event_types": ["settlement.closed"]}).status_code == 201
        members = [a.enrol(), a.enrol()]
        a.buy(members[0], "123000")  # 123 points
        purchase = a.buy(members[1], "50000")  # 50 points
        returned = a.api.post("/v1/returns", {"purchase": {"id": purchase["id"]}, "return_id": "r-1",
                                              "amount": "20000", "currency": "IDR",
                                              "occurred_at": "2026-11-02T10:00:00Z"})
        assert returned.json()["points"] == 20, returned.text
        reward = a.api.post("/v1/rewards", {"code": unique_code("R"), "kind": "free_product", "name": "Latte",
                                            "program": a.program, "points": 30}).json()["code"]
        assert redeem(a, members[0], reward).json()["state"] == "fulfilled"
        b_member = b.enrol(email=f"m{uuid.uuid4().hex[:8]}@example.com")
        b.buy(b_member, "16040000")  # 16,040 points
        _ledger(db, a, b, members[0], b_member)
        order = redeem(b, b_member, reward_code(db, provider), amount="10.00")
        assert order.status_code == 202 and order.json()["points"] == 16000, order.text
        order = order.json()
        provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-1", delivery=CARD)]
        assert run_relay(db, provider, order["id"]) == "fulfilled"
    with time_machine.travel(_at("2027-01-01T00:05:00"), tick=True):
        ops = _ops(http, db)
        early = ops.post(f"/v1/settlement/periods/{MONTH}/close")
    with time_machine.travel(_at("2027-01-01T00:20:00"), tick=True):
        ops = _ops(http, db)
        closed = ops.post(f"/v1/settlement/periods/{MONTH}/close")
        assert closed.status_code == 200, closed.text
        again = ops.post(f"/v1/settlement/periods/{MONTH}/close")
        yield {"ops": ops, "a": a, "b": b, "members": members, "early": early, "closed": closed.json(),
               "again": again.json()}


def _own(month, partner: Partner) -> dict:
    (found,) = [s for s in month["closed"]["items"] if s["partner"] == partner.code]
    return found


def _partner_id(db, partner: Partner) -> uuid.UUID:
    with db.read() as s:
        return s.scalar(select(Program.partner_id).where(Program.code == partner.program))


def _lines(ops: Api, statement_id: str) -> dict:
    body = ops.get(f"/v1/settlement/statements/{statement_id}").json()
    return {line["category"]: line for line in body["lines"]}


def test_a_month_not_over_is_refused(month, http):
    assert_problem(month["early"], 422, "period-not-over")
    assert_problem(month["ops"].post("/v1/settlement/periods/2026-13/close"), 422, "invalid-period")


def test_statement_figures_by_hand(month):
    ops, a = month["ops"], month["a"]
    lines = _lines(ops, _own(month, a)["id"])
    figures = {c: (line["points"], line["amount_minor"]) for c, line in lines.items()}
    # A: 10 minor units a point, 150 bps on issued value.
    assert figures == {
        "opening": (0, 0), "issued": (173, 1730), "reversed": (20, 200), "redeemed": (30, 300),
        "converted_out": (10, 100), "converted_in": (0, 0), "breakage": (3, 30),
        "closing": (110, 1100),  # 173 - 20 - 30 - 10 - 3
        "fee": (None, 26),  # 1730 x 1.5% = 25.95, half-even
        "inhouse_redemptions": (30, 300),  # the latte: the hub pays A for it
        "conversion_margin": (None, 100),  # 100 out, nothing in
        "net_due": (None, 1256),  # 1730 - 200 + 26 - 300
    }
    assert _own(month, a)["net_due_minor"] == 1256
    # B: 2.5 a point. 16,040 issued = 40,100 (fee 601.5 -> 602, half-even); 40 converted in
    # = 100; the gift card's 16,000 redeemed = 40,000 (its value goes to the provider).
    b = {c: (line["points"], line["amount_minor"]) for c, line in _lines(ops, _own(month, month["b"])["id"]).items()}
    assert (b["issued"], b["fee"], b["converted_in"], b["redeemed"], b["closing"]) == \
        ((16040, 40100), (None, 602), (40, 100), (16000, 40000), (80, 200))
    assert (b["conversion_margin"], b["net_due"]) == ((None, -100), (None, 40702))


def test_the_provider_is_owed_the_face_value(month, provider):
    (statement,) = [s for s in month["closed"]["items"] if s["party"] == provider.name]
    assert (statement["party_kind"], statement["currency"], statement["net_due_minor"]) == ("provider", "USD", -1000)
    lines = _lines(month["ops"], statement["id"])
    assert (lines["provider_orders"]["count"], lines["provider_orders"]["amount_minor"]) == (1, 1000)


def test_closing_points_equal_member_balances(month, db):
    a = month["a"]
    lines = _lines(month["ops"], _own(month, a)["id"])
    with db.read() as s:
        program = s.scalar(select(Program).where(Program.code == a.program))
        held = s.scalar(select(func.sum(Account.credits_posted - Account.debits_posted))
                        .join(Membership, Membership.account_id == Account.id)
                        .where(Membership.program_id == program.id))
    assert lines["closing"]["points"] == held
    with db.read() as s:
        assert verify(s).ok  # the month's scenario left the ledger whole


def test_reclose_returns_the_same_statements(month):
    first, again = month["closed"], month["again"]
    assert again["already_closed"] is True and first["already_closed"] is False
    assert [(s["id"], s["digest"], s["net_due_minor"]) for s in again["items"]] == \
        [(s["id"], s["digest"], s["net_due_minor"]) for s in first["items"]]


def test_drill_down_sums_to_the_line_and_export_totals(month):
    ops, a = month["ops"], month["a"]
    statement_id = _own(month, a)["id"]
    issued = _lines(ops, statement_id)["issued"]
    page = ops.get(f"/v1/settlement/statements/{statement_id}/lines/{issued['id']}/transfers", limit=1)
    assert page.status_code == 200, page.text
    items, cursor = page.json()["items"], page.json()["next_cursor"]
    while cursor:
        page = ops.get(f"/v1/settlement/statements/{statement_id}/lines/{issued['id']}/transfers",
                       limit=1, cursor=cursor).json()
        items, cursor = items + page["items"], page["next_cursor"]
    assert sum(t["amount"] for t in items) == issued["points"] and len(items) == issued["count"] == 2
    exported = ops.get(f"/v1/settlement/statements/{statement_id}/export", format="csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sum(int(r["amount"]) for r in rows if r["record"] == "transfer" and r["line_id"] == str(issued["id"])) == 173
    document = json.loads(ops.get(f"/v1/settlement/statements/{statement_id}/export", format="json").text)
    (line,) = [x for x in document["lines"] if x["line_id"] == issued["id"]]
    assert sum(t["amount"] for t in line["transfers"]) == 173 and document["net_due_minor"] == 1256


def test_a_partner_sees_only_its_own(month, http, db):
    a, b = month["a"], month["b"]
    with time_machine.travel(_at("2027-01-01T00:30:00"), tick=True):
        token = Api(http, token_for(http, a.client_id, a.secret, "settlement:read"))
        mine = token.get("/v1/settlement/statements", period=MONTH).json()["items"]
        assert [s["id"] for s in mine] == [_own(month, a)["id"]]
        assert token.get(f"/v1/settlement/statements/{_own(month, a)['id']}").status_code == 200
        assert_problem(token.get(f"/v1/settlement/statements/{_own(month, b)['id']}"), 404, "not-found")
        analyst = _ops(http, db, scopes=["ops:read"])
        assert analyst.post(f"/v1/settlement/periods/{MONTH}/close").status_code == 403


def test_closed_webhook_queued_for_a_partner_with_an_endpoint(month, db):
    with db.read() as s:
        events = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "settlement.closed")).all()
    payloads = [e.data for e in events if e.data.get("statement_id") == _own(month, month["a"])["id"]]
    assert payloads == [{"statement_id": _own(month, month["a"])["id"], "period": MONTH, "currency": "IDR",
                         "net_due_minor": 1256}]


def test_a_late_transfer_goes_to_the_next_period(month, http, db):
    a = month["a"]
    with db.read() as s:
        program = s.scalar(select(Program).where(Program.code == a.program))
        account = s.scalar(select(Membership.account_id).join(Program).where(Program.code == a.program).limit(1))
    # A transaction that began in the closed month and committed after its close.
    with time_machine.travel(_at("2026-12-20T00:00:00"), tick=False):
        db.write(lambda s: ledger.post(s, [TransferSpec(program.issuance_account_id, account, 7, "adjustment",
                                                         program.id, "test")]))
    settings = runtime.current().settings
    # The daily beat job closes the previous month once it is over, and only then.
    assert statements.close_previous_month(db, settings, now=_at("2027-02-01T00:10:00"))["closed"] == []
    assert statements.close_previous_month(db, settings, now=_at("2027-02-01T01:00:00"))["closed"] == [NEXT]
    with time_machine.travel(_at("2027-02-01T01:00:00"), tick=True):
        ops = _ops(http, db)
        (next_statement,) = ops.get("/v1/settlement/statements", period=NEXT, partner=str(_partner_id(db, a))).json()["items"]
        lines = _lines(ops, next_statement["id"])
        assert (lines["opening"]["points"], lines["issued"]["points"], lines["closing"]["points"]) == (110, 7, 117)
        (late,) = ops.get(f"/v1/settlement/statements/{next_statement['id']}/lines/{lines['issued']['id']}/transfers"
                          ).json()["items"]
        assert late["created_at"].startswith("2026-12-20") and late["amount"] == 7
        again = ops.post(f"/v1/settlement/periods/{MONTH}/close").json()
        assert [s["digest"] for s in again["items"]] == [s["digest"] for s in month["closed"]["items"]]


def test_price_changes_are_audited_and_refused_inside_a_closed_period(month, db):
    from hub.audit.models import AuditEntry

    ops, a = month["ops"], month["a"]
    with time_machine.travel(_at("2027-01-01T00:40:00"), tick=True):
        refused = ops.http.put(f"/v1/settlement/prices/{a.program}", headers=ops.headers, json={
            "effective_from": "2026-12-15T00:00:00Z", "currency": "IDR", "per_point_minor": "11",
            "issuance_fee_bps": 100})
    assert_problem(refused, 409, "period-closed")
    with db.read() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "settlement.price.set",
                                                     AuditEntry.target == f"program:{a.program}")).all()
        closes = s.scalars(select(AuditEntry).where(AuditEntry.target == f"period:{MONTH}")).all()
    assert [e.after["per_point_minor"] for e in entries] == ["10"]
    assert len(closes) == 1


def _cli(settings, monkeypatch, *args):
    from hub.cli import main

    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    return CliRunner().invoke(main, list(args))


def test_cli_close_verify_and_export(month, monkeypatch, tmp_path, db):
    settings = runtime.current().settings
    again = _cli(settings, monkeypatch, "settlement", "close", "--period", MONTH)
    assert again.exit_code == 0 and "already closed" in again.output, again.output
    not_over = _cli(settings, monkeypatch, "settlement", "close", "--period", "2099-01")
    assert not_over.exit_code == 1 and "not over" in not_over.output
    assert _cli(settings, monkeypatch, "settlement", "verify", "--period", MONTH).exit_code == 0

    statement_id = _own(month, month["a"])["id"]
    out = tmp_path / "a.csv"
    exported = _cli(settings, monkeypatch, "settlement", "export", statement_id, "--format", "csv", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert not (tmp_path / "a.csv.partial").exists()
    rows = list(csv.DictReader(out.open()))
    issued = next(r for r in rows if r["record"] == "line" and r["category"] == "issued")
    assert sum(int(r["amount"]) for r in rows if r["line_id"] == issued["line_id"] and r["record"] == "transfer") == 173


def test_verify_finds_a_tampered_line(month, monkeypatch, db):
    settings = runtime.current().settings
    statement_id = uuid.UUID(_own(month, month["a"])["id"])
    line = StatementLine.__table__

    def shift(delta):
        db.write(lambda s: s.execute(update(line).where(line.c.statement_id == statement_id, line.c.category == "fee")
                                     .values(amount_minor=line.c.amount_minor + delta)))
    shift(1)
    try:
        tampered = _cli(settings, monkeypatch, "settlement", "verify", "--period", MONTH)
        assert tampered.exit_code == 1 and "drift" in tampered.output
    finally:
        shift(-1)
    assert _cli(settings, monkeypatch, "settlement", "verify", "--period", MONTH).exit_code == 0


def test_cli_sets_a_price_on_the_audit_trail(month, monkeypatch, db):
    from hub.audit.models import AuditEntry

    settings = runtime.current().settings
    b = month["b"]
    result = _cli(settings, monkeypatch, "settlement", "price", "--program", b.program, "--from", "2027-06-01",
                  "--currency", "IDR", "--per-point", "3", "--fee-bps", "100")
    assert result.exit_code == 0, result.output
    with db.read() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.target == f"program:{b.program}")
                          .order_by(AuditEntry.seq.desc())).first()
    assert (entry.actor, entry.after["per_point_minor"], entry.after["issuance_fee_bps"]) == ("cli", "3", 100)


def test_an_interrupted_export_leaves_no_file_and_a_rerun_writes_it_whole(month, monkeypatch, tmp_path):
    from hub.settlement import exports

    settings = runtime.current().settings
    statement_id = _own(month, month["a"])["id"]
    out = tmp_path / "a.csv"
    real_stream = exports.stream

    def interrupted(*args, **kwargs):
        chunks = real_stream(*args, **kwargs)
        yield next(chunks)
        raise KeyboardInterrupt  # Ctrl-C after the first chunk

    monkeypatch.setattr(exports, "stream", interrupted)
    stopped = _cli(settings, monkeypatch, "settlement", "export", statement_id, "--out", str(out))
    assert stopped.exit_code != 0 and not out.exists()  # at most a .partial, never half of OUT
    monkeypatch.setattr(exports, "stream", real_stream)
    rerun = _cli(settings, monkeypatch, "settlement", "export", statement_id, "--out", str(out))
    assert rerun.exit_code == 0, rerun.output
    assert not (tmp_path / "a.csv.partial").exists()
    whole = list(csv.DictReader(out.open()))
    assert {r["record"] for r in whole} == {"line", "transfer"}


def test_a_price_in_another_currency_is_refused_and_nothing_written(month, db):
    from hub.audit.models import AuditEntry

    ops, b = month["ops"], month["b"]

    def state():
        with db.read() as s:
            audited = s.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.target == f"program:{b.program}"))
        return ops.get(f"/v1/settlement/prices/{b.program}").json()["items"], audited

    before = state()
    refused = ops.http.put(f"/v1/settlement/prices/{b.program}", headers=ops.headers, json={
        "effective_from": "2099-01-01T00:00:00Z", "currency": "USD", "per_point_minor": "0.01",
        "issuance_fee_bps": 100})
    assert_problem(refused, 409, "price-currency-change")
    assert "IDR" in refused.json()["detail"] and "USD" in refused.json()["detail"]
    assert state() == before


def test_movements_before_the_first_price_count_at_zero_in_its_currency(http, db):
    """A program priced mid-month: its earlier movements count in points, valued at 0, in the
    statement of its price's currency (not `XXX`)."""
    from hub.settlement.periods import Period

    with time_machine.travel(_at("2032-05-09T23:30:00"), tick=True):
        ops = _ops(http, db)
        partner = Partner(ops, http)
        member = partner.enrol()
        partner.buy(member, "40000")  # 40 points, unpriced
        r = ops.http.put(f"/v1/settlement/prices/{partner.program}", headers=ops.headers, json={
            "effective_from": "2032-05-10T00:00:00Z", "currency": "IDR", "per_point_minor": "10",
            "issuance_fee_bps": 0})
        assert r.status_code == 200, r.text
    with time_machine.travel(_at("2032-05-10T00:10:00"), tick=True):
        partner.buy(member, "5000")  # 5 points at IDR 10
    with db.read() as s:
        program_id = s.scalar(select(Program.id).where(Program.code == partner.program))
        through = s.scalar(select(func.max(Transfer.id)))
        drafts = statements.compute(s, Period(2032, 5), through, through)
    (draft,) = [d for d in drafts if any(line.program_id == program_id for line in d.lines)]
    lines = {line.category: line for line in draft.lines if line.program_id == program_id}
    assert draft.currency == "IDR"
    assert (lines["issued"].points, lines["issued"].count, lines["issued"].amount_minor) == (45, 2, 50)
    assert (lines["opening"].amount_minor, lines["closing"].points, lines["closing"].amount_minor) == (0, 45, 450)
