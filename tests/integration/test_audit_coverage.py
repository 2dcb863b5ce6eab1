"""Every privileged operation of the API leaves an audit entry (docs/audit.md).

Privileged: the operations whose security accepts ops:write, rewards:write or webhooks:write
(partners' configuration shares them with ops: transfer policies, rules and segments accept
members:write too), plus the reads listed in PRIVILEGED_READS. The guard below fails when the
spec gains one that is in neither CALLS nor EXEMPT, so a new privileged operation must be
audited (and tested here) or exempted with a reason."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.audit import trail
from hub.audit.models import AuditEntry
from hub.cli import main
from partners.tango import report as tango_report
from tests.conftest import Partner, unique_code
from tests.integration.engage_support import join
from tests.integration.settlement_support import SEEDED_PERIOD, seed_statement
from tests.integration.test_challenges import challenge_body
from tests.integration.test_member_transfers import give, set_policy
from tests.integration.test_webhooks import emit, register

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi" / "hub.yaml").read_text())
METHODS = ("get", "post", "put", "patch", "delete")
PRIVILEGED_SCOPES = {"ops:write", "rewards:write", "webhooks:write"}
# Reads that ops make on a member's behalf and that the trail records.
PRIVILEGED_READS = {"hub.api.privacy.export_member"}
# Privileged by scope, yet not an action the trail is for: each with the reason.
EXEMPT = {
    "hub.api.settlement.close": "audited (settlement.close), and tested so in test_settlement.py: closing a month "
                                "here would close the shared database's months under that module's feet",
    "hub.api.segments.refresh": "recomputes who is in a segment from its recorded definition (the beat job does "
                                "it every 15 minutes): it changes no setting",
}


def operations() -> dict[str, tuple[str, str, set[str]]]:
    """operationId -> (method, path, the scopes its security names)."""
    found = {}
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                scopes = {s for requirement in op.get("security", SPEC.get("security", []))
                          for names in requirement.values() for s in names}
                found[op["operationId"]] = (method.upper(), path, scopes)
    return found


def privileged() -> set[str]:
    return {op for op, (_, _, scopes) in operations().items() if scopes & PRIVILEGED_SCOPES} | PRIVILEGED_READS


class World:
    """Two partners, a member of both with points and a conversion, a transfer, published
    rules, a segment and a webhook endpoint with a delivery: what the operations act on."""

    def __init__(self, ops, http, db):
        self.ops, self.http, self.db = ops, http, db
        self.a, self.b = Partner(ops, http, point_value="10"), Partner(ops, http, point_value="4")
        self.member = self.a.enrol()
        join(db, self.b, uuid.UUID(self.member))
        self.a.buy(self.member, "5000000")
        assert self.put(ops, f"/v1/conversions/pairs/{self.a.program}/{self.b.program}",
                        {"open": True, "fee_bps": 0, "min_points": 100, "increment": 100}).status_code == 200
        quote = self.a.api.post("/v1/conversions/quotes", {"from": self.a.program, "to": self.b.program, "points": 100,
                                                            "member": {"member_id": self.member}}).json()
        self.conversion = self.a.api.post("/v1/conversions", {"quote": quote["quote"]}).json()["id"]
        assert set_policy(self.a.api, self.a.program, 1000, 5000).status_code == 200
        self.transfer = give(self.a.api, self.a.program, {"member_id": self.a.enrol()}, 10,
                             sender=self.member).json()["id"]
        assert self.put(self.a.api, f"/v1/programs/{self.a.program}/rules", {"document": {}}).status_code == 201
        self.segment = "BIG"
        assert self.put(self.a.api, f"/v1/segments/{self.segment}", {
            "name": "Big", "conditions": {"spend": {"days": 30, "currency": "IDR", "min": 1}}}).status_code == 201
        self.endpoint = register(self.a.api)["id"]
        self.statement, self.statement_line = seed_statement(db, self.a)
        self.run, self.exception = open_exception(ops)

    def put(self, api, path, body):
        return self.http.put(path, json=body, headers=api.headers)

    def delete(self, api, path):
        return self.http.delete(path, headers=api.headers)

    def delivery(self) -> str:
        """A delivery to a fresh endpoint of A's."""
        endpoint = register(self.a.api)["id"]
        event = emit(self.db, self.a)
        items = self.a.api.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").json()["items"]
        (delivery,) = [d for d in items if d["event_id"] == event]
        return delivery["id"]

    def path(self, template: str) -> str:
        """A path of the spec with A's objects in it."""
        params = {"code": self.segment if template.startswith("/segments") else self.a.program, "version": "1",
                  "member_id": self.member, "program": self.a.program, "from_program": self.a.program,
                  "to_program": self.b.program, "conversion_id": self.conversion, "transfer_id": self.transfer,
                  "endpoint_id": self.endpoint, "statement_id": self.statement,
                  "line_id": str(self.statement_line), "period": SEEDED_PERIOD, "run_id": self.run,
                  "exception_id": self.exception}
        return re.sub(r"{(\w+)}", lambda m: params[m.group(1)], template)


def tango_report_of_unknown_order() -> str:
    """A Tango orders report with one order the hub never placed (missing_in_hub)."""
    reference = f"rdm{uuid.uuid4().hex}"
    return "\r\n".join([",".join(tango_report.HEADER),
                         f"RA-1,{reference},2026-11-02 10:00:00,hub-sandbox,CARD-10,Card,10.00,USD,COMPLETE", ""])


def open_exception(api) -> tuple[str, str]:
    """A reconciliation run with one open exception: (run id, exception id)."""
    run = api.post("/v1/reconciliation/runs", {"provider": "tango", "csv": tango_report_of_unknown_order()}).json()
    (exception,) = api.get("/v1/reconciliation/exceptions", run_id=run["id"]).json()["items"]
    return run["id"], exception["id"]


@pytest.fixture(scope="module")
def world(ops, http, db) -> World:
    return World(ops, http, db)


# operationId -> (who calls: "ops" or "partner" (A's back end), the call, its status, the action recorded)
CALLS = {
    "hub.api.partners.create": ("ops", lambda w, api: api.post(
        "/v1/partners", {"code": unique_code("P"), "name": "Audited"}), 201, "partner.create"),
    "hub.api.programs.create": ("ops", lambda w, api: api.post("/v1/programs", {
        "partner": w.a.code, "code": unique_code("G"), "name": "Audited", "point_value": "1",
        "earn_rule": {"currency": "IDR", "points_per_unit": "0.001"}}), 201, "program.create"),
    "hub.api.clients.create": ("ops", lambda w, api: api.post(
        "/v1/clients", {"name": "audited", "role": "ops_analyst"}), 201, "client.create"),
    "hub.api.member_transfers.set_policy": ("partner", lambda w, api: set_policy(
        api, w.a.program, 100, 1000), 200, "transfer_policy.set"),
    "hub.api.rules.publish": ("partner", lambda w, api: w.put(
        api, f"/v1/programs/{w.a.program}/rules", {"document": {}}), 201, "rules.publish"),
    "hub.api.rules.surprise": ("ops", lambda w, api: api.post(f"/v1/programs/{w.a.program}/surprises", {
        "member": {"member_id": w.member}, "points": 5, "reason": "sorry", "surprise_id": uuid.uuid4().hex}),
        201, "surprise.grant"),
    "hub.api.challenges.create": ("ops", lambda w, api: api.post(
        "/v1/challenges", challenge_body([w.a.program], w.a.program)), 201, "challenge.create"),
    "hub.api.segments.put": ("ops", lambda w, api: w.put(api, f"/v1/segments/{unique_code('S')}?partner={w.a.code}", {
        "name": "Any", "conditions": {"spend": {"days": 7, "currency": "IDR", "min": 1}}}), 201, "segment.put"),
    "hub.api.rewards.create": ("partner", lambda w, api: api.post("/v1/rewards", {
        "code": unique_code("R"), "kind": "free_product", "name": "Latte", "program": w.a.program, "points": 50}),
        201, "reward.create"),
    "hub.api.conversions.set_rate": ("ops", lambda w, api: api.post(
        "/v1/conversions/rates", {"program": w.b.program, "point_value": "4"}), 201, "rate.set"),
    "hub.api.conversions.set_pair": ("ops", lambda w, api: w.put(
        api, f"/v1/conversions/pairs/{w.b.program}/{w.a.program}",
        {"open": False, "fee_bps": 0, "min_points": 1, "increment": 1}), 200, "pair.set"),
    "hub.api.webhooks.create_endpoint": ("partner", lambda w, api: api.post(
        "/v1/webhook-endpoints", {"url": "https://partner.example/audited"}), 201, "webhook_endpoint.create"),
    "hub.api.webhooks.rotate_secret": ("partner", lambda w, api: api.post(
        f"/v1/webhook-endpoints/{register(w.a.api)['id']}/rotate-secret"), 200, "webhook_endpoint.rotate_secret"),
    "hub.api.webhooks.delete_endpoint": ("ops", lambda w, api: w.delete(
        api, f"/v1/webhook-endpoints/{register(w.a.api)['id']}"), 200, "webhook_endpoint.disable"),
    "hub.api.webhooks.replay_delivery": ("partner", lambda w, api: api.post(
        f"/v1/webhook-deliveries/{w.delivery()}/replay"), 202, "webhook_delivery.replay"),
    "hub.api.reconciliation.import_report": ("ops", lambda w, api: api.post(
        "/v1/reconciliation/runs", {"provider": "tango", "csv": tango_report_of_unknown_order()}),
        201, "reconciliation.import"),
    "hub.api.reconciliation.resolve": ("ops", lambda w, api: api.post(
        f"/v1/reconciliation/exceptions/{w.exception}/resolve",
        {"resolution": "written_off", "reason": "not ours"}), 200, "reconciliation.resolve"),
    "hub.api.settlement.set_price": ("ops", lambda w, api: w.put(api, f"/v1/settlement/prices/{w.a.program}", {
        "effective_from": "2099-01-01T00:00:00Z", "currency": "IDR", "per_point_minor": "10",
        "issuance_fee_bps": 150}), 200, "settlement.price.set"),
    "hub.api.privacy.export_member": ("ops", lambda w, api: api.get(
        f"/v1/members/{w.member}/export"), 200, "member.export"),
}


def test_every_privileged_operation_is_audited_or_exempt():
    assert privileged() == set(CALLS) | set(EXEMPT)
    assert not set(CALLS) & set(EXEMPT)


def last_seq(db) -> int:
    with db.read() as s:
        return s.scalar(select(func.coalesce(func.max(AuditEntry.seq), 0)))


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_a_privileged_call_leaves_one_entry_naming_its_caller(world, db, ops, operation):
    who, call, status, action = CALLS[operation]
    api = ops if who == "ops" else world.a.api
    before = last_seq(db)
    response = call(world, api)
    assert response.status_code == status, response.text
    with db.read() as s:
        new = s.scalars(select(AuditEntry).where(AuditEntry.seq > before, AuditEntry.action == action)).all()
        assert len(new) == 1, [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.seq > before))]
        assert new[0].actor.startswith("client:cli_")
        assert trail.verify(s).ok


def test_no_secret_reaches_the_trail(world, db):
    created = world.ops.post("/v1/clients", {"name": "secretive", "partner": world.a.code, "role": "partner_admin"})
    endpoint = world.a.api.post("/v1/webhook-endpoints", {"url": "https://partner.example/secretive"}).json()
    rotated = world.a.api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret").json()
    secrets = [created.json()["client_secret"], endpoint["secret"], rotated["secret"]]
    with db.read() as s:
        text = " ".join(trail.canonical(e).decode() for e in s.scalars(select(AuditEntry)))
    assert all(secret and secret not in text for secret in secrets)


def test_ops_page_through_the_trail_newest_first_with_filters(world, ops):
    world.a.api.post("/v1/webhook-endpoints", {"url": "https://partner.example/paged"})
    ops.post("/v1/conversions/rates", {"program": world.a.program, "point_value": "10"})
    latest = ops.get("/v1/audit/entries", limit=1).json()
    assert [e["action"] for e in latest["items"]] == ["rate.set"] and latest["next_cursor"]
    older = ops.get("/v1/audit/entries", limit=1, cursor=latest["next_cursor"]).json()["items"]
    assert older[0]["seq"] == latest["items"][0]["seq"] - 1
    mine = ops.get("/v1/audit/entries", target=f"program:{world.a.program}", action="rate.set").json()["items"]
    assert mine and all(e["target"] == f"program:{world.a.program}" for e in mine)
    assert mine[0]["before"] == {"point_value": "10"} and mine[0]["after"] == {"point_value": "10"}
    assert world.a.api.get("/v1/audit/entries").status_code == 403


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


# The command line's privileged commands: its arguments (from the world), and the action recorded.
COMMANDS = [
    (lambda w: ["partners", "create", "--code", unique_code("P"), "--name", "From the shell"], "partner.create"),
    (lambda w: ["programs", "create", "--partner", w.a.code, "--code", unique_code("G"), "--name", "Shell",
                "--point-value", "1", "--currency", "IDR", "--points-per-unit", "0.001"], "program.create"),
    (lambda w: ["programs", "transfer-policy", "--code", w.a.program, "--max-points", "50"], "transfer_policy.set"),
    (lambda w: ["rates", "set", w.b.program, "4"], "rate.set"),
    (lambda w: ["rates", "pair", w.a.program, w.b.program, "--minimum", "100", "--increment", "100"], "pair.set"),
    (lambda w: ["keys", "rotate"], "signing_key.rotate"),
    (lambda w: ["privacy", "export", w.member, "--out", str(w.tmp / "export.zip")], "member.export"),
    (lambda w: ["privacy", "erase", w.a.enrol(), "--yes"], "member.erase"),
]


@pytest.mark.parametrize("command, action", COMMANDS, ids=[action for _, action in COMMANDS])
def test_the_command_line_records_as_cli(world, db, run, tmp_path, command, action):
    world.tmp = tmp_path
    before = last_seq(db)
    result = run(*command(world))
    assert result.exit_code == 0, result.output
    with db.read() as s:
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.seq > before, AuditEntry.action == action)).all()
    assert entry.actor == "cli"
