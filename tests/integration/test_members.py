"""Enrolment and lookup by any identifier."""
from __future__ import annotations

import secrets

from tests.conftest import assert_problem


def test_enrol_and_look_up_by_each_identifier(partner):
    ids = {"external_id": f"ext-{secrets.token_hex(4)}", "card_number": "6001" + str(secrets.randbelow(10**12)).zfill(12),
           "phone": "+62812" + str(secrets.randbelow(10**7)).zfill(7), "email": f"Ani.{secrets.token_hex(3)}@Example.com"}
    member = partner.enrol(**ids)
    for kind, value in ids.items():
        found = partner.api.get("/v1/members", **{kind: value}).json()["items"]
        assert [m["id"] for m in found] == [member], kind
    (membership,) = partner.api.get(f"/v1/members/{member}").json()["memberships"]
    assert membership["identifiers"]["email"] == ids["email"].lower()
    assert membership["program"] == partner.program


def test_lookup_needs_exactly_one_identifier(partner):
    assert partner.api.get("/v1/members").status_code == 422
    both = partner.api.get("/v1/members", external_id="a", email="a@b.co")
    assert_problem(both, 422, "invalid-lookup")
    assert partner.api.get("/v1/members", nickname="x").status_code == 400


def test_an_identifier_belongs_to_one_member_per_program(partner):
    partner.enrol(external_id="dup-1")
    taken = partner.api.post("/v1/members", {"program": partner.program, "external_id": "dup-1"})
    assert_problem(taken, 409, "identifier-taken")


def test_one_member_holds_memberships_in_several_programs(partner, ops):
    member = partner.enrol()
    second = "G" + secrets.token_hex(4).upper()
    assert ops.post("/v1/programs", {"partner": partner.code, "code": second, "name": "Second",
                                     "point_value": "1", "earn_rule": {"currency": "IDR", "points_per_unit": "0.01"}}).status_code == 201
    enrolled = partner.api.post("/v1/members", {"program": second, "member_id": member, "card_number": "700000000001"})
    assert enrolled.status_code == 201
    assert sorted(m["program"] for m in enrolled.json()["memberships"]) == sorted([partner.program, second])
    again = partner.api.post("/v1/members", {"program": second, "member_id": member})
    assert_problem(again, 409, "already-enrolled")
    balances = partner.api.get(f"/v1/members/{member}/balances").json()["items"]
    assert len(balances) == 2


def test_enrol_with_idempotency_key_creates_one_member(partner):
    body = {"program": partner.program, "external_id": f"idem-{secrets.token_hex(4)}"}
    first = partner.api.post("/v1/members", body, key="enrol-1")
    second = partner.api.post("/v1/members", body, key="enrol-1")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second.headers["Idempotent-Replayed"] == "true"


def test_malformed_and_unknown_member_ids_are_404(partner):
    assert partner.api.get("/v1/members/not-a-uuid").status_code in (400, 404)
    assert partner.api.get("/v1/members/00000000-0000-0000-0000-000000000000").status_code == 404
