"""Conversions into and out of a partner-hosted program: the saga, with a scripted connector.

The saga runs in-process here (`Saga.run`, one attempt per call), so every step of the state
machine is visible; tests/e2e/test_conversion_saga_stack.py drives the same code through a
real Celery worker, the dispatcher and the LCP sandbox over HTTP.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import socket
import threading
import time
import uuid
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import ledger, tasks
from hub.api import runtime
from hub.cli import main
from hub.errors import Invalid
from hub.exchange import conversions, saga
from hub.exchange.hosted import MemberCheck, RemoteResult, RemoteStatus, factories
from hub.exchange.models import Conversion
from hub.ledger.models import Transfer
from hub.ledger.verify import verify
from hub.notify.outbox import OutboxMessage
from hub.privacy import erasure
from hub.programs.models import Membership, Program
from hub.notify.policy import RelayPolicy
from tests.conftest import Partner, assert_problem, unique_code
from tests.integration.test_conversions import join

POLICY = RelayPolicy(lease=timedelta(seconds=30), backoff_base=0.01, backoff_cap=0.02, max_attempts=4,
                     breaker_failures=100, breaker_reset=60)
S = RemoteStatus


class Scripted:
    """A hosted program's connector answering from scripts, recording every call."""

    def __init__(self, name: str):
        self.name = name
        self.send_script: list[RemoteResult] = []      # answers to debit and credit, in order
        self.status_script: list[RemoteResult] = []
        self.reversal_script: list[RemoteResult] = []
        self.calls: list[tuple] = []
        self.balance = 1_000_000

    def validate(self, member_id):
        self.calls.append(("validate", member_id))
        return MemberCheck(True, self.balance)

    def debit(self, member_id, points, reference):
        self.calls.append(("debit", member_id, points, reference))
        return self.send_script.pop(0)

    def credit(self, member_id, points, reference):
        self.calls.append(("credit", member_id, points, reference))
        return self.send_script.pop(0)

    def status(self, reference):
        self.calls.append(("status", reference))
        return self.status_script.pop(0)

    def reversal(self, transaction_id, points, reference):
        self.calls.append(("reversal", transaction_id, points, reference))
        return self.reversal_script.pop(0)

    def ops(self) -> list[str]:
        return [c[0] for c in self.calls if c[0] != "validate"]


@dataclasses.dataclass
class Coalition:
    shop: Partner     # a hub program: a point is worth 10 units
    airline: Partner  # hosted by the scripted connector: a mile is worth 5 units
    member: str
    remote_member: str
    fake: Scripted

    def convert(self, into_airline: bool, points: int = 1000) -> dict:
        """Quote and execute, by the partner whose program pays (202: pending)."""
        payer, source, target = ((self.shop, self.shop.program, self.airline.program) if into_airline
                                 else (self.airline, self.airline.program, self.shop.program))
        q = payer.api.post("/v1/conversions/quotes",
                           {"from": source, "to": target, "points": points, "member": {"member_id": self.member}})
        assert q.status_code == 201, q.text
        done = payer.api.post("/v1/conversions", {"quote": q.json()["quote"]}, key=uuid.uuid4().hex)
        assert done.status_code == 202, done.text
        assert done.json()["state"] == "pending"
        return done.json()

    def state(self, conversion: dict) -> dict:
        got = self.shop.api.get(f"/v1/conversions/{conversion['id']}")
        assert got.status_code == 200, got.text
        return got.json()


@pytest.fixture
def fake():
    connector = Scripted(f"fake{uuid.uuid4().hex[:8]}")
    runtime.current().hosted[connector.name] = connector
    yield connector
    runtime.current().hosted.pop(connector.name, None)


@pytest.fixture
def coalition(ops, make_partner, db, fake) -> Coalition:
    """A member with 5,000 shop points and an airline membership (their number at the
    airline: remote_member), and both directions of the pair open without a fee."""
    shop = make_partner(point_value="10")
    airline = make_partner(point_value="5", hosted_by=fake.name)
    member = shop.enrol()
    remote_member = f"FF{secrets.token_hex(4).upper()}"
    join(db, airline.program, member, remote_member)
    shop.buy(member, "5000000")
    for source, target in ((shop.program, airline.program), (airline.program, shop.program)):
        response = ops.http.put(f"/v1/conversions/pairs/{source}/{target}", headers=ops.headers,
                                json={"open": True})
        assert response.status_code == 200, response.text
    return Coalition(shop, airline, member, remote_member, fake)


def attempt(db, conversion: dict, policy: RelayPolicy = POLICY) -> str:
    return saga.Saga(db, runtime.current().hosted, policy).run(uuid.UUID(conversion["id"]))


def ref(conversion: dict) -> str:
    return f"cnv{uuid.UUID(conversion['id']).hex}"


def shop_account(db, c: Coalition) -> ledger.Balance:
    with db.read() as s:
        account = s.scalar(select(Membership.account_id).join(Program, Program.id == Membership.program_id)
                           .where(Membership.member_id == uuid.UUID(c.member), Program.code == c.shop.program))
        return ledger.balance(s, account)


def ledger_ok(db) -> None:
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations


def maybe_sent(db, conversion: dict) -> bool:
    with db.read() as s:
        return s.get(Conversion, uuid.UUID(conversion["id"])).remote_maybe_sent


def outbox_done(db, conversion: dict) -> bool:
    with db.read() as s:
        rows = s.scalars(select(OutboxMessage.done_at).where(OutboxMessage.key == conversion["id"])).all()
    return bool(rows) and all(rows)


# --- programs hosted by a partner -----------------------------------------------------------

def test_a_hosted_program_names_a_configured_connector(ops, fake):
    partner = unique_code("P")
    assert ops.post("/v1/partners", {"code": partner, "name": "Langit Air"}).status_code == 201
    body = {"partner": partner, "name": "Sky miles", "point_value": "5",
            "earn_rule": {"currency": "IDR", "points_per_unit": "0"}}
    unknown = ops.post("/v1/programs", {**body, "code": unique_code("H"), "hosted_by": "nosuch"})
    assert_problem(unknown, 422, "unknown-connector")
    assert_problem(ops.post("/v1/programs", {**body, "code": unique_code("H"), "hosted_by": "Bad Name"}),
                   400, "invalid-request")
    created = ops.post("/v1/programs", {**body, "code": unique_code("H"), "hosted_by": fake.name})
    assert created.status_code == 201, created.text
    assert created.json()["hosted_by"] == fake.name
    local = ops.post("/v1/programs", {**body, "code": unique_code("G")})
    assert local.status_code == 201 and local.json()["hosted_by"] is None


# --- both directions ------------------------------------------------------------------------

def test_into_a_hosted_program_reserves_then_posts_the_local_debit(coalition, db):
    c = coalition
    before = c.shop.balance(c.member)
    conversion = c.convert(into_airline=True)
    assert conversion["hosted_side"] == "to" and conversion["receive"] == 2000  # 1000 x 10 / 5
    held = c.shop.balance(c.member)
    assert held["posted"] == before["posted"] and held["available"] == before["available"] - 1000
    with db.read() as s:
        message = s.scalars(select(OutboxMessage).where(OutboxMessage.key == conversion["id"])).one()
        assert message.topic == conversions.REMOTE_TOPIC == "exchange.remote_leg"
        assert message.payload == {"conversion_id": conversion["id"]}

    c.fake.send_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-1")]
    assert attempt(db, conversion) == "completed"
    assert c.fake.calls == [("credit", c.remote_member, 2000, ref(conversion))]
    after = c.shop.balance(c.member)
    assert after["posted"] == before["posted"] - 1000 and after["available"] == after["posted"]
    got = c.state(conversion)
    assert got["state"] == "completed" and got["resolved_at"] and got["failure"] is None
    with db.read() as s:
        assert s.get(Conversion, uuid.UUID(conversion["id"])).remote_transaction_id == "LCP-1"
    assert outbox_done(db, conversion)
    # The member's history shows the local leg, once, posted.
    history = c.shop.api.get(f"/v1/members/{c.member}/history").json()["items"]
    legs = [m for m in history if m["ref_type"] == "conversion" and m["ref_id"] == conversion["id"]]
    assert [(m["points"], m["status"], m["code"]) for m in legs] == [(-1000, "posted", "conversion")]
    # Another delivery of the message changes nothing and calls nobody.
    assert attempt(db, conversion) == "done"
    assert len(c.fake.calls) == 1
    ledger_ok(db)


def test_out_of_a_hosted_program_debits_the_partner_then_posts_the_local_credit(coalition, db):
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline=False)
    assert conversion["hosted_side"] == "from" and conversion["receive"] == 500  # 1000 x 5 / 10
    assert c.fake.calls == [("validate", c.remote_member)]  # the quote asked the airline
    pending = shop_account(db, c)
    assert pending.credits_pending == before.credits_pending + 500 and pending.available == before.available
    history = c.shop.api.get(f"/v1/members/{c.member}/history").json()["items"]
    assert [(m["points"], m["status"]) for m in history if m["ref_id"] == conversion["id"]] == [(500, "pending")]

    c.fake.send_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-2")]
    assert attempt(db, conversion) == "completed"
    assert c.fake.ops() == ["debit"] and c.fake.calls[-1] == ("debit", c.remote_member, 1000, ref(conversion))
    after = shop_account(db, c)
    assert after.available == before.available + 500 and after.credits_pending == before.credits_pending
    history = c.shop.api.get(f"/v1/members/{c.member}/history").json()["items"]
    legs = [m for m in history if m["ref_type"] == "conversion" and m["ref_id"] == conversion["id"]]
    assert [(m["points"], m["status"]) for m in legs] == [(500, "posted")]
    ledger_ok(db)


@pytest.mark.parametrize("into_airline", [True, False], ids=["to", "from"])
def test_a_refused_remote_leg_compensates_the_local_one(coalition, db, into_airline):
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline)
    c.fake.send_script = [RemoteResult(S.FAILURE, detail="insufficient balance")]
    assert attempt(db, conversion) == "failed"
    assert shop_account(db, c) == before  # points back, or the pending credit gone
    got = c.state(conversion)
    assert got["state"] == "failed" and "insufficient balance" in got["failure"] and got["resolved_at"]
    history = c.shop.api.get(f"/v1/members/{c.member}/history").json()["items"]
    assert [m["status"] for m in history if m["ref_id"] == conversion["id"]] == ["voided"]
    assert outbox_done(db, conversion)
    ledger_ok(db)


# --- unknown outcomes are asked about, never re-sent blindly ---------------------------------

def test_an_unknown_outcome_is_asked_about_and_not_sent_again(coalition, db):
    c = coalition
    conversion = c.convert(into_airline=False)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="systemError")]
    c.fake.status_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-3")]
    assert attempt(db, conversion) == "pending"
    with db.read() as s:
        due = s.scalar(select(OutboxMessage.available_at).where(OutboxMessage.key == conversion["id"]))
        row = s.get(Conversion, uuid.UUID(conversion["id"]))
        assert row.lease_until is None and row.attempts == 1
    assert due is not None and not outbox_done(db, conversion)  # rescheduled after a backoff
    assert attempt(db, conversion) == "completed"
    assert c.fake.ops() == ["debit", "status"]  # one debit, ever
    assert c.fake.calls[-1] == ("status", ref(conversion))
    ledger_ok(db)


def test_not_found_after_an_unknown_outcome_sends_again_with_the_same_reference(coalition, db):
    c = coalition
    conversion = c.convert(into_airline=False)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="read timeout"), RemoteResult(S.SUCCESS)]
    c.fake.status_script = [RemoteResult(S.NOT_FOUND)]
    assert attempt(db, conversion) == "pending"
    assert attempt(db, conversion) == "completed"
    assert c.fake.ops() == ["debit", "status", "debit"]
    assert {call[-1] for call in c.fake.calls if call[0] != "validate"} == {ref(conversion)}
    ledger_ok(db)


def test_a_pending_answer_is_asked_again_until_it_settles(coalition, db):
    c = coalition
    conversion = c.convert(into_airline=True)
    c.fake.send_script = [RemoteResult(S.PENDING, transaction_id="LCP-4")]
    # More pending answers than the attempts allow: the partner holds the transaction, so
    # only the deadline ends the wait (a nightly batch settles hours later).
    c.fake.status_script = [RemoteResult(S.PENDING)] * 5 + [RemoteResult(S.SUCCESS, transaction_id="LCP-4")]
    states = [attempt(db, conversion) for _ in range(7)]
    assert states == ["pending"] * 6 + ["completed"]
    assert c.fake.ops() == ["credit"] + ["status"] * 6
    ledger_ok(db)


def test_no_definitive_answer_ends_in_review_with_the_reservation_kept(coalition, db, settings, monkeypatch, ops):
    c = coalition
    before = c.shop.balance(c.member)
    conversion = c.convert(into_airline=True)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="systemError")]
    c.fake.status_script = [RemoteResult(S.UNKNOWN, detail="systemError")] * 3
    states = [attempt(db, conversion) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "needs_review"]
    assert c.fake.ops() == ["credit", "status", "status", "status"]
    held = c.shop.balance(c.member)
    assert held["available"] == before["available"] - 1000 and held["posted"] == before["posted"]
    got = c.state(conversion)
    assert got["state"] == "needs_review" and "no definitive answer" in got["failure"]
    assert outbox_done(db, conversion)
    ledger_ok(db)

    # Ops see it and hand it back; the saga asks the partner first.
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    cli = CliRunner()
    listed = cli.invoke(main, ["conversions", "review", "--json"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    (mine,) = [r for r in json.loads(listed.output) if r["id"] == conversion["id"]]
    assert mine["hosted_side"] == "to" and mine["attempts"] == 4
    assert conversion["id"][:8] in cli.invoke(main, ["conversions", "review"]).output
    in_review_for = c.state(conversion)["failure"]
    requeued = cli.invoke(main, ["conversions", "requeue", conversion["id"], "--reason", "LCP asks to retry"],
                          catch_exceptions=False)
    assert requeued.exit_code == 0 and "requeued" in requeued.output
    assert review_notes_of(ops, conversion) == [("requeue", "cli", "LCP asks to retry")]
    (note,) = ops.get(f"/v1/conversions/{conversion['id']}").json()["review_notes"]
    assert note["in_review_for"] == in_review_for  # what its failure, now cleared, said
    again = cli.invoke(main, ["conversions", "requeue", conversion["id"]])
    assert again.exit_code == 1 and "does not need review" in again.output
    assert cli.invoke(main, ["conversions", "requeue", "not-an-id"]).exit_code == 2
    assert not outbox_done(db, conversion)  # a new message for the saga

    c.fake.status_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-5")]
    assert attempt(db, conversion) == "completed"
    assert c.fake.ops()[-1] == "status"  # looked up, not sent again
    assert c.shop.balance(c.member)["posted"] == before["posted"] - 1000
    ledger_ok(db)


def test_a_leg_never_received_is_sent_again_directly_and_compensated_when_giving_up(coalition, db):
    """RETRY to every send, from the first: nothing ever reached the partner, so each later
    attempt sends at once (no status() first) and giving up compensates the local leg."""
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline=False)
    c.fake.send_script = [RemoteResult(S.RETRY, detail="429 Too Many Requests", retry_after=0.01)] * 4
    states = [attempt(db, conversion) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "failed"]
    assert c.fake.ops() == ["debit"] * 4
    assert {call[-1] for call in c.fake.calls if call[0] == "debit"} == {ref(conversion)}
    assert shop_account(db, c) == before
    got = c.state(conversion)
    assert got["state"] == "failed" and got["failure"].startswith("gave up")
    assert not maybe_sent(db, conversion)
    ledger_ok(db)


@contextlib.contextmanager
def partner_down(c: Coalition):
    """The real LCP connector, pointed at a port where nothing listens: every connection is
    refused (a send answers RETRY, a lookup UNKNOWN: a question that did not get through)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hosted = runtime.current().hosted
    hosted[c.fake.name] = factories()["lcp"]({"base_url": f"http://127.0.0.1:{port}/lcp"})
    try:
        yield
    finally:
        hosted[c.fake.name] = c.fake


@pytest.mark.parametrize("into_airline", [True, False], ids=["to", "from"])
def test_a_partner_down_for_every_attempt_ends_failed_with_the_points_back(coalition, db, into_airline):
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline)  # the quote asked the scripted fake
    with partner_down(c):
        states = [attempt(db, conversion) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "failed"]
    assert shop_account(db, c) == before
    got = c.state(conversion)
    assert got["state"] == "failed" and got["failure"].startswith("gave up: retry: not sent")
    assert not maybe_sent(db, conversion)
    history = c.shop.api.get(f"/v1/members/{c.member}/history").json()["items"]
    assert [m["status"] for m in history if m["ref_id"] == conversion["id"]] == ["voided"]
    assert outbox_done(db, conversion)
    ledger_ok(db)


def test_a_partner_down_until_the_deadline_ends_failed(coalition, db, short_hold):
    """The deadline ends the window too (short_hold: half a second), the attempts unspent."""
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline=False)
    with partner_down(c):
        assert attempt(db, conversion) == "pending"
        time.sleep(0.6)
        assert attempt(db, conversion) == "failed"
    assert c.state(conversion)["failure"].startswith("gave up: retry: not sent")
    assert shop_account(db, c) == before
    ledger_ok(db)


def test_a_send_maybe_applied_is_never_compensated_for_a_later_not_found_and_retry(coalition, db):
    """The first debit timed out (it may still land at the partner); the partner then had no
    record of it, and every send again was refused with a 429. The 429s prove nothing about
    the first debit: the conversion waits for review, its reservation kept."""
    c = coalition
    before = c.shop.balance(c.member)
    conversion = c.convert(into_airline=True)
    c.fake.send_script = ([RemoteResult(S.UNKNOWN, detail="no answer in time: read timeout")]
                          + [RemoteResult(S.RETRY, detail="429", retry_after=0.01)] * 3)
    c.fake.status_script = [RemoteResult(S.NOT_FOUND)] * 3
    states = [attempt(db, conversion) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "needs_review"]
    assert c.fake.ops() == ["credit"] + ["status", "credit"] * 3
    assert maybe_sent(db, conversion)
    got = c.state(conversion)
    assert got["state"] == "needs_review" and "no definitive answer after 4 attempts: retry" in got["failure"]
    held = c.shop.balance(c.member)
    assert held["available"] == before["available"] - 1000 and held["posted"] == before["posted"]
    ledger_ok(db)


def test_a_retry_after_a_maybe_applied_leg_is_not_compensated(coalition, db):
    """status() should answer UNKNOWN when its question does not get through (hosted.py); a
    connector answering RETRY there anyway proves nothing either: never compensated for it."""
    c = coalition
    conversion = c.convert(into_airline=False)
    c.fake.send_script = [RemoteResult(S.UNKNOWN)]
    c.fake.status_script = [RemoteResult(S.RETRY, detail="429")] * 3
    assert [attempt(db, conversion) for _ in range(4)][-1] == "needs_review"
    assert c.fake.ops() == ["debit", "status", "status", "status"]


# --- ops settle what needs review ------------------------------------------------------------

@pytest.fixture
def cli(settings, monkeypatch) -> CliRunner:
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    return CliRunner()


def into_review(db, c: Coalition, into_airline: bool) -> dict:
    """A conversion whose partner never gave a definitive answer: in review after 4 attempts."""
    conversion = c.convert(into_airline)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="systemError")]
    c.fake.status_script = [RemoteResult(S.UNKNOWN, detail="systemError")] * 3
    assert [attempt(db, conversion) for _ in range(4)][-1] == "needs_review"
    return conversion


def review_notes_of(ops, conversion: dict) -> list[tuple[str, str, str | None]]:
    """(action, by, reason) of the notes ops read with the conversion (GET, ops token)."""
    got = ops.get(f"/v1/conversions/{conversion['id']}")
    assert got.status_code == 200, got.text
    return [(n["action"], n["by"], n["reason"]) for n in got.json()["review_notes"]]


def resolved_by(db, c: Coalition, conversion: dict) -> list[tuple[str, str]]:
    """(caused_by, amount) of the ledger transfers that resolved the local leg."""
    with db.read() as s:
        row = s.get(Conversion, uuid.UUID(conversion["id"]))
        leg = row.credit_transfer_id if row.hosted_side == "from" else row.debit_transfer_id
        return [(t.caused_by, t.amount) for t in s.scalars(select(Transfer).where(Transfer.pending_id == leg))]


@pytest.mark.parametrize("into_airline", [True, False], ids=["to", "from"])
def test_ops_resolve_a_conversion_the_partner_applied(coalition, db, cli, ops, into_airline):
    c = coalition
    before = shop_account(db, c)
    conversion = into_review(db, c, into_airline)
    done = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--applied",
                             "--reason", "LCP support: posted as LCP-77"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "completed" in done.output
    got = c.state(conversion)
    assert got["state"] == "completed" and got["resolved_at"]
    assert got["failure"] is None  # who resolved it and why are ops' own (a review note)
    assert review_notes_of(ops, conversion) == [("applied", "cli", "LCP support: posted as LCP-77")]
    after = shop_account(db, c)
    if into_airline:
        assert after.debits_posted == before.debits_posted + 1000 and after.debits_pending == before.debits_pending
    else:
        assert after.credits_posted == before.credits_posted + 500 and after.credits_pending == before.credits_pending
    assert resolved_by(db, c, conversion) == [("cli", 1000 if into_airline else 500)]
    assert c.fake.ops()[-1] == "status"  # nothing asked of the partner by the resolution
    # Settled: neither a second resolution nor a requeue.
    again = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--not-applied", "--reason", "again"])
    assert again.exit_code == 1 and "does not need review" in again.output
    assert cli.invoke(main, ["conversions", "requeue", conversion["id"]]).exit_code == 1
    assert c.state(conversion)["state"] == "completed"
    ledger_ok(db)


@pytest.mark.parametrize("into_airline", [True, False], ids=["to", "from"])
def test_ops_resolve_a_conversion_the_partner_did_not_apply(coalition, db, cli, ops, into_airline):
    c = coalition
    before = shop_account(db, c)
    conversion = into_review(db, c, into_airline)
    done = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--not-applied",
                             "--reason", "no such posting at LCP"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "failed" in done.output
    got = c.state(conversion)
    assert got["state"] == "failed" and got["resolved_at"]
    assert got["failure"] == saga.NOT_APPLIED_AFTER_REVIEW
    assert review_notes_of(ops, conversion) == [("not_applied", "cli", "no such posting at LCP")]
    assert shop_account(db, c) == before  # the points back, or the pending credit gone
    assert resolved_by(db, c, conversion) == [("cli", 1000 if into_airline else 500)]
    history = c.shop.api.get(f"/v1/members/{c.member}/history").json()["items"]
    assert [m["status"] for m in history if m["ref_id"] == conversion["id"]] == ["voided"]
    assert cli.invoke(main, ["conversions", "resolve", conversion["id"], "--applied", "--reason", "x"]).exit_code == 1
    ledger_ok(db)


def test_resolve_refuses_what_is_not_in_review_and_needs_a_verdict_and_a_reason(coalition, db, cli, ops):
    c = coalition
    pending = c.convert(into_airline=True)
    refused = cli.invoke(main, ["conversions", "resolve", pending["id"], "--applied", "--reason", "LCP says so"])
    assert refused.exit_code == 1 and "does not need review" in refused.output
    assert c.state(pending)["state"] == "pending"
    conversion = into_review(db, c, into_airline=True)
    no_verdict = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--reason", "LCP says so"])
    assert no_verdict.exit_code == 2 and "--applied or --not-applied" in no_verdict.output
    assert cli.invoke(main, ["conversions", "resolve", "not-an-id", "--applied"]).exit_code == 2
    no_reason = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--not-applied"])
    assert no_reason.exit_code == 2 and "Missing option '--reason'" in no_reason.output
    blank = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--not-applied", "--reason", "  "])
    assert blank.exit_code == 1 and "say why" in blank.output
    with pytest.raises(Invalid) as refusal:
        db.write(lambda s: saga.resolve(s, uuid.UUID(conversion["id"]), applied=True, reason="", by="ops:test"))
    assert (refusal.value.status, refusal.value.slug) == (422, "reason-required")
    too_long = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--applied", "--reason", "x" * 2001])
    assert too_long.exit_code == 1 and "at most 2000 characters" in too_long.output
    assert c.state(conversion)["state"] == "needs_review" and review_notes_of(ops, conversion) == []


def test_erasing_the_member_blanks_the_reason_of_ops_review_notes(coalition, db, cli, ops):
    c = coalition
    conversion = into_review(db, c, into_airline=True)
    done = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--applied",
                             "--reason", "LCP: the member called, posted"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    db.write(lambda s: erasure.erase(s, uuid.UUID(c.member), "ops:test"))
    assert review_notes_of(ops, conversion) == [("applied", "cli", None)]


def test_resolve_applied_is_refused_once_the_reservation_expired(coalition, db, cli, short_hold):
    """The hub can no longer post the local leg: ops requeue it, and the saga reverses the
    partner's leg (or, if the partner never applied it, ops resolve it as not applied)."""
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline=False)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="systemError")]
    assert attempt(db, conversion) == "pending"
    time.sleep(1.1)  # past the deadline and the reservation
    c.fake.status_script = [RemoteResult(S.UNKNOWN, detail="systemError")]
    assert attempt(db, conversion) == "needs_review"
    refused = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--applied", "--reason", "LCP: posted"])
    assert refused.exit_code == 1 and "requeue it" in refused.output
    assert c.state(conversion)["state"] == "needs_review"
    done = cli.invoke(main, ["conversions", "resolve", conversion["id"], "--not-applied", "--reason", "not at LCP"],
                      catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert c.state(conversion)["state"] == "failed" and shop_account(db, c) == before
    ledger_ok(db)


def test_ops_requeue_several_conversions_or_all_in_review(coalition, db, cli):
    c = coalition
    first, second, third = (into_review(db, c, into_airline=True) for _ in range(3))
    pending = c.convert(into_airline=True)

    assert cli.invoke(main, ["conversions", "requeue"]).exit_code == 2  # nothing named
    assert cli.invoke(main, ["conversions", "requeue", "--all", first["id"]]).exit_code == 2
    assert cli.invoke(main, ["conversions", "requeue", first["id"], "not-an-id"]).exit_code == 2
    assert c.state(first)["state"] == "needs_review"  # a bad id requeues none

    done = cli.invoke(main, ["conversions", "requeue", first["id"], second["id"]], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert f"requeued {first['id']}" in done.output and f"requeued {second['id']}" in done.output
    with db.read() as s:
        for x in (first, second):
            row = s.get(Conversion, uuid.UUID(x["id"]))
            assert (row.state, row.attempts, row.remote_maybe_sent, row.failure) == ("pending", 0, True, None)
    assert not outbox_done(db, first) and not outbox_done(db, second)
    assert c.state(third)["state"] == "needs_review"

    # One not in review (pending): named, exit code 1; the others are requeued all the same.
    mixed = cli.invoke(main, ["conversions", "requeue", pending["id"], third["id"]])
    assert mixed.exit_code == 1 and f"conversion {pending['id']} does not need review" in mixed.output
    assert f"requeued {third['id']}" in mixed.output
    assert c.state(third)["state"] == "pending"

    # Each requeued one asks the partner first (its leg is maybe sent), with fresh attempts.
    c.fake.status_script = [RemoteResult(S.SUCCESS, transaction_id=f"LCP-{n}") for n in range(3)]
    assert [attempt(db, x) for x in (first, second, third)] == ["completed"] * 3
    assert c.fake.ops()[-3:] == ["status"] * 3

    fourth = into_review(db, c, into_airline=True)
    everything = cli.invoke(main, ["conversions", "requeue", "--all"], catch_exceptions=False)
    assert everything.exit_code == 0, everything.output
    assert f"requeued {fourth['id']}" in everything.output
    assert c.state(fourth)["state"] == "pending"
    listed = cli.invoke(main, ["conversions", "review", "--json"], catch_exceptions=False)
    assert json.loads(listed.output) == []
    ledger_ok(db)


# --- concurrency, the breaker, a very late success -----------------------------------------

def test_two_deliveries_at_once_call_the_partner_once(coalition, db):
    c = coalition
    conversion = c.convert(into_airline=True)
    entered, release = threading.Event(), threading.Event()

    def slow_credit(member_id, points, reference):
        c.fake.calls.append(("credit", member_id, points, reference))
        entered.set()
        assert release.wait(10)
        return RemoteResult(S.SUCCESS)

    c.fake.credit = slow_credit
    first: list[str] = []
    worker = threading.Thread(target=lambda: first.append(attempt(db, conversion)))
    worker.start()
    assert entered.wait(10)
    assert attempt(db, conversion) == "busy"  # the lease is held: no call
    release.set()
    worker.join(10)
    assert first == ["completed"]
    assert c.fake.ops() == ["credit"]
    assert attempt(db, conversion) == "done"
    ledger_ok(db)


def test_a_batch_attempts_each_conversion_once(coalition, db):
    c = coalition
    batch = [c.convert(into_airline=True, points=1000) for _ in range(3)]
    c.fake.send_script = [RemoteResult(S.SUCCESS)] * 3
    runner = saga.Saga(db, runtime.current().hosted, POLICY)
    ids = [uuid.UUID(x["id"]) for x in batch]
    assert runner.run_many(ids) == ["completed"] * 3
    assert sorted(call[-1] for call in c.fake.calls) == sorted(ref(x) for x in batch)
    assert runner.run_many(ids) == ["done"] * 3


def test_the_breaker_stops_calls_to_a_failing_partner(coalition, db):
    c = coalition
    runner = saga.Saga(db, runtime.current().hosted, dataclasses.replace(POLICY, breaker_failures=2))
    batch = [c.convert(into_airline=True) for _ in range(3)]
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="503")] * 2
    assert [runner.run(uuid.UUID(x["id"])) for x in batch] == ["pending"] * 3
    assert c.fake.ops() == ["credit", "credit"]  # the third found the breaker open


def lease_until(db, conversion: dict):
    with db.read() as s:
        return s.get(Conversion, uuid.UUID(conversion["id"])).lease_until


def test_an_attempt_renews_its_lease_before_each_call_so_no_other_delivery_calls(coalition, db):
    """A lookup that takes most of the lease: the send after it starts under a renewed lease,
    and a second delivery meanwhile, past the first lease's end, finds it held."""
    c = coalition
    policy = dataclasses.replace(POLICY, lease=timedelta(seconds=1))
    conversion = c.convert(into_airline=False)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="read timeout")]
    assert attempt(db, conversion, policy) == "pending"
    others: list[str] = []

    def slow_status(reference):
        c.fake.calls.append(("status", reference))
        time.sleep(0.8)  # four fifths of the lease
        return RemoteResult(S.NOT_FOUND)

    def debit(member_id, points, reference):
        c.fake.calls.append(("debit", member_id, points, reference))
        # Renewed: the lease the claim took has at most 0.2 s left.
        assert lease_until(db, conversion) > saga.utcnow() + timedelta(seconds=0.6)
        time.sleep(0.4)  # past the end of the lease the claim took
        others.append(attempt(db, conversion, policy))
        return RemoteResult(S.SUCCESS, transaction_id="LCP-9")

    c.fake.status, c.fake.debit = slow_status, debit
    assert attempt(db, conversion, policy) == "completed"
    assert others == ["busy"]
    assert c.fake.ops() == ["debit", "status", "debit"]
    ledger_ok(db)


def test_an_attempt_past_its_lease_makes_the_leg_maybe_sent_and_its_late_answer_is_fenced(coalition, db):
    """A first send that outlives its lease (a partner trickling its answer): the delivery that
    takes over cannot know whether it landed, so it asks status() first and can no longer
    compensate; the late RETRY of the first changes nothing."""
    c = coalition
    policy = dataclasses.replace(POLICY, lease=timedelta(seconds=0.3))
    before = shop_account(db, c)
    conversion = c.convert(into_airline=False)
    takeover: list[str] = []
    first = [True]

    def debit(member_id, points, reference):
        c.fake.calls.append(("debit", member_id, points, reference))
        if first.pop() if first else False:  # hangs past its lease, while another delivery runs
            time.sleep(0.4)
            takeover.append(attempt(db, conversion, policy))
            return RemoteResult(S.RETRY, detail="not sent: connection refused")
        return RemoteResult(S.RETRY, detail="429")

    c.fake.debit = debit
    c.fake.status_script = [RemoteResult(S.NOT_FOUND)] * 4
    assert attempt(db, conversion, policy) == "busy"  # its answer came after its lease was taken
    assert takeover == ["pending"]
    assert maybe_sent(db, conversion)
    assert c.fake.ops() == ["debit", "status", "debit"]
    with db.read() as s:
        assert s.get(Conversion, uuid.UUID(conversion["id"])).attempts == 2
    # Never compensated now: the first debit may still land.
    assert [attempt(db, conversion, policy) for _ in range(2)] == ["pending", "needs_review"]
    assert c.fake.ops()[3:] == ["status", "debit"] * 2
    held = shop_account(db, c)
    assert held.credits_pending == before.credits_pending + 500 and held.available == before.available
    ledger_ok(db)


def test_an_attempt_that_lost_its_lease_sends_nothing(coalition, db):
    """The lookup outlives the lease and another delivery takes the conversion meanwhile: the
    first attempt's renewal fails, so it does not send after its NOT_FOUND."""
    c = coalition
    policy = dataclasses.replace(POLICY, lease=timedelta(seconds=0.3))
    conversion = c.convert(into_airline=True)
    c.fake.send_script = [RemoteResult(S.UNKNOWN, detail="read timeout")]
    assert attempt(db, conversion, policy) == "pending"
    takeover: list[str] = []
    first = [True]

    def status(reference):
        c.fake.calls.append(("status", reference))
        if first.pop() if first else False:
            time.sleep(0.4)
            takeover.append(attempt(db, conversion, policy))
            return RemoteResult(S.NOT_FOUND)
        return RemoteResult(S.PENDING, transaction_id="LCP-10")

    c.fake.status = status
    assert attempt(db, conversion, policy) == "busy"
    assert takeover == ["pending"]
    assert c.fake.ops() == ["credit", "status", "status"]  # no second credit
    with db.read() as s:
        row = s.get(Conversion, uuid.UUID(conversion["id"]))
        assert (row.state, row.attempts, row.remote_transaction_id, row.lease_until) == ("pending", 3, "LCP-10", None)


def test_a_late_success_of_an_attempt_past_its_lease_is_recorded(coalition, db):
    """A SUCCESS is the partner's word whoever asked: the local leg is posted even though
    another delivery holds the lease by then; that delivery's own answer then changes nothing."""
    c = coalition
    policy = dataclasses.replace(POLICY, lease=timedelta(seconds=0.3))
    conversion = c.convert(into_airline=True)
    takeover: list = []

    def credit(member_id, points, reference):
        c.fake.calls.append(("credit", member_id, points, reference))
        time.sleep(0.4)
        # Another delivery claims the conversion, and is about to call the partner.
        claims = db.write(lambda s: saga._claim(s, [uuid.UUID(conversion["id"])], policy.lease))
        takeover.append(claims[uuid.UUID(conversion["id"])])
        return RemoteResult(S.SUCCESS, transaction_id="LCP-11")

    c.fake.credit = credit
    assert attempt(db, conversion, policy) == "completed"
    (claim,) = takeover
    assert claim.maybe_sent  # the takeover's claim marked it
    claim.leased_at -= 1  # its call comes a while after its claim: it renews its lease first
    assert saga.Saga(db, runtime.current().hosted, policy)._attempt(claim) == "busy"
    assert c.fake.ops() == ["credit"]  # its renewal failed (the conversion is settled): no call
    assert outbox_done(db, conversion)
    ledger_ok(db)


@pytest.fixture
def short_hold(monkeypatch):
    """Conversions reserve their local leg for one second (and give up after half of it)."""
    hub = runtime.current()
    monkeypatch.setattr(hub, "settings", dataclasses.replace(hub.settings, conversion_hold=1))


@pytest.mark.parametrize("into_airline", [True, False], ids=["to", "from"])
def test_a_success_after_the_reservation_expired_is_reversed_at_the_partner(coalition, db, short_hold,
                                                                              into_airline):
    c = coalition
    before = shop_account(db, c)
    conversion = c.convert(into_airline)
    time.sleep(1.1)  # the local reservation has expired
    c.fake.send_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-6")]
    c.fake.reversal_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-7")]
    assert attempt(db, conversion) == "failed"
    points = 1000 if not into_airline else 2000
    assert c.fake.calls[-1] == ("reversal", "LCP-6", points, ref(conversion) + "-rev")
    assert shop_account(db, c) == before
    got = c.state(conversion)
    assert got["state"] == "failed" and "reversed" in got["failure"]
    assert outbox_done(db, conversion)
    ledger_ok(db)


def test_an_unconfirmed_reversal_leaves_the_conversion_for_review(coalition, db, short_hold):
    c = coalition
    conversion = c.convert(into_airline=True)
    time.sleep(1.1)
    c.fake.send_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-8")]
    c.fake.reversal_script = [RemoteResult(S.UNKNOWN, detail="systemError")]
    assert attempt(db, conversion) == "needs_review"
    got = c.state(conversion)
    assert got["state"] == "needs_review" and "reversal answered unknown" in got["failure"]
    # A requeue asks again and reverses with the same reference (the partner applies it once).
    db.write(lambda s: saga.requeue(s, uuid.UUID(conversion["id"]), by="ops:test"))
    c.fake.status_script = [RemoteResult(S.SUCCESS, transaction_id="LCP-8")]
    c.fake.reversal_script = [RemoteResult(S.SUCCESS)]
    assert attempt(db, conversion) == "failed"
    reversals = [call for call in c.fake.calls if call[0] == "reversal"]
    assert len(reversals) == 2 and len({call[-1] for call in reversals}) == 1
    ledger_ok(db)


def test_the_worker_task_takes_the_remote_leg_topic():
    assert tasks.TOPICS[conversions.REMOTE_TOPIC] == tasks.relay_conversions.name == "hub.relay_conversions"
