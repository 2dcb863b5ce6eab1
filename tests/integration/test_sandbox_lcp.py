"""The LCP connector against its sandbox fake over real HTTP (hub.sandbox on a free port): every
magic amount, exactly-once per reference, balances, partial reversal and its cap, the timeout.
Each test uses its own member ids, so tests share the server but not state."""
from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

from hub import sandbox
from hub.exchange.hosted import HostedUnavailable, MemberCheck, RemoteStatus, factories
from partners.lcp.sandbox import START_BALANCE

PENDING_DELAY = 0.3   # a 95/96 posting settles on the first look this long after it was posted
TIMEOUT_SLEEP = 3.0   # a 93 posting's answer takes this long...
# ...and the connector stops waiting after this: long enough for any other answer of the
# fake on a busy CI host (0.3 s once timed out a status lookup during a full run)
READ_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def served():
    server, url = sandbox.start(pending_delay=PENDING_DELAY, timeout_sleep=TIMEOUT_SLEEP)
    yield url, server.app.mounts["/lcp"]
    server.shutdown()


@pytest.fixture
def fake(served):
    return served[1]


def program(served, **overrides: str):
    config = {"base_url": served[0] + "/lcp", "timeout_connect": "1", "timeout_read": str(READ_TIMEOUT), **overrides}
    return factories()["lcp"](config)


@pytest.fixture
def lcp(served):
    return program(served)


def member() -> str:
    return f"M{uuid.uuid4().hex[:12]}"


def ref() -> str:
    return f"xfr{uuid.uuid4().hex}"


DIRECTIONS = {"debit": -1, "credit": 1}


def post(lcp, direction: str, member_id: str, points: int, reference: str):
    return getattr(lcp, direction)(member_id, points, reference)


def moved(fake, member_id: str) -> int:
    return fake.balance(member_id) - START_BALANCE


# Plain postings and validation.

@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_a_posting_moves_the_balance_once_however_often_it_is_sent(lcp, fake, direction):
    who, reference = member(), ref()
    first = post(lcp, direction, who, 1200, reference)
    assert first.status is RemoteStatus.SUCCESS and first.transaction_id
    assert post(lcp, direction, who, 1200, reference) == first  # the repeat gets the original
    assert lcp.status(reference) == first
    assert moved(fake, who) == DIRECTIONS[direction] * 1200
    assert fake.transaction(reference)["applied"] == 1


def test_concurrent_attempts_at_one_reference_apply_it_once(served, fake):
    lcp, who, reference = program(served, timeout_read="5"), member(), ref()
    results, barrier = [], threading.Barrier(8)

    def attempt():
        barrier.wait()
        results.append(lcp.debit(who, 700, reference))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in results} == {RemoteStatus.SUCCESS}
    assert len({r.transaction_id for r in results}) == 1
    assert moved(fake, who) == -700 and fake.transaction(reference)["applied"] == 1


def test_validate_reports_the_balance_the_postings_left(lcp, fake):
    who = member()
    assert lcp.validate(who) == MemberCheck(True, START_BALANCE)
    lcp.debit(who, 2500, ref())
    assert lcp.validate(who).balance == START_BALANCE - 2500


def test_an_unknown_member_is_refused(lcp, fake):
    stranger = f"{member()}-unknown"
    check = lcp.validate(stranger)
    assert not check.valid and "Unknown Member" in check.detail
    reference = ref()
    assert lcp.credit(stranger, 100, reference).status is RemoteStatus.FAILURE
    assert lcp.status(reference).status is RemoteStatus.FAILURE  # recorded, never applied


def test_a_debit_beyond_the_balance_is_refused_and_moves_nothing(lcp, fake):
    who, reference = member(), ref()
    fake.set_balance(who, 500)
    refused = lcp.debit(who, 600, reference)
    assert refused.status is RemoteStatus.FAILURE and "Insufficient balance" in refused.detail
    assert fake.balance(who) == 500
    assert lcp.debit(who, 500, ref()).status is RemoteStatus.SUCCESS
    assert fake.balance(who) == 0


def test_an_unknown_reference_is_not_found(lcp):
    assert lcp.status(ref()).status is RemoteStatus.NOT_FOUND


# Magic amounts (abs(amount) % 100), both directions.

@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_99_fails_and_is_never_applied(lcp, fake, direction):
    who, reference = member(), ref()
    assert post(lcp, direction, who, 1099, reference).status is RemoteStatus.FAILURE
    assert lcp.status(reference).status is RemoteStatus.FAILURE
    assert moved(fake, who) == 0


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("points, settled", [(1094, RemoteStatus.PENDING), (1095, RemoteStatus.SUCCESS),
                                             (1096, RemoteStatus.FAILURE)])
def test_pending_amounts_settle_on_a_look_after_the_delay(lcp, fake, direction, points, settled):
    who, reference = member(), ref()
    first = post(lcp, direction, who, points, reference)
    assert first.status is RemoteStatus.PENDING and first.transaction_id
    assert lcp.status(reference).status is RemoteStatus.PENDING  # too early
    time.sleep(PENDING_DELAY + 0.05)
    assert lcp.status(reference).status is settled
    assert post(lcp, direction, who, points, reference).status is settled  # a repeat sees the same
    expected = DIRECTIONS[direction] * points if settled is RemoteStatus.SUCCESS else 0
    assert moved(fake, who) == expected


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("points, applied_at_once, settled", [
    (1091, False, RemoteStatus.SUCCESS),   # not applied; the retry applies it
    (1097, True, RemoteStatus.SUCCESS),    # applied; the retry applies nothing more
    (1098, False, RemoteStatus.FAILURE),   # not applied; the retry fails
])
def test_system_errors_are_settled_by_status_with_the_partners_retry(lcp, fake, direction, points,
                                                                      applied_at_once, settled):
    who, reference = member(), ref()
    first = post(lcp, direction, who, points, reference)
    assert first.status is RemoteStatus.UNKNOWN and first.transaction_id
    assert moved(fake, who) == (DIRECTIONS[direction] * points if applied_at_once else 0)
    assert fake.transaction(reference)["status"] == "systemError"

    result = lcp.status(reference)
    assert (result.status, result.transaction_id) == (settled, first.transaction_id)  # the same transaction
    assert lcp.status(reference).status is settled  # settled: asking again changes nothing
    assert moved(fake, who) == (DIRECTIONS[direction] * points if settled is RemoteStatus.SUCCESS else 0)
    assert fake.transaction(reference)["applied"] == (1 if settled is RemoteStatus.SUCCESS else 0)


def test_a_retry_that_must_apply_still_checks_the_balance(lcp, fake):
    who, reference = member(), ref()
    fake.set_balance(who, 2000)
    assert lcp.debit(who, 1091, reference).status is RemoteStatus.UNKNOWN
    fake.set_balance(who, 1000)  # spent elsewhere before the partner came back
    assert lcp.status(reference).status is RemoteStatus.FAILURE
    assert fake.balance(who) == 1000


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_93_times_out_after_applying_and_status_finds_it(lcp, fake, direction):
    who, reference = member(), ref()
    started = time.monotonic()
    first = post(lcp, direction, who, 1093, reference)
    elapsed = time.monotonic() - started
    assert first.status is RemoteStatus.UNKNOWN
    assert READ_TIMEOUT <= elapsed < TIMEOUT_SLEEP
    found = lcp.status(reference)
    assert found.status is RemoteStatus.SUCCESS
    assert post(lcp, direction, who, 1093, reference) == found  # answered at once this time
    assert moved(fake, who) == DIRECTIONS[direction] * 1093
    assert fake.transaction(reference)["applied"] == 1


# Reversals.

def test_a_debit_is_reversed_in_parts_up_to_its_amount(lcp, fake):
    who = member()
    debit = lcp.debit(who, 1000, ref())
    first, second = ref(), ref()
    assert lcp.reversal(debit.transaction_id, 400, first).status is RemoteStatus.SUCCESS
    assert moved(fake, who) == -600
    assert lcp.reversal(debit.transaction_id, 400, first).status is RemoteStatus.SUCCESS  # a repeat: once
    assert moved(fake, who) == -600
    assert lcp.reversal(debit.transaction_id, 600, second).status is RemoteStatus.SUCCESS
    assert moved(fake, who) == 0
    over = lcp.reversal(debit.transaction_id, 1, ref())
    assert over.status is RemoteStatus.FAILURE and "exceeds" in over.detail
    assert moved(fake, who) == 0


def test_a_reversal_over_the_original_is_refused_whole(lcp, fake):
    who = member()
    credit = lcp.credit(who, 300, ref())
    assert lcp.reversal(credit.transaction_id, 301, ref()).status is RemoteStatus.FAILURE
    assert lcp.reversal(credit.transaction_id, 300, ref()).status is RemoteStatus.SUCCESS  # a credit: points go
    assert moved(fake, who) == 0


def test_only_an_applied_transaction_can_be_reversed(lcp, fake):
    who = member()
    pending = lcp.debit(who, 1094, ref())
    failed = lcp.debit(who, 1099, ref())
    assert lcp.reversal(pending.transaction_id, 10, ref()).status is RemoteStatus.FAILURE
    assert lcp.reversal(failed.transaction_id, 10, ref()).status is RemoteStatus.FAILURE
    assert lcp.reversal("no-such-transaction", 10, ref()).status is RemoteStatus.FAILURE
    assert moved(fake, who) == 0


# Credentials and transport.

def test_the_fake_checks_credentials(served, fake):
    lcp, who, reference = program(served, password="wrong"), member(), ref()
    refused = lcp.debit(who, 100, reference)
    assert refused.status is RemoteStatus.FAILURE and "401" in refused.detail
    assert lcp.status(reference).status is RemoteStatus.UNKNOWN  # a refused question is no answer
    with pytest.raises(HostedUnavailable):
        lcp.validate(who)
    assert fake.transaction(reference) is None and moved(fake, who) == 0


def test_a_refused_connection_is_a_retry_and_validation_is_unavailable():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lcp = factories()["lcp"]({"base_url": f"http://127.0.0.1:{port}/lcp", "timeout_read": "1"})
    assert lcp.credit(member(), 100, ref()).status is RemoteStatus.RETRY
    assert lcp.status(ref()).status is RemoteStatus.UNKNOWN
    with pytest.raises(HostedUnavailable):
        lcp.validate(member())
