"""Conversions between hub programs through the API: rates, pairs, quotes, execution."""
from __future__ import annotations

import secrets
import uuid

import pytest
from sqlalchemy import select

from hub import ledger
from hub.ledger.verify import verify
from hub.programs import service
from hub.programs.models import Membership, MembershipIdentifier, Program
from tests.conftest import assert_problem


def join(db, program_code: str, member_id: str, external_id: str | None = None) -> None:
    """Give an existing member a membership in another partner's program, as account
    linking does (partners cannot enrol each other's members)."""
    def write(s):
        program = s.scalar(select(Program).where(Program.code == program_code))
        account = ledger.open_account(s, program.id, service.MEMBER_ACCOUNT, cached=True, no_overdraft=True)
        membership = Membership(member_id=uuid.UUID(member_id), program_id=program.id, account_id=account)
        s.add(membership)
        s.flush()
        s.add(MembershipIdentifier(membership_id=membership.id, program_id=program.id, kind="external_id",
                                   value=external_id or f"x-{secrets.token_hex(6)}"))
    db.write(write)


@pytest.fixture
def pair(ops, make_partner, db):
    """Two programs (A worth 10 units a point, B worth 4), a member of both with 5,000 A
    points, and the pair A -> B open with a 1% fee, minimum 1,000 in steps of 100."""
    a, b = make_partner(point_value="10"), make_partner(point_value="4")
    member = a.enrol()
    join(db, b.program, member)
    a.buy(member, "5000000")  # 1 point per 1,000 IDR
    response = ops.http.put(f"/v1/conversions/pairs/{a.program}/{b.program}", headers=ops.headers,
                            json={"open": True, "fee_bps": 100, "min_points": 1000, "increment": 100})
    assert response.status_code == 200, response.text
    return a, b, member


def quote(a, b, member, points):
    return a.api.post("/v1/conversions/quotes",
                      {"from": a.program, "to": b.program, "points": points, "member": {"member_id": member}})


def test_convert_moves_both_legs_at_the_published_rate(pair, db):
    a, b, member = pair
    q = quote(a, b, member, 1000)
    assert q.status_code == 201, q.text
    body = q.json()
    # 1000 x 10 = 10,000 units, less 1% = 9,900 units, / 4 = 2,475 B points.
    assert (body["receive"], body["fee_units"]) == (2475, "100")
    done = a.api.post("/v1/conversions", {"quote": body["quote"]}, key="c-1")
    assert done.status_code == 201, done.text
    assert done.json()["state"] == "completed"
    assert a.balance(member)["available"] == 4000
    assert b.balance(member)["available"] == 2475
    again = a.api.post("/v1/conversions", {"quote": body["quote"]}, key="c-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert_problem(a.api.post("/v1/conversions", {"quote": body["quote"]}), 409, "quote-used")
    with db.read() as s:
        assert verify(s).ok
