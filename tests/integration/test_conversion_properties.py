"""Properties of conversion sequences on a real database, and opposite conversions racing.

Hypothesis draws sequences of conversions among three programs of different values and
fees; after each sequence the ledger verifies and the member's coalition value, plus the
fees and the rounding the coalition kept, equals what it was: no sequence creates value.
"""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import select, text

from hub import ledger
from hub.actor import Actor
from hub.errors import DomainError
from hub.exchange import conversions
from hub.ledger.verify import verify
from hub.programs.models import Partner as PartnerRow

VALUES = ("10", "4", "0.35")  # three programs' point values
FEES = {(0, 1): 100, (1, 0): 250, (0, 2): 0, (2, 0): 30, (1, 2): 75, (2, 1): 0}


@pytest.fixture
def coalition(ops, partner, db):
    """The partner's program and two more of its own, the member in all three with points,
    and every pair between them open (fees above, no minimum)."""
    codes = [partner.program]
    for value in VALUES[1:]:
        code = f"{partner.program[:6]}{len(codes)}X"
        made = ops.post("/v1/programs", {"partner": partner.code, "code": code, "name": code, "point_value": value,
                                         "earn_rule": {"currency": "IDR", "points_per_unit": "0.001"}})
        assert made.status_code == 201, made.text
        codes.append(code)
    assert ops.post("/v1/conversions/rates", {"program": codes[0], "point_value": VALUES[0]}).status_code == 201
    member = partner.enrol()
    for code in codes[1:]:
        assert partner.api.post("/v1/members", {"program": code, "member_id": member}).status_code == 201
    for code in codes:
        body = {**partner.purchase_body(member, "20000000"), "program": code}
        assert partner.api.post("/v1/transactions", body).status_code == 201
    for (i, j), fee in FEES.items():
        opened = ops.http.put(f"/v1/conversions/pairs/{codes[i]}/{codes[j]}", headers=ops.headers,
                              json={"open": True, "fee_bps": fee})
        assert opened.status_code == 200, opened.text
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))
    actor = Actor(partner.client_id, partner_id, frozenset({"conversions:write"}))
    return codes, member, actor


TERMS = conversions.Terms("test-secret", timedelta(minutes=5), timedelta(days=1))


def convert(db, actor, member, source, target, points):
    body = {"from": source, "to": target, "points": points, "member": {"member_id": member}}
    q, _ = db.write(lambda s: conversions.quote(s, actor, body, TERMS))
    return db.write(lambda s: conversions.execute(s, actor, {"quote": q.sign(TERMS.secret_key)}, TERMS)).conversion


def holdings(partner, codes, member) -> dict[str, int]:
    items = partner.api.get(f"/v1/members/{member}/balances").json()["items"]
    return {item["program"]: item["available"] for item in items if item["program"] in codes}


def value_of(held: dict[str, int], codes) -> Decimal:
    return sum(held[code] * Decimal(VALUES[i]) for i, code in enumerate(codes))


steps = st.lists(
    st.tuples(st.sampled_from(sorted(FEES)), st.integers(min_value=1, max_value=20_000)), min_size=1, max_size=6)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_no_sequence_of_conversions_creates_value(partner, db, coalition, sequence):
    codes, member, actor = coalition
    before = holdings(partner, codes, member)
    fees = kept = Decimal(0)
    for (i, j), points in sequence:
        try:
            done = convert(db, actor, member, codes[i], codes[j], points)
        except (DomainError, ledger.InsufficientFunds):
            continue  # too few points, or too few to buy one target point: nothing moved
        # What rounding kept, from the points that moved (not from the stored units): never
        # negative, and less than one target point.
        rounded = done.points_in * done.from_value - done.fee_units - done.points_out * done.to_value
        assert 0 <= rounded < done.to_value and done.fee_units >= 0
        fees += done.fee_units
        kept += rounded
    after = holdings(partner, codes, member)
    # No value out of nothing: what the member holds, plus fees, never exceeds what they held;
    # and the difference is exactly the fees and what rounding kept.
    assert value_of(after, codes) + fees <= value_of(before, codes)
    assert value_of(after, codes) + fees + kept == value_of(before, codes)
    # Going A -> B -> A never yields more A points than it started with.
    if after[codes[0]] >= 1000:
        there = convert(db, actor, member, codes[0], codes[1], 1000)
        back = convert(db, actor, member, codes[1], codes[0], there.points_out)
        assert back.points_out <= 1000
    with db.read() as s:
        assert verify(s).ok


def deadlocks(db) -> int:
    with db.read() as s:
        return s.scalar(text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))


def test_opposite_conversions_at_once_neither_deadlock_nor_double_spend(partner, db, coalition):
    codes, member, actor = coalition
    a, b = codes[0], codes[2]  # 1 A point buys 28 B points; 36 B points buy 1 A point
    before = holdings(partner, codes, member)
    postgres = db.dialect == "postgresql"
    deadlocks_before = deadlocks(db) if postgres else 0
    start = threading.Barrier(8)

    def race(n):
        source, target, points = (a, b, 700) if n % 2 else (b, a, 5000)
        start.wait()
        moved = []
        for _ in range(10):
            try:
                moved.append(convert(db, actor, member, source, target, points))
            except ledger.InsufficientFunds:
                pass
        return moved

    with ThreadPoolExecutor(8) as pool:
        done = [c for moved in pool.map(race, range(8)) for c in moved]
    after = holdings(partner, codes, member)
    with db.read() as s:
        code_of = dict(s.execute(text("SELECT id, code FROM programs WHERE code IN (:a, :b)"), {"a": a, "b": b}).all())
        assert verify(s).ok
    code_of = {_uuid(k): v for k, v in code_of.items()}
    assert {code_of[c.from_program_id] for c in done} == {a, b}  # both directions ran
    for code in (a, b):
        spent = sum(c.points_in for c in done if code_of[c.from_program_id] == code)
        got = sum(c.points_out for c in done if code_of[c.to_program_id] == code)
        assert after[code] == before[code] - spent + got >= 0
    if postgres:
        assert deadlocks(db) == deadlocks_before


def _uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
