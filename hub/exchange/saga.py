"""The conversion saga: the remote leg of a conversion into or out of a partner-hosted program.

`conversions.execute` reserves the local leg (a pending ledger transfer) and enqueues an
outbox message (topic `exchange.remote_leg`). Each delivery of that message is one attempt:

1. claim: one statement takes a short lease on the conversion and counts the attempt, so two
   deliveries of the message never call the partner at once;
2. the remote call, with no database transaction open: the debit ("from" side hosted: the
   member pays in the partner's points) or the credit ("to" side hosted: the member receives
   them), under a reference derived from the conversion id. While nothing may have reached the
   partner (`remote_maybe_sent` false: every debit or credit so far was answered RETRY, "not
   received"), the attempt sends it directly. Once something may have (the flag is set), every
   attempt asks `status(reference)` first and sends again only when the partner has no record
   of it (NOT_FOUND). A debit is never re-sent blindly;
3. the outcome, in one transaction with the ledger, the conversion row locked: SUCCESS posts
   the local leg (completed); FAILURE voids it (failed: the member's points back, or the
   pending credit removed); anything else tries again after a backoff, until the attempts
   or the deadline run out: then a leg never maybe sent is voided (failed), any other waits
   for review with its reservation kept (needs_review).

`remote_maybe_sent` is sticky: set (in the outcome transaction) by the first debit or credit
whose answer is not a definitive "not applied" (anything but RETRY or FAILURE: UNKNOWN,
PENDING, SUCCESS), never cleared. A status() answer cannot clear it either: NOT_FOUND only
says the partner has no record *yet*, and a request sent earlier may still land. So a leg
once maybe sent is never compensated without a person.

The lease is also the attempt's fencing token. Each partner call of an attempt starts with at
least nine tenths of the lease ahead: the lease is renewed first once a tenth of it has passed
(a claim that waited for a thread of the pool, the send after a status(), the reversal after a
late success), and only while it is still the attempt's own (`lease_until` unchanged); else
the attempt stops without calling. So with the lease longer than one connector call (LCP's
longest, status() with its retry, is three HTTP requests: 3 x (3.05 + 10) s), one delivery at
a time talks to the partner. A call that still overruns (an HTTP read timeout bounds each
read, not a whole answer) stays safe: the claim that takes over an expired lease still set
(its attempt never recorded an outcome, or its worker died) marks the leg maybe sent, so the
new attempt asks status() first and cannot compensate; the references make any send or
reversal repeated by the overlap apply once; and the overrunning attempt's outcome is
fenced: only a SUCCESS (the partner's word) or a confirmed reversal is recorded, anything else
is left to the delivery that now holds the conversion.

A SUCCESS whose local reservation has expired (a very late answer) cannot be posted: the
same attempt then reverses the remote transaction (`reversal`, reference + "-rev") and voids
the local leg if the partner confirms the reversal, else leaves the conversion for review.
So a conversion ends completed or compensated, or in front of a person; never half-done.
Ops settle a conversion in review with `resolve` (what the partner told them) or `requeue`.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from hub import ledger
from hub.audit import review_notes, trail
from hub.db import Database, utcnow
from hub.errors import Conflict
from hub.exchange.conversions import REMOTE_TOPIC, announce_completed
from hub.exchange.hosted import HostedProgram, RemoteResult, RemoteStatus
from hub.exchange.models import COMPLETED, FAILED, NEEDS_REVIEW, PENDING, Conversion
from hub.notify import outbox
from hub.notify.breaker import Breaker
from hub.notify.policy import RelayPolicy
from hub.programs.models import Program

log = logging.getLogger(__name__)
CAUSED_BY = "saga"
# A conversion resolved as not applied: its `failure`, which partners read (the API), a fixed
# text, never ops' free-text reason or who gave it (hub.audit.review_notes keeps those).
NOT_APPLIED_AFTER_REVIEW = "not applied at the partner, after review"
# What `record` answers when the remote leg succeeded after the local reservation expired:
# the caller must reverse the remote transaction (never a stored state).
REVERSE = "reverse"
# What an attempt answers when another delivery holds the conversion's lease.
BUSY = "busy"

_conversions = Conversion.__table__
_programs = Program.__table__
# Answers that settle nothing: ask again later.
_OPEN = (RemoteStatus.PENDING, RemoteStatus.UNKNOWN, RemoteStatus.RETRY, RemoteStatus.NOT_FOUND)
# Answers that count against the partner's breaker (no answer, or "not now").
_UNHEALTHY = (RemoteStatus.UNKNOWN, RemoteStatus.RETRY)
# A debit's or credit's answers that say it applied nothing: any other may have applied it.
_NOT_APPLIED = (RemoteStatus.RETRY, RemoteStatus.FAILURE)


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
# attempt, and returns what the remote call needs. A lease still set but expired belongs to
# an attempt that never recorded its outcome (it ran past its lease, or its worker died while
# it may have been sending): the leg is then maybe sent. (SET expressions read the row as it
# was before the UPDATE, on PostgreSQL and SQLite alike.)
_CLAIM = (
    update(_conversions)
    .where(_conversions.c.state == PENDING, _conversions.c.hosted_side.is_not(None))
    .values(attempts=_conversions.c.attempts + 1,
            remote_maybe_sent=or_(_conversions.c.remote_maybe_sent, _conversions.c.lease_until.is_not(None)))
    .returning(
        _conversions.c.id, _conversions.c.attempts, _conversions.c.hosted_side, _conversions.c.remote_member,
        case((_conversions.c.hosted_side == "from", _conversions.c.points_in), else_=_conversions.c.points_out),
        select(_programs.c.hosted_by).where(_programs.c.id == _HOSTED_PROGRAM).scalar_subquery(),
        _conversions.c.remote_maybe_sent, _conversions.c.lease_until,
    )
)


@dataclass
class _Claim:
    conversion_id: uuid.UUID
    attempts: int
    hosted_side: str  # "from": the remote leg is a debit; "to": a credit
    remote_member: str
    points: int
    connector: str
    maybe_sent: bool  # remote_maybe_sent as claimed: ask status() before sending
    lease_until: datetime  # this attempt's lease, as stored: its fencing token (renewals move it)
    leased_at: float = 0.0  # time.monotonic() at (or before) the moment lease_until was set

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
        result, sent = self._call(claim)
        if result is None:
            return BUSY  # the lease was lost before a call: another delivery has the conversion
        log.info("conversion %s attempt %d: %s %s", claim.conversion_id, claim.attempts, result.status.value,
                 result.detail)
        state = self.db.write(lambda s: record(s, claim.conversion_id, result, self.policy, lease=claim.lease_until,
                                               maybe_sent=sent))
        if state == REVERSE:
            # The lease stayed with this attempt: renewed if need be, nobody else calls meanwhile.
            if not self._hold(claim):
                return BUSY
            connector = self.connectors[claim.connector]
            transaction_id = result.transaction_id or self._stored_transaction(claim.conversion_id)
            reversal = connector.reversal(transaction_id, claim.points, reversal_reference(claim.conversion_id))
            log.warning("conversion %s: the remote leg succeeded after the local reservation expired; "
                        "its reversal answered %s %s", claim.conversion_id, reversal.status.value, reversal.detail)
            state = self.db.write(lambda s: record_reversal(s, claim.conversion_id, reversal, lease=claim.lease_until))
        return state

    def _stored_transaction(self, conversion_id: uuid.UUID) -> str:
        with self.db.read() as s:
            return s.scalar(select(_conversions.c.remote_transaction_id).where(_conversions.c.id == conversion_id))

    def _hold(self, claim: _Claim) -> bool:
        """Whether the attempt may make its next partner call. Once a tenth of the lease has
        passed since it was set, it is renewed first (so no call starts with less than nine
        tenths of it ahead), and only if it is still this attempt's: False when another
        delivery took the conversion after the lease ran out, or it was settled meanwhile."""
        lease = self.policy.lease
        if time.monotonic() - claim.leased_at < lease.total_seconds() / 10:
            return True
        started = time.monotonic()
        until = self.db.write(lambda s: _renew(s, claim.conversion_id, claim.lease_until, lease))
        if until is None:
            log.warning("conversion %s attempt %d: its lease ran out and another delivery took it; no call",
                        claim.conversion_id, claim.attempts)
            return False
        claim.lease_until, claim.leased_at = until, started
        return True

    def _call(self, claim: _Claim) -> tuple[RemoteResult | None, bool]:
        """Ask the partner. Returns its answer (None: the lease was lost before a call, and
        nothing was sent) and whether this attempt sent the debit or credit and got no
        definitive "not applied" (it may be applied: the leg is maybe sent from now on)."""
        connector = self.connectors.get(claim.connector)
        if connector is None:
            return RemoteResult(RemoteStatus.RETRY, detail=f"connector {claim.connector} is not configured"), False
        if not self._hold(claim):
            return None, False
        breaker = self.breakers.setdefault(
            claim.connector, Breaker(self.policy.breaker_failures, self.policy.breaker_reset))
        if not breaker.admit():
            return (RemoteResult(RemoteStatus.RETRY, detail="circuit open", retry_after=self.policy.breaker_reset),
                    False)  # nothing sent
        try:
            result, sent = self._ask(connector, claim)
        except BaseException:
            breaker.abandon()  # a bug of ours says nothing about the partner
            raise
        if result is not None and result.status in _UNHEALTHY:
            breaker.failure()
        else:
            breaker.success()
        return result, sent

    def _ask(self, connector: HostedProgram, claim: _Claim) -> tuple[RemoteResult | None, bool]:
        if claim.maybe_sent:
            # Something may have reached the partner: never send again before it says it has
            # no record of the reference.
            found = connector.status(claim.reference)
            if found.status is not RemoteStatus.NOT_FOUND:
                return found, False
            if not self._hold(claim):
                return None, False
        # Else every debit or credit so far was answered RETRY: nothing reached the partner.
        send = connector.debit if claim.hosted_side == "from" else connector.credit
        result = send(claim.remote_member, claim.points, claim.reference)
        return result, result.status not in _NOT_APPLIED


def _claim(session: Session, conversion_ids: Sequence[uuid.UUID], lease: timedelta) -> dict[uuid.UUID, _Claim | str]:
    leased_at = time.monotonic()
    now = utcnow()
    c = _conversions.c
    statement = _CLAIM.where(c.id.in_(conversion_ids), or_(c.lease_until.is_(None), c.lease_until < now))
    claims: dict[uuid.UUID, _Claim | str] = {
        row[0]: _Claim(*row, leased_at=leased_at) for row in session.execute(statement.values(lease_until=now + lease))
    }
    for conversion_id in conversion_ids:
        if conversion_id not in claims:
            state = session.scalar(select(c.state).where(c.id == conversion_id))
            if state == PENDING:
                claims[conversion_id] = BUSY
            else:  # settled (or unknown): its message is done
                outbox.complete(session, REMOTE_TOPIC, str(conversion_id))
                claims[conversion_id] = "done"
    return claims


def _renew(session: Session, conversion_id: uuid.UUID, held: datetime, lease: timedelta) -> datetime | None:
    """Extend the lease `held` if the conversion is still pending under it; its new end, or
    None (another delivery claimed it, or it was settled)."""
    until = utcnow() + lease
    c = _conversions.c
    renewed = session.execute(update(_conversions)
                              .where(c.id == conversion_id, c.state == PENDING, c.lease_until == held)
                              .values(lease_until=until))
    return until if renewed.rowcount == 1 else None


@dataclass(frozen=True)
class _Locked:
    state: str
    attempts: int
    hosted_side: str
    debit_transfer_id: int | None
    credit_transfer_id: int | None
    relay_deadline: datetime
    remote_transaction_id: str | None
    remote_maybe_sent: bool
    lease_until: datetime | None
    failure: str | None

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
           _conversions.c.remote_transaction_id, _conversions.c.remote_maybe_sent, _conversions.c.lease_until,
           _conversions.c.failure)
    .with_for_update()
)


def _lock(session: Session, conversion_id: uuid.UUID) -> _Locked | None:
    row = session.execute(_LOCK.where(_conversions.c.id == conversion_id)).first()
    return _Locked(*row) if row else None


def record(session: Session, conversion_id: uuid.UUID, result: RemoteResult, policy: RelayPolicy, *,
           lease: datetime | None = None, maybe_sent: bool = False) -> str:
    """Apply the partner's answer to a pending conversion, in one transaction with the ledger.
    Returns the state afterwards, BUSY (the answer of an attempt whose lease another delivery
    took: see `_overrun`), or REVERSE: the partner applied the leg after the local reservation
    expired, and the caller must reverse it (then `record_reversal`).

    `maybe_sent`: this attempt sent the debit or credit without a definitive "not applied";
    it sets the sticky remote_maybe_sent. `lease`: the attempt's lease (None: not fenced).

    Giving up: a PENDING answer (the partner holds the transaction and will settle it) is
    asked again until the deadline; any other open answer until the attempts run out too.
    Then a leg never maybe sent is compensated (failed), any other waits for review."""
    row = _open(session, conversion_id)
    if isinstance(row, str):
        return row
    now = utcnow()
    status = result.status
    changes = {"remote_transaction_id": result.transaction_id[:100]} if result.transaction_id else {}
    if maybe_sent and not row.remote_maybe_sent:
        changes["remote_maybe_sent"] = True
    maybe_sent = maybe_sent or row.remote_maybe_sent
    if lease is not None and row.lease_until != lease:
        return _overrun(session, conversion_id, row, result, changes)
    if status in _OPEN and (now >= row.relay_deadline
                            or (row.attempts >= policy.max_attempts and status is not RemoteStatus.PENDING)):
        detail = f"{status.value}{': ' + result.detail if result.detail else ''}"
        if maybe_sent:
            failure = f"no definitive answer after {row.attempts} attempts: {detail}"
            return _end(session, conversion_id, NEEDS_REVIEW, failure=failure, **changes)
        # Every debit or credit sent was answered "not received": nothing exists at the partner.
        status, result = RemoteStatus.FAILURE, RemoteResult(RemoteStatus.FAILURE, detail=f"gave up: {detail}")
    if status is RemoteStatus.SUCCESS:
        try:
            ledger.post_pending(session, row.local_leg, CAUSED_BY)
        except ledger.PendingExpired:
            if not (result.transaction_id or row.remote_transaction_id):
                failure = f"{_late(row)}, and named no transaction to reverse"
                return _end(session, conversion_id, NEEDS_REVIEW, failure=failure, **changes)
            if changes:
                _change(session, conversion_id, **changes)
            return REVERSE  # the lease stays: the caller reverses it under this attempt's lease
        return _end(session, conversion_id, COMPLETED, failure=None, **changes)
    if status is RemoteStatus.FAILURE:
        ledger.void_pending(session, row.local_leg, CAUSED_BY)
        failure = result.detail or f"the partner refused the {row.remote_leg}"
        return _end(session, conversion_id, FAILED, failure=failure, **changes)
    delay = outbox.backoff(row.attempts, policy.backoff_base, policy.backoff_cap)
    if result.retry_after:
        delay = max(delay, timedelta(seconds=result.retry_after))
    _change(session, conversion_id, lease_until=None, **changes)
    outbox.reschedule(session, REMOTE_TOPIC, str(conversion_id), now + delay)
    return PENDING


def _overrun(session: Session, conversion_id: uuid.UUID, row: _Locked, result: RemoteResult,
             changes: dict) -> str:
    """The answer of an attempt that ran past its lease, which another delivery has taken since
    (its claim marked the leg maybe sent). A SUCCESS is the partner's word and is recorded (the
    local leg posted, if its reservation has not expired); anything else (a FAILURE included:
    the other delivery may be sending the same reference right now) is left to the delivery
    that holds the lease, which asks status() first. Its lease and message are not touched."""
    log.warning("conversion %s: an attempt answered %s after its lease ran out", conversion_id, result.status.value)
    if result.status is RemoteStatus.SUCCESS:
        try:
            ledger.post_pending(session, row.local_leg, CAUSED_BY)
        except ledger.PendingExpired:
            pass  # the delivery holding the lease finds the success (status) and reverses it
        else:
            return _end(session, conversion_id, COMPLETED, failure=None, **changes)
    if changes:
        _change(session, conversion_id, **changes)
    return BUSY


def record_reversal(session: Session, conversion_id: uuid.UUID, result: RemoteResult, *,
                    lease: datetime | None = None) -> str:
    """The answer to reversing a remote leg applied after its local reservation expired:
    confirmed, the local leg is voided too (failed: nothing moved on either side); otherwise
    a person must settle it (needs_review, the local reservation kept), unless the attempt
    has lost its lease (`lease`, as in `record`): the delivery holding it settles it."""
    row = _open(session, conversion_id)
    if isinstance(row, str):
        return row
    if result.status is RemoteStatus.SUCCESS:
        ledger.void_pending(session, row.local_leg, CAUSED_BY)
        failure = f"{_late(row)}; it was reversed ({reversal_reference(conversion_id)})"
        return _end(session, conversion_id, FAILED, failure=failure)
    if lease is not None and row.lease_until != lease:
        return BUSY
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


def _end(session: Session, conversion_id: uuid.UUID, state: str, *, failure: str | None, **changes) -> str:
    """Settle the conversion (completed, failed) or hand it to a person (needs_review), and
    finish its outbox message. `failure` replaces the stored one (None clears it)."""
    changes["failure"] = None if failure is None else failure[:500]
    resolved_at = utcnow() if state in (COMPLETED, FAILED) else None
    _change(session, conversion_id, state=state, lease_until=None, resolved_at=resolved_at, **changes)
    outbox.complete(session, REMOTE_TOPIC, str(conversion_id))
    if state == COMPLETED:
        programs = session.execute(select(Conversion.from_program_id, Conversion.to_program_id)
                                   .where(Conversion.id == conversion_id)).one()
        announce_completed(session, conversion_id, *programs)
    if state == NEEDS_REVIEW:
        log.warning("conversion %s needs review: %s", conversion_id, failure)
    return state


def _change(session: Session, conversion_id: uuid.UUID, **values) -> None:
    session.execute(update(_conversions).where(_conversions.c.id == conversion_id).values(**values))


def _in_review(session: Session, conversion_id: uuid.UUID) -> _Locked:
    row = _lock(session, conversion_id)
    if row is None or row.state != NEEDS_REVIEW:
        raise Conflict(f"conversion {conversion_id} does not need review", slug="not-in-review")
    return row


def requeue(session: Session, conversion_id: uuid.UUID, *, by: str, reason: str | None = None) -> None:
    """Give a conversion that needs review back to the saga, with a fresh count of attempts.
    Its leg is maybe sent (that is why it is in review; the flag is never cleared), so its
    first new attempt asks the partner first: nothing is sent twice, nothing compensated.
    A reason, if given, is kept as a review note (hub.audit.review_notes), with the failure
    that put the conversion in review."""
    row = _in_review(session, conversion_id)
    now = utcnow()
    _change(session, conversion_id, state=PENDING, failure=None, resolved_at=None, lease_until=None, attempts=0,
            remote_maybe_sent=True,  # already set on every way into review; stated, not assumed
            relay_deadline=max(row.relay_deadline, now + timedelta(hours=1)))
    outbox.enqueue(session, REMOTE_TOPIC, str(conversion_id), {"conversion_id": str(conversion_id)})
    noted = review_notes.note_requeue(session, review_notes.CONVERSION, conversion_id, reason=reason, by=by,
                                      in_review_for=row.failure)
    trail.record(session, actor=by, action="conversion.requeue", target=f"conversion:{conversion_id}",
                 before={"state": NEEDS_REVIEW}, after={"state": PENDING, **noted})


def resolve(session: Session, conversion_id: uuid.UUID, *, applied: bool, reason: str, by: str) -> str:
    """Settle a conversion that needs review by what ops learned from the partner: its leg was
    applied there (the local leg posted: completed) or surely not, and never will be (voided:
    failed). The ledger records `by` as the cause. `failure` is what partners read: null once
    completed, NOT_APPLIED_AFTER_REVIEW once failed; who resolved it and why (required: 422
    `reason-required`) stay in the hub, as the audit entry (its actor, the reason's hash) and
    a review note that only ops read (hub.audit.review_notes), with the failure that put the
    conversion in review. A leg applied whose local reservation has expired cannot be
    posted: refused (requeue it, and the saga reverses it at the partner)."""
    reason = review_notes.required(reason)
    row = _in_review(session, conversion_id)
    if applied:
        try:
            ledger.post_pending(session, row.local_leg, by)
        except ledger.PendingExpired:
            raise Conflict(f"conversion {conversion_id}'s local reservation has expired, so the hub cannot post "
                           f"it: requeue it instead (the saga then reverses the {row.remote_leg} at the partner)",
                           slug="reservation-expired") from None
        state, action, failure = COMPLETED, "applied", None
    else:
        ledger.void_pending(session, row.local_leg, by)
        state, action, failure = FAILED, "not_applied", NOT_APPLIED_AFTER_REVIEW
    # The reason is free text (it could name a person): sealed in the note, hashed in the trail.
    review_notes.add(session, review_notes.CONVERSION, conversion_id, action, reason=reason, by=by,
                     in_review_for=row.failure)
    trail.record(session, actor=by, action="conversion.resolve", target=f"conversion:{conversion_id}",
                 before={"state": NEEDS_REVIEW}, after={"state": state, "applied": applied,
                                                        **trail.reason_digest(reason)})
    return _end(session, conversion_id, state, failure=failure)


def needing_review(session: Session) -> list[Conversion]:
    """Conversions waiting for a person, oldest first."""
    return list(session.scalars(select(Conversion).where(Conversion.state == NEEDS_REVIEW)
                                .order_by(Conversion.created_at)))
