"""Ledger rules (design.md) at the service level, on the test database."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import BigInteger, bindparam, func, insert, literal, select, text

from hub import ledger
from hub.db import Database, utcnow
from hub.ledger import service
from hub.ledger.verify import verify
from tests.conftest import round_trips, statements_run


@pytest.fixture(scope="module")
def ldb(settings) -> Database:
    database = Database(settings.database_url)
    yield database
    database.dispose()


class Book:
    """One ledger with an issuance account and two member accounts."""

    def __init__(self, db: Database):
        self.db = db
        self.ledger = uuid.uuid4()

        def open_all(s):
            issuance = ledger.open_account(s, self.ledger, "issuance", cached=False, no_overdraft=False)
            a = ledger.open_account(s, self.ledger, "member", cached=True, no_overdraft=True)
            b = ledger.open_account(s, self.ledger, "member", cached=True, no_overdraft=True)
            return issuance, a, b

        self.issuance, self.a, self.b = db.write(open_all)

    def spec(self, debit, credit, amount, code="earn"):
        return ledger.TransferSpec(debit, credit, amount, code, self.ledger, "test")

    def post(self, *specs):
        return self.db.write(lambda s: ledger.post(s, list(specs)))

    def balance(self, account):
        with self.db.read() as s:
            return ledger.balance(s, account)


@pytest.fixture
def book(ldb) -> Book:
    return Book(ldb)


def test_posting_moves_points_and_system_balance_is_folded(book):
    book.post(book.spec(book.issuance, book.a, 100))
    assert book.balance(book.a).available == 100
    issuance = book.balance(book.issuance)
    assert (issuance.debits_posted, issuance.credits_posted) == (100, 0)


def test_member_account_never_goes_below_zero(book):
    book.post(book.spec(book.issuance, book.a, 10))
    with pytest.raises(ledger.InsufficientFunds):
        book.post(book.spec(book.a, book.b, 11))
    assert book.balance(book.a).available == 10


def test_linked_transfers_commit_together_or_not_at_all(book):
    book.post(book.spec(book.issuance, book.a, 10))
    with pytest.raises(ledger.InsufficientFunds):
        book.post(book.spec(book.a, book.b, 5), book.spec(book.a, book.b, 6))
    assert book.balance(book.a).available == 10
    assert book.balance(book.b).available == 0


def test_deltas_are_netted_within_a_linked_batch(book):
    # credit then debit of the same account in one batch: the end state is what counts
    book.post(book.spec(book.issuance, book.a, 5), book.spec(book.a, book.b, 5))
    assert (book.balance(book.a).available, book.balance(book.b).available) == (0, 5)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_amount_must_be_a_positive_integer(book, amount):
    with pytest.raises(ledger.InvalidTransfer):
        book.post(book.spec(book.issuance, book.a, amount))


def test_accounts_must_differ_and_share_the_ledger(book, ldb):
    other = Book(ldb)
    with pytest.raises(ledger.InvalidTransfer):
        book.post(book.spec(book.a, book.a, 1))
    with pytest.raises(ledger.InvalidTransfer):
        book.post(book.spec(book.issuance, other.a, 1))


def test_reserve_then_post_part_releases_the_rest(book):
    book.post(book.spec(book.issuance, book.a, 100))
    (pending,) = book.db.write(lambda s: ledger.reserve(s, [book.spec(book.a, book.b, 60)], timedelta(hours=1)))
    held = book.balance(book.a)
    assert (held.available, held.debits_pending) == (40, 60)
    with pytest.raises(ledger.InsufficientFunds):
        book.post(book.spec(book.a, book.b, 41))
    book.db.write(lambda s: ledger.post_pending(s, pending, "test", amount=45))
    after = book.balance(book.a)
    assert (after.available, after.debits_pending, after.posted) == (55, 0, 55)
    assert book.balance(book.b).posted == 45


def test_a_reservation_resolves_exactly_once(book):
    book.post(book.spec(book.issuance, book.a, 10))
    (pending,) = book.db.write(lambda s: ledger.reserve(s, [book.spec(book.a, book.b, 10)], timedelta(hours=1)))
    book.db.write(lambda s: ledger.void_pending(s, pending, "test"))
    for resolve in (ledger.void_pending, ledger.post_pending):
        with pytest.raises(ledger.PendingAlreadyResolved):
            book.db.write(lambda s: resolve(s, pending, "test"))
    assert book.balance(book.a).available == 10


@pytest.mark.parametrize("resolve", [ledger.post_pending, ledger.void_pending])
def test_a_reservation_is_resolved_without_a_read_of_its_accounts_of_their_own(book, resolve):
    """A process that never saw the accounts (the relay resolves what the API reserved)."""
    book.post(book.spec(book.issuance, book.a, 10))
    (pending,) = book.db.write(lambda s: ledger.reserve(s, [book.spec(book.a, book.b, 10)], timedelta(hours=1)))
    service._info_cache.clear()
    with statements_run(book.db) as seen:
        book.db.write(lambda s: resolve(s, pending, "test"))
    assert not [s for s in seen if s.startswith("select ledger_accounts.id")]
    posted = resolve is ledger.post_pending
    assert (book.balance(book.a).available, book.balance(book.b).posted) == ((0, 10) if posted else (10, 0))


def test_an_expired_reservation_can_be_voided_but_not_posted(book):
    book.post(book.spec(book.issuance, book.a, 10))
    (pending,) = book.db.write(
        lambda s: ledger.reserve(s, [book.spec(book.a, book.b, 10)], timedelta(microseconds=1))
    )
    with pytest.raises(ledger.PendingExpired):
        book.db.write(lambda s: ledger.post_pending(s, pending, "test"))
    book.db.write(lambda s: ledger.void_pending(s, pending, "test"))
    assert book.balance(book.a).available == 10


def test_several_reservations_resolve_together_or_not_at_all(book):
    book.post(book.spec(book.issuance, book.a, 100), book.spec(book.issuance, book.b, 100))
    legs = book.db.write(lambda s: ledger.reserve(
        s, [book.spec(book.a, book.issuance, 30), book.spec(book.b, book.issuance, 20)], timedelta(hours=1)))
    # One of them already resolved: the whole call is refused and the other stays reserved.
    book.db.write(lambda s: ledger.void_pending(s, legs[1], "test"))
    with pytest.raises(ledger.PendingAlreadyResolved):
        book.db.write(lambda s: ledger.post_pending_many(s, legs, "test"))
    assert (book.balance(book.a).debits_pending, book.balance(book.b).available) == (30, 100)

    again = book.db.write(lambda s: ledger.reserve(
        s, [book.spec(book.b, book.issuance, 20), book.spec(book.a, book.issuance, 10)], timedelta(hours=1)))
    book.db.write(lambda s: ledger.post_pending_many(s, [again[0], again[1], legs[0]], "test"))
    a, b = book.balance(book.a), book.balance(book.b)
    assert (a.posted, a.debits_pending, b.posted, b.debits_pending) == (60, 0, 80, 0)
    with book.db.read() as s:
        assert verify(s).ok


@pytest.mark.parametrize("resolve", [ledger.post_pending_many, ledger.void_pending_many])
def test_resolving_many_reservations_costs_the_statements_of_two(book, resolve):
    """A relay wave resolves its orders' reservations together: one read of them and one
    insert of their resolutions, whatever their number."""
    book.post(book.spec(book.issuance, book.a, 100), book.spec(book.issuance, book.b, 100))

    def statements(count: int) -> int:
        legs = book.db.write(lambda s: ledger.reserve(
            s, [book.spec(book.a if i % 2 else book.b, book.issuance, 1) for i in range(count)], timedelta(hours=1)))
        with round_trips(book.db) as seen:
            book.db.write(lambda s: resolve(s, legs, "test"))
        return len(seen)

    assert statements(2) == statements(12)
    with book.db.read() as s:
        assert verify(s).ok


def test_a_reservation_named_twice_is_refused(book):
    book.post(book.spec(book.issuance, book.a, 10))
    (pending,) = book.db.write(lambda s: ledger.reserve(s, [book.spec(book.a, book.b, 10)], timedelta(hours=1)))
    with pytest.raises(ledger.PendingAlreadyResolved, match="named twice"):
        book.db.write(lambda s: ledger.post_pending_many(s, [pending, pending], "test"))
    assert book.balance(book.a).debits_pending == 10


def test_the_accounts_of_references_reservations_are_locked_in_id_order(book):
    """The relay takes them before resolving a wave order by order: the cached accounts that
    the named references' reservations move (not the uncached issuance), ascending."""
    book.post(book.spec(book.issuance, book.a, 100), book.spec(book.issuance, book.b, 100))

    def spec(debit, credit, ref_id):
        return ledger.TransferSpec(debit, credit, 5, "t", book.ledger, "test", ref_type="order", ref_id=ref_id)

    book.db.write(lambda s: ledger.reserve(s, [spec(book.b, book.issuance, "r1"), spec(book.a, book.issuance, "r2")],
                                           timedelta(hours=1)))
    book.db.write(lambda s: ledger.reserve(s, [spec(book.b, book.a, "r3")], timedelta(hours=1)))
    locked = book.db.write(lambda s: ledger.lock_reserved_accounts(s, "order", ["r2", "r1"]))
    assert locked == sorted([book.a, book.b])
    assert book.db.write(lambda s: ledger.lock_reserved_accounts(s, "order", ["r2"])) == [book.a]
    assert book.db.write(lambda s: ledger.lock_reserved_accounts(s, "order", ["nothing"])) == []


def test_several_reservations_void_together_and_one_expired_refuses_posting_all(book):
    book.post(book.spec(book.issuance, book.a, 100), book.spec(book.issuance, book.b, 100))
    live = book.db.write(lambda s: ledger.reserve(s, [book.spec(book.a, book.issuance, 30)], timedelta(hours=1)))
    expired = book.db.write(
        lambda s: ledger.reserve(s, [book.spec(book.b, book.issuance, 20)], timedelta(microseconds=1)))
    with pytest.raises(ledger.PendingExpired):
        book.db.write(lambda s: ledger.post_pending_many(s, live + expired, "test"))
    assert book.balance(book.a).debits_pending == 30  # nothing was posted
    book.db.write(lambda s: ledger.void_pending_many(s, live + expired, "test"))
    assert (book.balance(book.a).available, book.balance(book.b).available) == (100, 100)


def test_only_pending_transfers_can_be_resolved(book):
    (posted,) = book.post(book.spec(book.issuance, book.a, 10))
    with pytest.raises(ledger.PendingNotFound):
        book.db.write(lambda s: ledger.void_pending(s, posted, "test"))


def test_verify_finds_a_tampered_cached_balance(book):
    book.post(book.spec(book.issuance, book.a, 10))
    with book.db.read() as s:
        assert verify(s).ok
    book.db.write(lambda s: s.execute(text("UPDATE ledger_accounts SET credits_posted = 11 WHERE id = :id"), {"id": book.a}))
    try:
        with book.db.read() as s:
            report = verify(s)
        assert not report.ok
        assert any(f"account {book.a}:" in v for v in report.violations)
    finally:
        book.db.write(lambda s: s.execute(text("UPDATE ledger_accounts SET credits_posted = 10 WHERE id = :id"), {"id": book.a}))


def test_verify_finds_a_transfer_whose_account_does_not_exist(book):
    # No foreign key guards ledger_transfers' accounts any more (migration 0003: it locked the
    # issuance account of every earn), so `hub ledger verify` is what proves they exist.
    from hub.ledger.models import Account, Transfer

    def plant(s):
        missing = (s.scalar(select(func.max(Account.id))) or 0) + 1000
        return s.execute(
            insert(Transfer.__table__).returning(Transfer.id),
            {"ledger": book.ledger, "debit_account_id": book.issuance, "credit_account_id": missing,
             "amount": 5, "code": "earn", "phase": "posted", "caused_by": "test", "created_at": utcnow()},
        ).scalar_one()

    bad = book.db.write(plant)
    try:
        with book.db.read() as s:
            report = verify(s)
        assert any(v.startswith(f"transfer {bad}: an account is missing") for v in report.violations)
    finally:
        book.db.write(lambda s: s.execute(text("DELETE FROM ledger_transfers WHERE id = :id"), {"id": bad}))
    with book.db.read() as s:
        assert verify(s).ok


def test_a_single_post_changes_only_the_balance_columns(book):
    # One transfer of one cached account is posted as one statement on PostgreSQL (an
    # UPDATE in a CTE, then the INSERT): the account's other columns must stay as they were.
    from hub.ledger.models import Account

    columns = (Account.ledger, Account.code, Account.cached, Account.no_overdraft, Account.created_at)
    with book.db.read() as s:
        before = s.execute(select(*columns).where(Account.id == book.a)).one()
    book.post(book.spec(book.issuance, book.a, 7))
    book.post(book.spec(book.a, book.issuance, 2, code="reversal"))
    with pytest.raises(ledger.InsufficientFunds):
        book.post(book.spec(book.a, book.issuance, 6))
    with book.db.read() as s:
        assert s.execute(select(*columns).where(Account.id == book.a)).one() == before
    assert book.balance(book.a) == ledger.Balance(0, 2, 0, 7)


def test_credits_to_many_accounts_in_one_post(book, ldb):
    # A batch of earns: a run of unguarded updates (two set-based statements on PostgreSQL).
    def open_more(s):
        return [ledger.open_account(s, book.ledger, "member", cached=True, no_overdraft=True) for _ in range(3)]

    more = ldb.write(open_more)
    accounts = [book.b, *more, book.a]
    book.post(*(book.spec(book.issuance, account, 10 + i) for i, account in enumerate(accounts)))
    assert [book.balance(a).available for a in accounts] == [10, 11, 12, 13, 14]
    assert book.balance(book.issuance).debits_posted == 60
    with ldb.read() as s:
        assert verify(s).ok


# The rows of a test gate, one object for every call as a gate's must be (see ledger.Gate).
_GATE_ROWS = select(literal("test").label("kind"), bindparam("g", type_=BigInteger).label("granted"))


def _gate(granted: int, total: int) -> ledger.Gate:
    """A gate whose one row grants `granted` of `total` (the counters a rated earn takes
    are such writes; the ledger only reads what they granted)."""
    return ledger.Gate(_GATE_ROWS, {"g": granted}, total)


def test_a_gated_post_is_made_only_when_its_gate_grants_the_total(book):
    made, rows = book.db.write(lambda s: ledger.post_gated(s, book.spec(book.issuance, book.a, 30), _gate(5, 5)))
    assert made is not None and rows == [("test", 5)]
    short, rows = book.db.write(lambda s: ledger.post_gated(s, book.spec(book.issuance, book.a, 30), _gate(4, 5)))
    assert short is None and rows == [("test", 4)]
    assert book.balance(book.a).available == 30
    with book.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ledger.service._transfers)
                        .where(ledger.service._transfers.c.ledger == book.ledger)) == 1
        assert verify(s).ok


def test_a_gated_post_is_refused_like_any_other_when_its_gate_grants_all(book):
    """The gate met, a closed account or a short balance refuse the post with the error a
    post without a gate raises (on which the caller rolls back the gate's writes too)."""
    with pytest.raises(ledger.InsufficientFunds):
        book.db.write(lambda s: ledger.post_gated(s, book.spec(book.a, book.issuance, 1), _gate(5, 5)))
    book.db.write(lambda s: ledger.close(s, [book.b]))
    with pytest.raises(ledger.AccountClosed):
        book.db.write(lambda s: ledger.post_gated(s, book.spec(book.issuance, book.b, 1), _gate(5, 5)))
    assert (book.balance(book.a).available, book.balance(book.b).available) == (0, 0)


def test_a_gate_must_grant_something_and_name_its_parameters_apart(book):
    with pytest.raises(ValueError):
        _gate(0, 0)
    clashing = ledger.Gate(_GATE_ROWS, {"g": 5, "amount": 1}, 5)
    if book.db.dialect == "postgresql":  # elsewhere the gate is a statement of its own
        with pytest.raises(ValueError, match="amount"):
            book.db.write(lambda s: ledger.post_gated(s, book.spec(book.issuance, book.a, 3), clashing))
