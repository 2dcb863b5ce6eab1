"""The demo coalition `make run` seeds: idempotent, with each program's rules published once;
a demo member can convert into the partner-hosted program (its remote leg is then relayed to
the LCP sandbox by `hub up`)."""
from __future__ import annotations

import json
import shutil
import uuid

import pytest
from sqlalchemy import select

from hub import demo
from hub.exchange.models import Conversion
from hub.programs.models import Program
from hub.rules import document
from hub.rules.models import RuleVersion
from tests.conftest import Api, token_for


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
