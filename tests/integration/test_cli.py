"""The hub command: ops create partners, programs and clients; the ledger verifies."""
from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from hub.cli import main
from hub.programs.models import Membership
from tests.conftest import Api, token_for, unique_code


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def test_ops_set_up_a_partner_from_the_command_line(run, http):
    partner, program = unique_code("P"), unique_code("G")
    created = run("partners", "create", "--code", partner, "--name", "Warung", "--json")
    assert created.exit_code == 0 and json.loads(created.output)["code"] == partner
    result = run("programs", "create", "--partner", partner, "--code", program, "--name", "Warung Points",
                 "--point-value", "2.5", "--currency", "IDR", "--points-per-unit", "0.01", "--json")
    assert result.exit_code == 0, result.output
    client = json.loads(run("clients", "create", "--partner", partner, "--name", "pos", "--json").output)
    assert client["client_secret"] and client["scopes"]
    api = Api(http, token_for(http, client["client_id"], client["client_secret"]))
    (listed,) = api.get("/v1/programs").json()["items"]
    assert listed["point_value"] == "2.5" and listed["earn_rule"]["points_per_unit"] == "0.01"


def test_refusals_are_messages_not_tracebacks(run):
    code = unique_code("P")
    assert run("partners", "create", "--code", code, "--name", "A").exit_code == 0
    again = run("partners", "create", "--code", code, "--name", "A")
    assert again.exit_code == 1 and "already exists" in again.output
    missing = run("clients", "create", "--partner", "NOSUCH", "--name", "x")
    assert missing.exit_code == 1 and "no partner" in missing.output


def test_ledger_verify_passes_and_fails_on_tampering(run, partner, db):
    member = partner.enrol()
    partner.buy(member, "10000")
    ok = run("ledger", "verify")
    assert ok.exit_code == 0 and "ledger OK" in ok.output
    with db.read() as s:
        account = s.scalar(select(Membership.account_id).where(Membership.member_id == uuid.UUID(member)))
    nudge = "UPDATE ledger_accounts SET credits_posted = credits_posted + :d WHERE id = :id"
    db.write(lambda s: s.execute(text(nudge), {"d": 1, "id": account}))
    try:
        bad = run("ledger", "verify")
        assert bad.exit_code == 1 and f"account {account}" in bad.output
    finally:
        db.write(lambda s: s.execute(text(nudge), {"d": -1, "id": account}))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--point-value", "0"], "point_value"),
        (["--point-value", "NaN"], "point_value"),
        (["--points-per-unit", "-2"], "points per unit"),
        (["--points-per-unit", "Infinity"], "points per unit"),
        (["--code", "lower"], "is not a code"),
        (["--currency", "XYZ"], "ISO 4217"),
    ],
)
def test_programs_create_refuses_bad_rules(run, args, message):
    partner = unique_code("P")
    assert run("partners", "create", "--code", partner, "--name", "A").exit_code == 0
    values = {"--code": unique_code("G"), "--point-value": "1", "--points-per-unit": "1", "--currency": "IDR"}
    values.update(dict(zip(args[::2], args[1::2])))
    result = run("programs", "create", "--partner", partner, "--name", "n", *[x for kv in values.items() for x in kv])
    assert result.exit_code == 1 and message in result.output


def test_ops_set_rates_and_pairs_from_the_command_line(run, make_partner, monkeypatch):
    from hub import cli

    monkeypatch.setattr(cli.console, "width", 200)  # the table's columns, not cut to a narrow terminal
    a, b = make_partner(point_value="10"), make_partner(point_value="4")
    opened = run("rates", "pair", a.program, b.program, "--fee-bps", "100", "--minimum", "1000", "--increment", "100")
    assert opened.exit_code == 0, opened.output
    listed = run("rates", "list")
    assert listed.exit_code == 0 and a.program in listed.output and "100 -> 247" in listed.output
    moved = run("rates", "set", b.program, "5")
    assert moved.exit_code == 0, moved.output
    assert a.api.get("/v1/conversions/rates", program=a.program).json()["items"][0]["to_value"] == "5"
    closed = run("rates", "pair", a.program, b.program, "--closed")
    assert closed.exit_code == 0 and a.api.get("/v1/conversions/rates", program=a.program).json()["items"] == []
    refused = run("rates", "pair", a.program, a.program)
    assert refused.exit_code == 1 and "two different programs" in refused.output
    assert run("rates", "set", b.program, "0").exit_code == 1


def test_ops_open_and_close_member_transfers_from_the_command_line(run, partner):
    opened = run("programs", "transfer-policy", "--code", partner.program, "--max-points", "50", "--daily-limit",
                 "200", "--json")
    assert opened.exit_code == 0, opened.output
    assert json.loads(opened.output) == {"program": partner.program, "open": True, "max_points": 50,
                                         "daily_limit": 200}
    (program,) = partner.api.get("/v1/programs").json()["items"]
    assert program["transfer_policy"]["daily_limit"] == 200
    closed = run("programs", "transfer-policy", "--code", partner.program, "--json")
    assert json.loads(closed.output)["open"] is False
    wrong = run("programs", "transfer-policy", "--code", partner.program, "--max-points", "300", "--daily-limit", "200")
    assert wrong.exit_code == 1 and "daily_limit" in wrong.output
