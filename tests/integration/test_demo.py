"""The demo coalition `make run` seeds: idempotent, with each program's rules published once,
each program priced once and one ops console user; a demo member can convert into the
partner-hosted program (its remote leg is then relayed to the LCP sandbox by `hub up`)."""
from __future__ import annotations

import io
import json
import shutil
import uuid
from decimal import Decimal

import pyotp
import pytest
from rich.console import Console
from sqlalchemy import func, select

from hub import demo
from hub.audit.models import AuditEntry
from hub.exchange.models import Conversion
from hub.identity import ops_users
from hub.programs.models import Program
from hub.rules import document
from hub.rules.models import RuleVersion
from hub.settlement import prices
from tests.conftest import Api, token_for
from tests.integration.test_account_pages import Browser, flask_app  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    """Where the demo keeps its clients' secrets: one file for every test here, as the test
    database is seeded once and each later seed needs the first one's secrets."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "CREDENTIALS", tmp_path_factory.mktemp("demo") / "demo-credentials.json")
        yield


def test_seeded_demo_member_converts_into_the_hosted_airline(db, http, credentials):
    creds = demo.seed(db)
    assert {"KOPI", "LANGIT"} <= set(creds["partners"])
    assert demo.seed(db)["partners"] == creds["partners"]  # seeding again adds nothing

    kopi = creds["partners"]["KOPI"]
    shop = Api(http, token_for(http, kopi["client_id"], kopi["client_secret"]))
    pairs = {(p["from"], p["to"]) for p in shop.get("/v1/conversions/rates", program="SKY").json()["items"]}
    assert {("KOPI", "SKY"), ("SKY", "KOPI"), ("SKY", "BUKU"), ("MILES", "SKY")} <= pairs
    q = shop.post("/v1/conversions/quotes",
                  {"from": "KOPI", "to": "SKY", "points": 150, "member": {"external_id": "kopi-0001"}})
    assert q.status_code == 201, q.text
    done = shop.post("/v1/conversions", {"quote": q.json()["quote"]})
    assert done.status_code == 202, done.text
    with db.read() as s:
        conversion = s.get(Conversion, uuid.UUID(done.json()["id"]))
        assert (conversion.hosted_side, conversion.remote_member) == ("to", "SKY-0001")


# --- the demo programs' rules (partners/demo/rules/) ------------------------------------

EARNING_IN_THE_HUB = {"KOPI", "BUKU", "MILES"}


def published(db) -> dict[str, list[dict]]:
    """Program code -> its documents, oldest first."""
    with db.read() as s:
        rows = s.execute(select(Program.code, RuleVersion.document).join(Program, Program.id == RuleVersion.program_id)
                         .where(Program.code.in_(EARNING_IN_THE_HUB | {"SKY"})).order_by(RuleVersion.version))
        out: dict[str, list[dict]] = {}
        for code, doc in rows:
            out.setdefault(code, []).append(doc)
        return out


def test_the_demo_files_are_valid_rule_documents():
    files = {p.stem: json.loads(p.read_text()) for p in demo.RULES.glob("*.json")}
    assert set(files) == EARNING_IN_THE_HUB  # SKY's partner rates its own miles
    for code, doc in files.items():
        assert document.findings(doc) == [], code
        assert doc["earning"]["rules"], code


def test_seed_publishes_each_demo_programs_rules_once(db, credentials, tmp_path, monkeypatch):
    demo.seed(db)
    first = published(db)
    assert set(first) == EARNING_IN_THE_HUB
    for code in EARNING_IN_THE_HUB:
        assert first[code][-1] == json.loads((demo.RULES / f"{code}.json").read_text())

    demo.seed(db)
    assert published(db) == first  # unchanged files publish nothing

    edited = tmp_path / "rules"
    shutil.copytree(demo.RULES, edited)
    kopi = json.loads((edited / "KOPI.json").read_text())
    kopi["earning"]["rules"][2]["bonus"] = 10
    (edited / "KOPI.json").write_text(json.dumps(kopi))
    monkeypatch.setattr(demo, "RULES", edited)
    demo.seed(db)
    after = published(db)
    assert after["KOPI"] == [*first["KOPI"], kopi]
    assert {code: after[code] for code in ("BUKU", "MILES")} == {code: first[code] for code in ("BUKU", "MILES")}


# --- settlement prices and the ops console user --------------------------------------------

def seeded_state(db) -> dict:
    """What a re-seed must leave alone: each demo program's prices, the audit trail's length,
    the ops user."""
    programs = [prog for p in json.loads(demo.COALITION.read_text())["partners"] for prog in p["programs"]]
    with db.read() as s:
        return {
            "prices": {prog["code"]: [(p.currency, p.per_point_minor, p.issuance_fee_bps, p.created_by)
                                      for p in prices.prices(s, prog["code"])] for prog in programs},
            "audit_entries": s.scalar(select(func.count()).select_from(AuditEntry)),
            "ops_user": ops_users.find(s, demo.OPS_EMAIL).id,
        }


def test_seed_prices_every_program_once_audited_as_the_seeder(db, credentials):
    demo.seed(db)
    first = seeded_state(db)
    for prog in (prog for p in json.loads(demo.COALITION.read_text())["partners"] for prog in p["programs"]):
        price = prog["price"]
        assert first["prices"][prog["code"]] == [
            (price["currency"], Decimal(price["per_point"]), price["fee_bps"], demo.SEEDER)]
    with db.read() as s:
        audited = set(s.scalars(select(AuditEntry.target).where(AuditEntry.action == "settlement.price.set",
                                                                AuditEntry.actor == demo.SEEDER)))
    assert {f"program:{code}" for code in first["prices"]} <= audited

    demo.seed(db)
    assert seeded_state(db) == first  # no new price, no audit entry, the same ops user


def test_the_ops_user_logs_in_with_the_stored_password_and_secret(db, credentials, flask_app):
    creds = demo.seed(db)
    user = creds["ops_console"]
    assert demo.seed(db)["ops_console"] == user
    with db.read() as s:
        assert ops_users.find(s, demo.OPS_EMAIL).role == "ops_admin"
    assert pyotp.parse_uri(user["otpauth_uri"]).secret == user["totp_secret"]

    browser = Browser(flask_app)
    response = browser.submit("/ops/login", "/ops/login", email=user["email"], password=user["password"],
                              code=pyotp.TOTP(user["totp_secret"]).now())
    assert response.status_code == 302, response.get_data(as_text=True)
    assert browser.get("/ops/audit").status_code == 200  # an ops_admin's page


def test_the_quick_start_tells_how_to_log_in_to_the_ops_console(db, credentials, settings):
    creds = demo.seed(db)
    out = io.StringIO()
    demo.print_quickstart(Console(file=out, width=200), settings, creds)
    user = creds["ops_console"]
    code_now = "-c \"import pyotp; print(pyotp.TOTP('%s').now())\"" % user["totp_secret"]
    for shown in ("/ops/", user["email"], user["password"], code_now):
        assert shown in out.getvalue()
