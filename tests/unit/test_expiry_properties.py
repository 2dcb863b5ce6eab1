"""Expiry never takes a spent point, nor one whose lot has not expired, whatever a member
did before: random sequences of earns, spends, reservations (posted or voided later) and
time passing, on the real ledger, with the expiry job run at random moments."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import time_machine
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from hub import ledger
from hub.db import Database, utcnow
from hub.programs.models import Member, Membership, Partner
from hub.programs.service import create_program
from hub.rules import expiry, versions
from tests.unit.test_ledger import ldb  # noqa: F401  (the fixture: a Database on the test database)

START = datetime(2031, 1, 1, 9, tzinfo=timezone.utc)
HOLD = timedelta(days=3650)  # reservations outlive the whole sequence


class Book:
    """A program with an expiry policy and one member account."""

    def __init__(self, db: Database, policy: dict):
        self.db = db

        def make(s):
            partner = Partner(code=f"X{uuid.uuid4().hex[:8].upper()}", name="expiry properties")
            s.add(partner)
            s.flush()
            program = create_program(s, partner_code=partner.code, code=f"E{uuid.uuid4().hex[:8].upper()}",
                                     name="p", point_value=Decimal(1), earn_currency="USD",
                                     earn_rate=Decimal(1), by="test")
            versions.publish(s, program.id, {"expiry": policy}, created_by="test", effective_from=utcnow())
            member = Member()
            s.add(member)
            s.flush()
            account = ledger.open_account(s, program.id, "member", cached=True, no_overdraft=True)
            s.add(Membership(member_id=member.id, program_id=program.id, account_id=account))
            return program.id, program.issuance_account_id, program.redemption_account_id, \
                program.breakage_account_id, account

        self.program, self.issuance, self.redemption, self.breakage, self.account = db.write(make)

    def _spec(self, debit, credit, amount, code):
        return ledger.TransferSpec(debit, credit, amount, code, self.program, "test")

    def earn(self, n):
        self.db.write(lambda s: ledger.post(s, [self._spec(self.issuance, self.account, n, "earn")]))

    def spend(self, n):
        self.db.write(lambda s: ledger.post(s, [self._spec(self.account, self.redemption, n, "redemption")]))

    def reserve(self, n) -> int:
        return self.db.write(lambda s: ledger.reserve(s, [self._spec(self.account, self.redemption, n, "redemption")],
                                                      HOLD))[0]

    def void(self, pending_id):
        self.db.write(lambda s: ledger.void_pending(s, pending_id, "test"))

    def post(self, pending_id):
        self.db.write(lambda s: ledger.post_pending(s, pending_id, "test"))

    def available(self) -> int:
        with self.db.read() as s:
            return ledger.balance(s, self.account).available

    def expire(self, now) -> int:
        return expiry.expire_program(self.db, self.program, self.breakage, now)["points"]

    def consistent(self) -> bool:
        with self.db.read() as s:
            return ledger.fold(s, [self.account])[self.account] == ledger.balance(s, self.account)


POLICIES = st.sampled_from([
    {"policy": "after_months", "months": 1},
    {"policy": "after_months", "months": 3},
    {"policy": "end_of_month"},
    {"policy": "end_of_month", "after_months": 1},
    {"policy": "end_of_year"},
])
STEPS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["earn", "spend", "reserve"]), st.integers(1, 400)),
    st.tuples(st.sampled_from(["void", "post"]), st.integers(0, 5)),
    st.tuples(st.just("advance"), st.integers(1, 100)),  # days
    st.tuples(st.just("expire"), st.just(0)),
), max_size=30)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=POLICIES, steps=STEPS)
def test_expiry_takes_exactly_the_expired_unspent_points(ldb, policy, steps):
    with time_machine.travel(START, tick=False) as clock:
        book = Book(ldb, policy)
        credits: list[tuple[datetime, int]] = []
        pending: list[int] = []
        for op, n in steps + [("advance", 400), ("expire", 0)]:
            now = utcnow()
            available = book.available()
            if op == "earn":
                book.earn(n)
                credits.append((now, n))
            elif op == "spend" and n <= available:
                book.spend(n)
            elif op == "reserve" and n <= available:
                pending.append(book.reserve(n))
            elif op in ("void", "post") and pending:
                (book.void if op == "void" else book.post)(pending.pop(n % len(pending)))
            elif op == "advance":
                clock.shift(timedelta(days=n))
            elif op == "expire":
                unexpired = sum(points for credited, points in credits
                                if expiry.expires_at(policy, credited) > now)
                expired = book.expire(now)
                # Every expired point that was not spent (nor reserved) goes, and nothing else:
                # never more than the balance, never a point of a lot still running.
                assert book.available() == min(available, unexpired)
                assert expired == available - book.available()
                assert book.expire(now) == 0  # a second run at the same moment: nothing more
        assert book.available() >= 0 and book.consistent()
