"""The demo coalition `make run` seeds: idempotent, and a demo member can convert into the
partner-hosted program (its remote leg is then relayed to the LCP sandbox by `hub up`)."""
from __future__ import annotations

import uuid

from hub import demo
from hub.exchange.models import Conversion
from tests.conftest import Api, token_for


def test_seeded_demo_member_converts_into_the_hosted_airline(db, http, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "CREDENTIALS", tmp_path / "demo-credentials.json")
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
