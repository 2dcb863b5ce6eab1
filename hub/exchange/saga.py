"""The conversion saga: the remote leg of a conversion into or out of a partner-hosted program.

`conversions.execute` reserves the local leg (a pending ledger transfer) and enqueues an
outbox message (topic `exchange.remote_leg`). Each delivery of that message is one attempt:

1. claim: one statement takes a short lease on the conversion and counts the attempt, so two
   deliveries of the message never call the partner at once;
2. the remote call, with no database transaction open: the first attempt sends the debit
   ("from" side hosted: the member pays in the partner's points) or the credit ("to" side
   hosted: the member receives them) under a reference derived from the conversion id; every
   later attempt asks `status(reference)` first and sends again only when the partner has no
   record of it (NOT_FOUND). A debit is never re-sent blindly;
3. the outcome, in one transaction with the ledger, the conversion row locked: SUCCESS posts
   the local leg (completed); FAILURE voids it (failed: the member's points back, or the
   pending credit removed); anything else tries again after a backoff, until the attempts
   or the deadline run out: then a leg surely never applied is voided (failed), any other
   waits for review with its reservation kept (needs_review).

A SUCCESS whose local reservation has expired (a very late answer) cannot be posted: the
same attempt then reverses the remote transaction (`reversal`, reference + "-rev") and voids
the local leg if the partner confirms the reversal, else leaves the conversion for review.
So a conversion ends completed or compensated, or in front of a person; never half-done.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from hub import ledger
from hub.db import Database, utcnow
from hub.errors import Conflict
from hub.exchange.conversions import REMOTE_TOPIC
from hub.exchange.hosted import HostedProgram, RemoteResult, RemoteStatus
from hub.exchange.models import COMPLETED, FAILED, NEEDS_REVIEW, PENDING, Conversion
from hub.notify import outbox
from hub.notify.breaker import Breaker
from hub.notify.policy import RelayPolicy
from hub.programs.models import Program

log = logging.getLogger(__name__)
CAUSED_BY = "saga"
# What `record` answers when the remote leg succeeded after the local reservation expired:
# the caller must reverse the remote transaction (never a stored state).
REVERSE = "reverse"

_conversions = Conversion.__table__
_programs = Program.__table__
# Answers that settle nothing: ask again later.
_OPEN = (RemoteStatus.PENDING, RemoteStatus.UNKNOWN, RemoteStatus.RETRY, RemoteStatus.NOT_FOUND)
# Answers that count against the partner's breaker (no answer, or "not now").
_UNHEALTHY = (RemoteStatus.UNKNOWN, RemoteStatus.RETRY)


def reference(conversion_id: uuid.UUID) -> str:
    """The partner's idempotency reference for the remote leg: derived from the conversion,
    so every attempt, by any worker, names the same transaction."""
    return f"cnv{conversion_id.hex}"


def reversal_reference(conversion_id: uuid.UUID) -> str:
    return reference(conversion_id) + "-rev"


# The hosted side's program (its connector's name).
_HOSTED_PROGRAM = case((_conversions.c.hosted_side == "from", _conversions.c.from_program_id),
                       else_=_conversions.c.to_program_id)
# Takes the lease of the named conversions that are pending and not leased, counts the
# attempt, and returns what the remote call needs.
_CLAIM = (
    update(_conversions)
    .where(_conversions.c.state == PENDING, _conversions.c.hosted_side.is_not(None))
    .values(attempts=_conversions.c.attempts + 1)
    .returning(
        _conversions.c.id, _conversions.c.attempts, _conversions.c.hosted_side, _conversions.c.remote_member,
        case((_conversions.c.hosted_side == "from", _conversions.c.points_in), else_=_conversions.c.points_out),
        select(_programs.c.hosted_by).where(_programs.c.id == _HOSTED_PROGRAM).scalar_subquery(),
    )
)


@dataclass(frozen=True)
class _Claim:
    conversion_id: uuid.UUID
    attempts: int
    hosted_side: str  # "from": the remote leg is a debit; "to": a credit
    remote_member: str
    points: int
    connector: str

    @property
    def first_attempt(self) -> bool:
        return self.attempts == 1

    @property
    def reference(self) -> str:
        return reference(self.conversion_id)


class Saga:
    """Runs attempts of the remote legs. One per worker process: its breakers (one per
    partner connector) and its thread pool are shared by every task of the process."""

    def __init__(self, db: Database, connectors: Mapping[str, HostedProgram], policy: RelayPolicy = RelayPolicy(),
                 parallel: int = 16):
        self.db = db
        self.connectors = connectors
        self.policy = policy
        self.breakers: dict[str, Breaker] = {}
        self._parallel = parallel
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, conversion_id: uuid.UUID) -> str:
        """One attempt. Returns the conversion's state afterwards ('busy' if another delivery
        holds its lease, 'done' if it was already settled)."""
        return self.run_many([conversion_id])[0]

    def run_many(self, conversion_ids: Sequence[uuid.UUID]) -> list[str]:
        """One attempt for each conversion: the leases in one transaction, then each remote
        call and outcome on its own, concurrently. Returns when all have ended, then raises
        the first error if any (the task is retried; a lease still held is left to the outbox,
        which republishes the message once it has run out)."""
        claims = self.db.write(lambda s: _claim(s, conversion_ids, self.policy.lease))
        taken = [c for c in claims.values() if isinstance(c, _Claim)]
        if len(taken) == 1:
            claims[taken[0].conversion_id] = self._attempt(taken[0])
        elif taken:
            with self._lock:
                if self._pool is None:  # made on first use: after a prefork worker's fork
                    self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="saga")
            futures = {c.conversion_id: self._pool.submit(self._attempt, c) for c in taken}
            wait(futures.values())
            for conversion_id, future in futures.items():
                claims[conversion_id] = future.result()
        return [claims[i] for i in conversion_ids]

    def _attempt(self, claim: _Claim) -> str:
        result, surely_not_applied = self._call(claim)
        log.info("conversion %s attempt %d: %s %s", claim.conversion_id, claim.attempts, result.status.value,
                 result.detail)
        state = self.db.write(lambda s: record(s, claim.conversion_id, result, self.policy,
                                               surely_not_applied=surely_not_applied))
        if state == REVERSE:
            # Still under this attempt's lease: nobody else calls the partner meanwhile.
            connector = self.connectors[claim.connector]
            transaction_id = result.transaction_id or self._stored_transaction(claim.conversion_id)
            reversal = connector.reversal(transaction_id, claim.points, reversal_reference(claim.conversion_id))
            log.warning("conversion %s: the remote leg succeeded after the local reservation expired; "
                        "its reversal answered %s %s", claim.conversion_id, reversal.status.value, reversal.detail)
            state = self.db.write(lambda s: record_reversal(s, claim.conversion_id, reversal))
        return state

    def _stored_transaction(self, conversion_id: uuid.UUID) -> str:
        with self.db.read() as s:
            return s.scalar(select(_conversions.c.remote_transaction_id).where(_conversions.c.id == conversion_id))

    def _call(self, claim: _Claim) -> tuple[RemoteResult, bool]:
        """Ask the partner; returns its answer and whether the leg is surely not applied."""
        connector = self.connectors.get(claim.connector)
        if connector is None:
            return RemoteResult(RemoteStatus.RETRY, detail=f"connector {claim.connector} is not configured"), False
        breaker = self.breakers.setdefault(
            claim.connector, Breaker(self.policy.breaker_failures, self.policy.breaker_reset))
        if not breaker.admit():
            # Nothing sent now; on the first attempt, nothing was ever sent.
            return (RemoteResult(RemoteStatus.RETRY, detail="circuit open", retry_after=self.policy.breaker_reset),
                    claim.first_attempt)
        try:
            result, surely_not_applied = _ask(connector, claim)
        except BaseException:
            breaker.abandon()  # a bug of ours says nothing about the partner
            raise
        if result.status in _UNHEALTHY:
            breaker.failure()
        else:
            breaker.success()
        return result, surely_not_applied


def _ask(connector: HostedProgram, claim: _Claim) -> tuple[RemoteResult, bool]:
    if not claim.first_attempt:
        found = connector.status(claim.reference)
        if found.status is not RemoteStatus.NOT_FOUND:
            return found, False
    send = connector.debit if claim.hosted_side == "from" else connector.credit
    result = send(claim.remote_member, claim.points, claim.reference)
    # The partner had no record of the reference (first attempt, or NOT_FOUND just now) and
    # RETRY says this call applied nothing: nothing exists at the partner.
    return result, result.status is RemoteStatus.RETRY


def _claim(session: Session, conversion_ids: Sequence[uuid.UUID], lease: timedelta) -> dict[uuid.UUID, _Claim | str]:
    now = utcnow()
    c = _conversions.c
    statement = _CLAIM.where(c.id.in_(conversion_ids), or_(c.lease_until.is_(None), c.lease_until < now))
    claims: dict[uuid.UUID, _Claim | str] = {
        row[0]: _Claim(*row) for row in session.execute(statement.values(lease_until=now + lease))
    }
    for conversion_id in conversion_ids:
        if conversion_id not in claims:
            state = session.scalar(select(c.state).where(c.id == conversion_id))
            if state == PENDING:
                claims[conversion_id] = "busy"
            else:  # settled (or unknown): its message is done
                outbox.complete(session, REMOTE_TOPIC, str(conversion_id))
                claims[conversion_id] = "done"
    return claims


@dataclass(frozen=True)
class _Locked:
    state: str
    attempts: int
    hosted_side: str
    debit_transfer_id: int | None
    credit_transfer_id: int | None
    relay_deadline: datetime
    remote_transaction_id: str | None

    @property
    def local_leg(self) -> int:
        """The reserved ledger transfer: the credit when the partner hosts the source."""
        return self.credit_transfer_id if self.hosted_side == "from" else self.debit_transfer_id

    @property
    def remote_leg(self) -> str:
        return "debit" if self.hosted_side == "from" else "credit"


_LOCK = (
    select(_conversions.c.state, _conversions.c.attempts, _conversions.c.hosted_side,
           _conversions.c.debit_transfer_id, _conversions.c.credit_transfer_id, _conversions.c.relay_deadline,
           _conversions.c.remote_transaction_id)
    .with_for_update()
)


def _lock(session: Session, conversion_id: uuid.UUID) -> _Locked | None:
    row = session.execute(_LOCK.where(_conversions.c.id == conversion_id)).first()
    return _Locked(*row) if row else None


def record(session: Session, conversion_id: uuid.UUID, result: RemoteResult, policy: RelayPolicy, *,
           surely_not_applied: bool = False) -> str:
    """Apply the partner's answer to a pending conversion, in one transaction with the ledger.
    Returns the state afterwards, or REVERSE: the partner applied the leg after the local
    reservation expired, and the caller must reverse it (then `record_reversal`).

    Giving up: a PENDING answer (the partner holds the transaction and will settle it) is
    asked again until the deadline; any other open answer until the attempts run out too."""
    row = _open(session, conversion_id)
    if isinstance(row, str):
        return row
    now = utcnow()
    status = result.status
    found = {"remote_transaction_id": result.transaction_id[:100]} if result.transaction_id else {}
    if status in _OPEN and (now >= row.relay_deadline
                            or (row.attempts >= policy.max_attempts and status is not RemoteStatus.PENDING)):
        detail = f"{status.value}{': ' + result.detail if result.detail else ''}"
        if not surely_not_applied:
            failure = f"no definitive answer after {row.attempts} attempts: {detail}"
            return _end(session, conversion_id, NEEDS_REVIEW, failure=failure, **found)
        status, result = RemoteStatus.FAILURE, RemoteResult(RemoteStatus.FAILURE, detail=f"gave up: {detail}")
    if status is RemoteStatus.SUCCESS:
        try:
            ledger.post_pending(session, row.local_leg, CAUSED_BY)
        except ledger.PendingExpired:
            if not (result.transaction_id or row.remote_transaction_id):
                failure = f"{_late(row)}, and named no transaction to reverse"
                return _end(session, conversion_id, NEEDS_REVIEW, failure=failure)
            if found:
                _change(session, conversion_id, **found)
            return REVERSE  # the lease stays: the caller reverses it under this attempt's lease
        return _end(session, conversion_id, COMPLETED, **found)
    if status is RemoteStatus.FAILURE:
        ledger.void_pending(session, row.local_leg, CAUSED_BY)
        failure = result.detail or f"the partner refused the {row.remote_leg}"
        return _end(session, conversion_id, FAILED, failure=failure, **found)
    delay = outbox.backoff(row.attempts, policy.backoff_base, policy.backoff_cap)
    if result.retry_after:
        delay = max(delay, timedelta(seconds=result.retry_after))
    _change(session, conversion_id, lease_until=None, **found)
    outbox.reschedule(session, REMOTE_TOPIC, str(conversion_id), now + delay)
    return PENDING


def record_reversal(session: Session, conversion_id: uuid.UUID, result: RemoteResult) -> str:
    """The answer to reversing a remote leg applied after its local reservation expired:
    confirmed, the local leg is voided too (failed: nothing moved on either side); otherwise
    a person must settle it (needs_review, the local reservation kept)."""
    row = _open(session, conversion_id)
    if isinstance(row, str):
        return row
    if result.status is RemoteStatus.SUCCESS:
        ledger.void_pending(session, row.local_leg, CAUSED_BY)
        failure = f"{_late(row)}; it was reversed ({reversal_reference(conversion_id)})"
        return _end(session, conversion_id, FAILED, failure=failure)
    failure = f"{_late(row)}; its reversal answered {result.status.value}: {result.detail}"
    return _end(session, conversion_id, NEEDS_REVIEW, failure=failure)


def _late(row: _Locked) -> str:
    return f"the partner applied the {row.remote_leg} after the local reservation expired"


def _open(session: Session, conversion_id: uuid.UUID) -> _Locked | str:
    """The conversion, locked, while it is pending; else its state (and its message is done:
    another delivery settled it)."""
    row = _lock(session, conversion_id)
    if row is None:
        return "unknown"
    if row.state != PENDING:
        outbox.complete(session, REMOTE_TOPIC, str(conversion_id))
        return row.state
    return row


def _end(session: Session, conversion_id: uuid.UUID, state: str, *, failure: str | None = None, **changes) -> str:
    """Settle the conversion (completed, failed) or hand it to a person (needs_review), and
    finish its outbox message."""
    if failure is not None:
        changes["failure"] = failure[:500]
    resolved_at = utcnow() if state in (COMPLETED, FAILED) else None
    _change(session, conversion_id, state=state, lease_until=None, resolved_at=resolved_at, **changes)
    outbox.complete(session, REMOTE_TOPIC, str(conversion_id))
    if state == NEEDS_REVIEW:
        log.warning("conversion %s needs review: %s", conversion_id, failure)
    return state


def _change(session: Session, conversion_id: uuid.UUID, **values) -> None:
    session.execute(update(_conversions).where(_conversions.c.id == conversion_id).values(**values))


def requeue(session: Session, conversion_id: uuid.UUID) -> None:
    """Give a conversion that needs review back to the saga, with a fresh count of attempts.
    Its first new attempt asks the partner first, so nothing is sent twice."""
    row = _lock(session, conversion_id)
    if row is None or row.state != NEEDS_REVIEW:
        raise Conflict(f"conversion {conversion_id} does not need review", slug="not-in-review")
    now = utcnow()
    _change(session, conversion_id, state=PENDING, failure=None, resolved_at=None, lease_until=None,
            attempts=1,  # not 0: the next attempt must ask the partner first
            relay_deadline=max(row.relay_deadline, now + timedelta(hours=1)))
    outbox.enqueue(session, REMOTE_TOPIC, str(conversion_id), {"conversion_id": str(conversion_id)})


def needing_review(session: Session) -> list[Conversion]:
    """Conversions waiting for a person, oldest first."""
    return list(session.scalars(select(Conversion).where(Conversion.state == NEEDS_REVIEW)
                                .order_by(Conversion.created_at)))
