"""A member's year in an airline-shaped program, on a controlled clock: earn, tier up,
spend, return, points expire, tier down at the review. Every figure below is worked out by
hand (see the comments), then checked through the HTTP API and the daily jobs.

The program: 1 point per USD; tiers on points earned in a 12-month window, reviewed every
1 January (Silver from 1,000, Gold from 2,500); points expire 6 months after they are earned.
The levels carry no earn multiplier, so the figures are the base rate's.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

import pytest
import time_machine
from sqlalchemy import select

from hub import ledger
from hub.ledger.verify import verify
from hub.programs.models import Program
from hub.rules import expiry, tiers, versions
from tests.conftest import Api, token_for
from tests.integration.test_redemptions import in_house
from tests.integration.test_tiers_and_expiry import events, history, listening

RULES = {
    "tiers": {
        "basis": "points_earned", "window_months": 12,
        "review": {"every_months": 12, "anchor": "calendar", "month": 1},
        "levels": [
            {"code": "SILVER", "name": "Silver", "threshold": 1000},
            {"code": "GOLD", "name": "Gold", "threshold": 2500, "exclusive": True},
        ],
    },
    "expiry": {"policy": "after_months", "months": 6},
}


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


# (when, what, argument, then: balance, qualifying points, tier). Lots: A 600 (expires
# 2027-07-10), B 500 (2027-08-15), C 1500 (2027-11-05), D 300 (2028-03-10). Debits spend the
# soonest-expiring lots first.
YEAR = [
    (utc(2027, 1, 10, 10), "buy", "600.00", 600, 600, None),          # lot A
    (utc(2027, 2, 15, 10), "buy", "500.00", 1100, 1100, "SILVER"),    # lot B; 1,100 >= 1,000: Silver at once
    (utc(2027, 3, 20, 10), "redeem", 200, 900, 1100, "SILVER"),       # spends 200 of A (A: 400 left)
    (utc(2027, 5, 5, 10), "buy", "1500.00", 2400, 2600, "GOLD"),      # lot C; 2,600 >= 2,500: Gold at once
    (utc(2027, 6, 1, 10), "return", "500.00", 1900, 2100, "GOLD"),    # a third of C's purchase: -500 points
                                                                      # (spends the rest of A, then 100 of B);
                                                                      # 2,100 < 2,500, but no review yet: Gold
    (utc(2027, 7, 11), "expire", 0, 1900, 2100, "GOLD"),              # A (600) expired, all of it spent: 0 due
    (utc(2027, 8, 1, 10), "redeem", 100, 1800, 2100, "GOLD"),         # 100 more of B (B: 300 left)
    (utc(2027, 8, 16), "expire", 300, 1500, 2100, "GOLD"),            # B's unspent 300 expire: 1,100 - 800 debits
    (utc(2027, 9, 10, 10), "buy", "300.00", 1800, 2400, "GOLD"),      # lot D
    (utc(2027, 11, 6), "expire", 1500, 300, 2400, "GOLD"),            # C, all 1,500 unspent: 2,600 - 1,100 debits
    (utc(2028, 1, 1, 0, 5), "review", 0, 300, 1800, "SILVER"),        # the review's window, 2027: 600 + 500 +
                                                                      # 1500 - 500 + 300 = 2,400 < 2,500: Silver.
                                                                      # Shown now: Feb 2027-Jan 2028, A's month
                                                                      # gone: 2,400 - 600 = 1,800
    (utc(2028, 3, 11), "expire", 300, 0, 1300, "SILVER"),             # D expires. Window Apr 2027-Mar 2028:
                                                                      # 1500 - 500 + 300 = 1,300
]


@pytest.fixture
def airline(make_partner, db):
    partner = make_partner(currency="USD", points_per_unit="1")
    listening(partner)
    return partner


def _program(db, partner):
    with db.read() as s:
        return s.execute(select(Program.id, Program.breakage_account_id).where(Program.code == partner.program)).one()


def test_a_year_of_one_member(db, http, airline):
    program_id, breakage = _program(db, airline)
    with time_machine.travel(utc(2027, 1, 1), tick=False) as clock:
        airline.api = Api(http, token_for(http, airline.client_id, airline.secret))
        db.write(lambda s: versions.publish(s, program_id, RULES, created_by="year simulation"))
        member = airline.enrol()
        purchases: list[str] = []
        expired_total = 0
        for when, what, argument, balance, qualifying, tier in YEAR:
            clock.move_to(when)
            airline.api = Api(http, token_for(http, airline.client_id, airline.secret))  # tokens expire too
            if what == "buy":
                body = airline.purchase_body(member, argument, occurred_at=when.isoformat())
                response = airline.api.post("/v1/transactions", body)
                assert response.status_code == 201, response.text
                purchases.append(response.json()["id"])
            elif what == "redeem":
                body = {"reward": in_house(airline, points=argument), "program": airline.program,
                        "member": {"member_id": member}}
                assert airline.api.post("/v1/redemptions", body).status_code == 201
            elif what == "return":
                body = {"purchase": {"id": purchases[-1]}, "return_id": f"r-{secrets.token_hex(4)}",
                        "amount": argument, "currency": "USD", "occurred_at": when.isoformat()}
                assert airline.api.post("/v1/returns", body).status_code == 201
            elif what == "expire":
                expiry.run(db)
                expired_total += argument
            elif what == "review":
                tiers.review_due(db)
            assert airline.balance(member)["available"] == balance, (when, what)
            standing = airline.api.get(f"/v1/members/{member}/tier", program=airline.program).json()
            assert (standing["tier"] or {}).get("code") == tier, (when, what)
            assert standing["qualifying"] == str(qualifying), (when, what)
            with db.read() as s:
                assert ledger.balance(s, breakage).credits_posted == expired_total, (when, what)

            if when == utc(2027, 6, 1, 10):
                # What the member is told on 1 June: within 90 days, B's unspent 400 on 15 August
                # (A's 600 are all spent by the 700 points of debits); C is further away.
                soon = airline.api.get(f"/v1/members/{member}/expiring", program=airline.program).json()
                assert soon["items"] == [{"expires_at": "2027-08-15T10:00:00Z", "points": 400}]

        # Silver holds until the next review, 1 January 2029.
        assert standing["next_review_at"] == "2029-01-01T00:00:00Z"
        assert history(db, member) == [(None, "SILVER", "qualified"), ("SILVER", "GOLD", "qualified"),
                                       ("GOLD", "SILVER", "review")]
        assert [e[:3] for e in events(db, member)] == history(db, member)
        with db.read() as s:
            assert verify(s).ok
