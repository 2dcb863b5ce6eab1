"""The relay: carries one redemption to its provider and records the outcome.

Exactly once in effect, over at-least-once delivery (design.md, "Running"):
- the provider's idempotency reference is derived from the redemption id, so a repeated call
  never places a second order;
- a short lease on the redemption keeps two deliveries of the task from calling at once;
- no database transaction is open during the provider call;
- while nothing may have reached the provider (`maybe_placed` false: every place_order so far
  was answered RETRY, "not received"), an attempt places the order directly. Once something
  may have (the flag is set), every attempt first asks the provider about the reference, so
  an order placed by a call whose answer was lost (timeout, 5xx, a killed worker) is found,
  and places it again (same reference) only on NOT_FOUND;
- giving up (out of attempts or past the deadline) without a definitive answer voids the
  reservation only if the order was never maybe placed; otherwise the order waits for review
  with its points still reserved.

`maybe_placed` is sticky: set in the outcome transaction (folded into the UPDATE that
records the outcome, no statement of its own) by the first place_order whose answer is not a
definitive "not placed" (anything but RETRY or FAILED: UNKNOWN, PENDING, FULFILLED), by a
claim that takes over an expired lease (its attempt recorded nothing: it may have been
placing the order when its answer was lost or its worker died), and by `requeue`; never
cleared. A lookup cannot clear it either: NOT_FOUND only says the provider has no record
*yet*, and a request sent earlier may still land. So an order once maybe placed is never
voided without a person.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import JSON, String, Text, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql.dml import Update
from sqlalchemy.orm import Session

from hub import ledger
from hub.audit import review_notes, trail
from hub.db import Database, as_columns, bind_values, one_of, run, unnest_rows, utcnow, values_shape
from hub.errors import Conflict
from hub.notify import outbox, webhooks
from hub.notify.policy import RelayPolicy
from hub.notify.breaker import Breaker
from hub.observability import context, metrics
from hub.programs.models import Program
from hub.rewards import catalog, redemptions
from hub.rewards.models import (
    FAILED, FULFILLED, NEEDS_REVIEW, PENDING, ProviderEvent, Redemption, RedemptionLeg, Reward,
)
from hub.rewards.providers import Kind, OrderRequest, Outcome, Provider, Recipient, Status, WebhookEvent

log = logging.getLogger(__name__)
CAUSED_BY = "relay"
# A refunded review's `failure`, the partner's to read: a fixed text, never ops' free-text
# reason or who gave it (docs/webhooks.md).
REFUNDED_AFTER_REVIEW = "refunded after review"

# The relay's statements, built once (Core: no ORM unit of work on this path).
_redemptions = Redemption.__table__
_rewards = Reward.__table__
_legs = RedemptionLeg.__table__


def _claim_statement(shape: str):
    """Takes the lease of the orders named by "rids" (shaped as hub.db.one_of) and returns
    what their provider calls need, in one statement. The product comes through a scalar
    subquery: SQLite's RETURNING cannot name an UPDATE ... FROM table. A lease still set but
    expired belongs to an attempt that never recorded its outcome (it ran past its lease, or
    its worker died while it may have been placing the order): the order is then maybe
    placed. (SET expressions read the row as it was before the UPDATE, on PostgreSQL and
    SQLite alike; RETURNING gives the new values.)"""
    return (
        update(_redemptions)
        .where(
            one_of(_redemptions.c.id, "rids", shape),
            _redemptions.c.state == PENDING,
            or_(_redemptions.c.lease_until.is_(None), _redemptions.c.lease_until < bindparam("now")),
        )
        .values(lease_until=bindparam("until"), attempts=_redemptions.c.attempts + 1,
                maybe_placed=or_(_redemptions.c.maybe_placed, _redemptions.c.lease_until.is_not(None)))
        .returning(
            _redemptions.c.id, _redemptions.c.attempts, _redemptions.c.provider, _redemptions.c.amount_minor,
            _redemptions.c.currency, _redemptions.c.recipient_sealed, _redemptions.c.relay_deadline,
            _redemptions.c.maybe_placed,
            select(_rewards.c.product).where(_rewards.c.id == _redemptions.c.reward_id)
            .scalar_subquery().label("product"),
            _redemptions.c.member_id, _redemptions.c.program_id,
        )
    )


_CLAIM = {shape: _claim_statement(shape) for shape in ("one", "in", "array")}
# Once an answer of a batch is in, how long the others may take to join its wave (seconds).
# A wave of fulfilled orders costs about as many statements as one order (record_fulfilled),
# so waiting a little for more saves the database and the worker far more than it delays.
WAVE_GATHER = 0.02
_STATE = select(_redemptions.c.state).where(_redemptions.c.id == bindparam("rid"))
# The order, locked, its reward's kind, and whether it is pooled: one probe of the legs'
# primary key in the same statement, so an unpooled order costs no extra round trip.
_LOCKED_COLUMNS = (
    _redemptions.c.state, _redemptions.c.attempts, _redemptions.c.transfer_id, _redemptions.c.reward_id,
    _redemptions.c.maybe_placed, _rewards.c.kind,
    exists().where(_legs.c.redemption_id == _redemptions.c.id).label("pooled"),
    _redemptions.c.program_id, _redemptions.c.member_id, _redemptions.c.points, _rewards.c.code,
    _redemptions.c.failure,
)


def _locking(*columns, where):
    return (select(*columns).join_from(_redemptions, _rewards, _rewards.c.id == _redemptions.c.reward_id)
            .where(where).with_for_update(of=_redemptions))


_LOCK = _locking(*_LOCKED_COLUMNS, where=_redemptions.c.id == bindparam("rid"))
# A wave's orders (hub.db.one_of), each with its id, locked in id order.
_LOCK_WAVE = {shape: _locking(_redemptions.c.id, *_LOCKED_COLUMNS, where=one_of(_redemptions.c.id, "rids", shape))
              .order_by(_redemptions.c.id) for shape in ("one", "in", "array")}
# A pooled order's reservations, one per leg (its own transfer_id is the first of them).
_LEG_TRANSFERS = select(_legs.c.transfer_id).where(_legs.c.redemption_id == bindparam("rid"))


class _Locked(NamedTuple):
    state: str
    attempts: int
    transfer_id: int
    reward_id: uuid.UUID
    maybe_placed: bool
    kind: str
    pooled: bool
    program_id: uuid.UUID
    member_id: uuid.UUID
    points: int
    reward_code: str
    failure: str | None


def _reservations(session: Session, redemption_id: uuid.UUID, order: _Locked) -> list[int]:
    """Every reservation the order holds: resolved together, so that a pooled order's legs
    are all posted or all voided."""
    if not order.pooled:
        return [order.transfer_id]
    rows, _ = run(session.connection(), _LEG_TRANSFERS, {"rid": redemption_id})
    return [transfer_id for (transfer_id,) in rows]


@dataclass(frozen=True)
class _Claim:
    redemption_id: uuid.UUID
    provider: str
    order: OrderRequest
    maybe_placed: bool  # as claimed: look the reference up before placing
    attempts: int
    give_up: bool
    member_id: uuid.UUID
    program_id: uuid.UUID


class _Answer(NamedTuple):
    """A provider's answer to one claimed order, to record."""
    claim: _Claim
    outcome: Outcome
    placed: bool
    request_id: str | None


class _Unhealthy(Exception):
    """An answer that counts against the provider's breaker (its outcome rides along)."""

    def __init__(self, outcome: Outcome, placed: bool):
        self.outcome = outcome
        self.placed = placed


class Relay:
    def __init__(self, db: Database, providers: Mapping[str, Provider],
                 policy: RelayPolicy = RelayPolicy(), parallel: int = 16):
        self.db = db
        self.providers = providers
        self.policy = policy
        # Per process: a worker that sees a provider failing stops calling it for a while.
        self.breakers = {name: Breaker(policy.breaker_failures, policy.breaker_reset) for name in providers}
        self._parallel = parallel
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def run(self, redemption_id: uuid.UUID) -> str:
        """One attempt. Returns the redemption's state afterwards (or 'busy' if another
        delivery holds the lease, 'done' if it was already resolved)."""
        return self.run_many([redemption_id])[0]

    def run_many(self, redemption_ids: Sequence[uuid.UUID],
                 request_ids: Mapping[uuid.UUID, str | None] | None = None) -> list[str]:
        """One attempt for each order: their leases taken in one transaction, then each
        order's provider call on its own, concurrently (the process's relay threads,
        `parallel` of them, are shared by every task), so that the orders of a batch do not
        wait for each other's provider. The answers are recorded as they come: those that
        arrived together in one transaction (`_record`). Returns when every attempt has
        ended; then raises the first error, if any (the task is retried: attempts already
        recorded find their order done, ones whose lease is still held are left to the
        outbox, as for a lost task). `request_ids`: the id of the request that placed each
        order, for its attempt's logs and provider calls."""
        request_ids = request_ids or {}
        claims = self.db.write(lambda s: self._claim(s, redemption_ids))
        taken = [claims[rid] for rid in redemption_ids if isinstance(claims[rid], _Claim)]
        errors: list[BaseException] = []
        if len(taken) == 1:
            claim = taken[0]
            claims.update(self._record([self._answer(claim, request_ids.get(claim.redemption_id))], errors))
        elif taken:
            running = {self._executor().submit(self._answer, c, request_ids.get(c.redemption_id)) for c in taken}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                if running:  # answers close behind join the wave: fewer, larger transactions
                    more, running = wait(running, timeout=WAVE_GATHER)
                    done |= more
                errors += [f.exception() for f in done if f.exception() is not None]
                claims.update(self._record([f.result() for f in done if f.exception() is None], errors))
        if errors:
            raise errors[0]
        return [claims[rid] for rid in redemption_ids]

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:  # built on first use: after a prefork worker's fork
                self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="relay")
            return self._pool

    def _answer(self, claim: _Claim, request_id: str | None) -> _Answer:
        """Call the provider (no transaction open meanwhile)."""
        with context.bound(request_id):
            started = time.perf_counter()
            outcome, placed = self._call(claim)
            metrics.relay_outcome(claim.provider, outcome.status.value, time.perf_counter() - started)
            log.info("redemption %s attempt %d: %s %s", claim.redemption_id, claim.attempts, outcome.status.value,
                     outcome.detail)
        return _Answer(claim, outcome, placed, request_id)

    def _record(self, answers: list[_Answer], errors: list[BaseException]) -> dict[uuid.UUID, str]:
        """Record these answers in one transaction: one commit for all of them. If that fails,
        each is recorded in a transaction of its own, so that one order's error holds back no
        other's outcome; errors are added to `errors`. Every wave locks its orders in id order
        and then their accounts in id order, so two waves cannot deadlock over them
        (`_record_wave`)."""
        answers = sorted(answers, key=lambda a: (a.claim.member_id, a.claim.program_id, a.claim.redemption_id))
        if len(answers) > 1:
            try:
                return self.db.write(lambda s: self._record_wave(s, answers))
            except OperationalError as exc:
                # The database, not an order: one by one would only wait as long again for each
                # (and after a commit whose outcome is unknown, could undo another delivery's
                # lease). The orders are left to their leases.
                errors.append(exc)
                return {}
            except Exception:  # noqa: BLE001  (recorded one by one below, which raises it again)
                log.warning("recording %d relay outcomes together failed; recording each alone", len(answers),
                            exc_info=True)
        states = {}
        for answer in answers:
            try:
                states[answer.claim.redemption_id] = self.db.write(lambda s: self._record_one(s, answer))
            except Exception as exc:  # noqa: BLE001  (raised by run_many once every attempt has ended)
                errors.append(exc)
        return states

    def _record_wave(self, session: Session, answers: list[_Answer]) -> dict[uuid.UUID, str]:
        """A wave of fulfilled orders (the usual case) is recorded together; any other, one
        order after the other, once its orders and then their accounts are locked in the
        order a wave of fulfilled orders takes them (orders by id, accounts by id)."""
        rids = [a.claim.redemption_id for a in answers]
        orders = _lock_wave(session, rids)
        if all(a.outcome.status is Status.FULFILLED for a in answers):
            states = record_fulfilled(session, orders, [Fulfilled(a.claim.redemption_id, a.outcome, a.placed,
                                                                  a.request_id) for a in answers])
            if states is not None:
                return states
        ledger.lock_reserved_accounts(session, redemptions.TRANSFER_REF, [str(rid) for rid in rids])
        return {a.claim.redemption_id: self._record_one(session, a) for a in answers}

    def _record_one(self, session: Session, answer: _Answer) -> str:
        with context.bound(answer.request_id):  # the outcome's webhook and logs carry its request's id
            return record(session, answer.claim.redemption_id, answer.outcome, self.policy,
                          give_up=answer.claim.give_up, placed=answer.placed)

    def _claim(self, session: Session, redemption_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, _Claim | str]:
        """Each order's claim, or 'busy' (another delivery holds its lease) or 'done'."""
        now = utcnow()
        conn = session.connection()
        shape = values_shape(conn, redemption_ids, by_key=True)
        taken, _ = run(conn, _CLAIM[shape], {"rids": bind_values(shape, list(redemption_ids)), "now": now,
                                             "until": now + self.policy.lease})
        claims: dict[uuid.UUID, _Claim | str] = {row[0]: self._claim_of(row, now) for row in taken}
        for redemption_id in redemption_ids:
            if redemption_id not in claims:
                claims[redemption_id] = self._untaken(session, redemption_id)
        return claims

    def _claim_of(self, row, now) -> _Claim:
        (redemption_id, attempts, provider, amount_minor, currency, recipient_sealed, relay_deadline, maybe_placed,
         product, member_id, program_id) = row
        recipient = redemptions.unseal(recipient_sealed)
        order = OrderRequest(
            reference=redemptions.reference(redemption_id),
            product=product,
            amount_minor=amount_minor,
            currency=currency,
            recipient=Recipient(recipient["email"], recipient.get("name", "")),
        )
        give_up = attempts >= self.policy.max_attempts or now >= relay_deadline
        return _Claim(redemption_id, provider, order, bool(maybe_placed), attempts, give_up, member_id, program_id)

    @staticmethod
    def _untaken(session: Session, redemption_id: uuid.UUID) -> str:
        ((state,),), _ = run(session.connection(), _STATE, {"rid": redemption_id})
        if state != PENDING:
            outbox.complete(session, redemptions.RELAY_TOPIC, str(redemption_id))
            return "done"
        return "busy"

    def _call(self, claim: _Claim) -> tuple[Outcome, bool]:
        """Ask the provider. Returns the outcome and whether this attempt placed the order and
        got no definitive "not placed" (it may exist: the order is maybe placed from now on)."""
        provider = self.providers.get(claim.provider)
        if provider is None:
            return Outcome(Status.RETRY, detail=f"provider {claim.provider} is not configured"), False
        breaker = self.breakers[claim.provider]
        if not breaker.admit():
            return (Outcome(Status.RETRY, detail="circuit open", retry_after=self.policy.breaker_reset),
                    False)  # nothing sent
        try:
            answer = _ask(provider, claim)
        except _Unhealthy as unhealthy:
            breaker.failure()
            return unhealthy.outcome, unhealthy.placed
        except BaseException:
            breaker.abandon()  # a bug of ours says nothing about the provider's health
            raise
        breaker.success()
        return answer


# place_order's answers that say it placed nothing: any other may have placed the order.
_NOT_PLACED = (Status.RETRY, Status.FAILED)


def _ask(provider: Provider, claim: _Claim) -> tuple[Outcome, bool]:
    if claim.maybe_placed:
        # Something may have reached the provider: never place again before it says it has no
        # record of the reference.
        outcome = provider.lookup(claim.order.reference)
        if outcome.status is not Status.NOT_FOUND:
            return _checked(outcome, placed=False)
    # Else every place_order so far was answered RETRY: nothing reached the provider.
    outcome = provider.place_order(claim.order)
    return _checked(outcome, placed=outcome.status not in _NOT_PLACED)


def _checked(outcome: Outcome, placed: bool) -> tuple[Outcome, bool]:
    if outcome.status in (Status.UNKNOWN, Status.RETRY):
        raise _Unhealthy(outcome, placed)  # counts against the breaker
    return outcome, placed


def record(session: Session, redemption_id: uuid.UUID, outcome: Outcome,
           policy: RelayPolicy, *, give_up: bool = False, placed: bool = False) -> str:
    """Apply a provider's answer to a pending redemption, in one transaction with the ledger.
    Used by the relay and by provider webhooks; a redemption already resolved is left alone.
    A pooled order's reservations (one per leg) are posted, or voided, all together.

    `placed`: this attempt placed the order without a definitive "not placed"; it sets the
    sticky maybe_placed, in the UPDATE that records the outcome anyway. `give_up`: the last
    attempt; an open answer then voids the order (failed) if it was never maybe placed, and
    leaves it for review (points still reserved) otherwise."""
    # One read (the order, locked, and its reward's kind) and one write of the order, after
    # the ledger's.
    rows, _ = run(session.connection(), _LOCK, {"rid": redemption_id})
    if not rows:
        return "unknown"
    order = _Locked(*rows[0])
    topic, key = redemptions.RELAY_TOPIC, str(redemption_id)
    if order.state != PENDING:
        outbox.complete(session, topic, key)
        return order.state
    now = utcnow()
    status = outcome.status
    changes: dict = {}
    if placed and not order.maybe_placed:
        changes["maybe_placed"] = True  # every way out below makes one UPDATE: it rides along
    if status in (Status.RETRY, Status.UNKNOWN, Status.PENDING, Status.NOT_FOUND) and give_up:
        if not (placed or order.maybe_placed):
            # Every place_order was answered "not received": no order exists at the provider.
            status = Status.FAILED
            outcome = Outcome(Status.FAILED, detail=f"gave up: {outcome.detail or outcome.status.value}")
        else:
            failure = f"no definitive answer after {order.attempts} attempts: {outcome.detail}"[:500]
            _change(session, redemption_id, **changes, state=NEEDS_REVIEW, failure=failure, lease_until=None)
            outbox.complete(session, topic, key)
            log.warning("redemption %s needs review: %s", redemption_id, failure)
            return NEEDS_REVIEW
    if outcome.provider_order_id:
        changes["provider_order_id"] = outcome.provider_order_id
    if status is Status.FULFILLED:
        try:
            ledger.post_pending_many(session, _reservations(session, redemption_id, order), CAUSED_BY)
        except ledger.PendingExpired:
            # Delivered after the hold ran out (a very late webhook): ops must settle it.
            _change(session, redemption_id, **changes, state=NEEDS_REVIEW,
                    failure="the provider fulfilled the order after its reservation expired",
                    delivery_sealed=redemptions.seal(dict(outcome.delivery or {})))
            outbox.complete(session, topic, key)
            return NEEDS_REVIEW
        delivery = dict(outcome.delivery or {})
        if order.kind == Kind.DONATION.value:
            changes["receipt"] = delivery
        else:
            changes["delivery_sealed"] = redemptions.seal(delivery)
        state = FULFILLED
    elif status is Status.FAILED:
        _give_back(session, _reservations(session, redemption_id, order), order, CAUSED_BY)
        changes["failure"] = (outcome.detail or "the provider refused the order")[:500]
        state = FAILED
    else:
        # Not resolved yet: try again after a backoff (or when the provider asked us to).
        delay = outbox.backoff(order.attempts, policy.backoff_base, policy.backoff_cap)
        if outcome.retry_after:
            delay = max(delay, timedelta(seconds=outcome.retry_after))
        _change(session, redemption_id, **changes, lease_until=None)
        outbox.reschedule(session, topic, key, now + delay)
        return PENDING
    _change(session, redemption_id, **changes, state=state, resolved_at=now, lease_until=None)
    outbox.complete(session, topic, key)
    _announce(session, redemption_id, order, state, changes.get("failure"))
    return state


# None binds as SQL NULL (the column's own type would send a JSON null, which COALESCE keeps).
_RECEIPT = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# A fulfilled order of a wave. A pending order has no delivery yet, but one requeued after a
# late fulfilment does: each column keeps its value where this kind of reward sets none, as
# `record` leaves it. On PostgreSQL one statement for the whole wave, the orders' values
# bound as arrays (hub.db.unnest_rows); on SQLite one execution per order.
_FULFILLED_VALUES = ("id", "maybe_placed", "provider_order_id", "delivery_sealed", "receipt")


def _fulfil(placed, order_id, sealed, receipt) -> dict:
    return dict(state=FULFILLED, resolved_at=bindparam("now"), lease_until=None,
                maybe_placed=or_(_redemptions.c.maybe_placed, placed),
                provider_order_id=func.coalesce(order_id, _redemptions.c.provider_order_id),
                delivery_sealed=func.coalesce(sealed, _redemptions.c.delivery_sealed),
                receipt=func.coalesce(receipt, _redemptions.c.receipt))


# The arrays are bound by the columns' names: `run` compiles the UPDATE without column keys,
# so they are not taken for SET values (through SQLAlchemy they would be: the SQLite form
# binds its values as v_<column>).
_fulfilled = unnest_rows(_redemptions, _FULFILLED_VALUES, receipt=_RECEIPT)
_FULFIL_ALL = update(_redemptions).where(_redemptions.c.id == _fulfilled.c.id).values(
    _fulfil(_fulfilled.c.maybe_placed, _fulfilled.c.provider_order_id, _fulfilled.c.delivery_sealed,
            _fulfilled.c.receipt))
_FULFIL_EACH = update(_redemptions).where(_redemptions.c.id == bindparam("v_id")).values(
    _fulfil(bindparam("v_maybe_placed"), bindparam("v_provider_order_id", type_=String),
            bindparam("v_delivery_sealed", type_=Text), bindparam("v_receipt", type_=_RECEIPT)))


def _lock_wave(session: Session, redemption_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, _Locked]:
    """A wave's orders, locked in id order, by id (those that exist)."""
    conn = session.connection()
    rids = sorted(redemption_ids)
    shape = values_shape(conn, rids, by_key=True)
    rows, _ = run(conn, _LOCK_WAVE[shape], {"rids": bind_values(shape, rids)})
    return {row[0]: _Locked(*row[1:]) for row in rows}


class Fulfilled(NamedTuple):
    """A provider's answer that an order is fulfilled, to record with others (`record_fulfilled`)."""
    redemption_id: uuid.UUID
    outcome: Outcome
    placed: bool
    request_id: str | None


def record_fulfilled(session: Session, orders: Mapping[uuid.UUID, _Locked],
                     answers: Sequence[Fulfilled]) -> dict[uuid.UUID, str] | None:
    """What `record` does for each of these FULFILLED answers, for all of them at once. Their
    orders, locked by `_lock_wave`, are `orders`; then their reservations are posted in one
    ledger call, and the orders, their outbox messages and the partners' endpoints (per
    program) are each written or read once, instead of once per order. Their states; or
    None, with nothing written, when an order is not the plain case (missing, no longer
    pending, pooled, or its reservation expired): the caller then records each with
    `record`, in the same transaction."""
    rids = sorted(answer.redemption_id for answer in answers)
    if any(rid not in orders for rid in rids) or any(orders[rid].state != PENDING or orders[rid].pooled
                                                      for rid in rids):
        return None
    try:
        ledger.post_pending_many(session, [orders[rid].transfer_id for rid in rids], CAUSED_BY)
    except ledger.PendingExpired:  # checked before anything is written
        return None
    fulfilled = []
    for answer in answers:
        delivery = dict(answer.outcome.delivery or {})
        donation = orders[answer.redemption_id].kind == Kind.DONATION.value
        fulfilled.append({"id": answer.redemption_id, "maybe_placed": answer.placed,
                          "provider_order_id": answer.outcome.provider_order_id or None,  # as `record`: none kept
                          "delivery_sealed": None if donation else redemptions.seal(delivery),
                          "receipt": delivery if donation else None})
    conn, now = session.connection(), utcnow()
    if conn.dialect.name == "postgresql":
        run(conn, _FULFIL_ALL, {"now": now, **as_columns(fulfilled, _FULFILLED_VALUES)})
    else:
        conn.execute(_FULFIL_EACH, [{"now": now, **{f"v_{k}": v for k, v in f.items()}} for f in fulfilled])
    outbox.complete_many(session, redemptions.RELAY_TOPIC, [str(rid) for rid in rids])
    by_program: dict[uuid.UUID, list[Fulfilled]] = {}
    for answer in answers:
        by_program.setdefault(orders[answer.redemption_id].program_id, []).append(answer)
    for program_id, announced in sorted(by_program.items()):
        endpoints = webhooks.program_endpoints(session, [program_id])  # none: nothing to announce
        for answer in announced if endpoints else ():
            with context.bound(answer.request_id):  # the webhook carries its order's request id
                _announce(session, answer.redemption_id, orders[answer.redemption_id], FULFILLED, None, endpoints)
    return dict.fromkeys(rids, FULFILLED)


def _give_back(session: Session, reservations: list[int], order: _Locked, by: str) -> None:
    """A failed order: its points back (every reservation voided) and its reward's stock."""
    ledger.void_pending_many(session, reservations, by)
    catalog.return_stock(session, order.reward_id)


def _announce(session: Session, redemption_id: uuid.UUID, order: _Locked, state: str, failure: str | None,
              endpoints: list[tuple] | None = None) -> None:
    """redemption.fulfilled / redemption.failed to the program's partner, with the outcome.
    `endpoints`: the partner's, if already read (webhooks.program_endpoints)."""
    def data() -> dict:
        program = session.scalar(select(Program.code).where(Program.id == order.program_id))
        return {"redemption_id": str(redemption_id), "member_id": str(order.member_id), "program": program,
                "reward": order.reward_code, "points": order.points, "state": state, "failure": failure}

    if endpoints is None:
        endpoints = webhooks.program_endpoints(session, [order.program_id])
    webhooks.emit_to(session, endpoints, f"redemption.{state}", data)


def _change(session: Session, redemption_id: uuid.UUID, **values) -> None:
    """UPDATE the order's columns named in `values`: one statement per set of names, built
    once, so that `run` sends it straight to the driver."""
    names = tuple(sorted(values))
    statement = _changes.get(names)
    if statement is None:
        statement = _changes[names] = (
            update(_redemptions).where(_redemptions.c.id == bindparam("rid"))
            .values({name: bindparam(f"v_{name}") for name in names})
        )
    run(session.connection(), statement, {"rid": redemption_id, **{f"v_{k}": v for k, v in values.items()}})


_changes: dict[tuple[str, ...], Update] = {}


def handle_event(session: Session, provider: str, event: WebhookEvent,
                 policy: RelayPolicy) -> str:
    """A verified provider webhook: applied once per event id; a replay is ignored."""
    try:
        with session.begin_nested():
            session.add(ProviderEvent(provider=provider, event_id=event.event_id[:200]))
    except IntegrityError:
        return "replayed"
    if event.outcome is None:
        return "ignored"
    redemption_id = redemptions.redemption_id_of(event.reference or "")
    if redemption_id is None and event.outcome.provider_order_id:
        # Some providers' events name only their own order id.
        redemption_id = session.scalar(select(Redemption.id).where(
            Redemption.provider == provider, Redemption.provider_order_id == event.outcome.provider_order_id))
    if redemption_id is None:
        return "ignored"
    if event.outcome.status not in (Status.FULFILLED, Status.FAILED):
        return "ignored"  # progress reports: the relay keeps polling
    if session.scalar(select(Redemption.provider).where(Redemption.id == redemption_id)) != provider:
        return "ignored"  # not an order this provider holds
    return record(session, redemption_id, event.outcome, policy)


def requeue(session: Session, redemption_id: uuid.UUID, *, by: str, reason: str | None = None) -> None:
    """Give an order that needs review back to the relay, with a fresh count of attempts.
    It is maybe placed (a person looked at it; the flag is never cleared), so its first new
    attempt looks the reference up: nothing is ordered twice, nothing voided without an answer.
    A reason, if given, is kept as a review note (hub.audit.review_notes), with the failure
    that put the order in review."""
    redemption = session.scalar(select(Redemption).where(Redemption.id == redemption_id).with_for_update())
    if redemption is None or redemption.state != NEEDS_REVIEW:
        raise Conflict(f"redemption {redemption_id} does not need review", slug="not-in-review")
    in_review_for = redemption.failure
    redemption.state = PENDING
    redemption.failure = None
    redemption.maybe_placed = True  # already set on most ways into review; stated, not assumed
    redemption.lease_until = None  # not a lost attempt's: the review ended it
    redemption.attempts = 0
    now = utcnow()
    redemption.relay_deadline = max(redemption.relay_deadline, now + timedelta(hours=1))
    outbox.enqueue(session, redemptions.RELAY_TOPIC, str(redemption_id), {"redemption_id": str(redemption_id)})
    noted = review_notes.note_requeue(session, review_notes.REDEMPTION, redemption_id, reason=reason, by=by,
                                      in_review_for=in_review_for)
    trail.record(session, actor=by, action="redemption.requeue", target=f"redemption:{redemption_id}",
                 before={"state": NEEDS_REVIEW}, after={"state": PENDING, **noted})


def resolve(session: Session, redemption_id: uuid.UUID, *, fulfilled: bool, reason: str, by: str) -> str:
    """Settle an order that needs review by what ops learned from the provider: fulfilled
    (its reservations posted) or refunded (voided: the points go back, the stock too, state
    failed). The ledger records `by` as the cause. `failure` is what the partner reads (the
    API, the redemption.failed webhook): null once fulfilled, REFUNDED_AFTER_REVIEW once
    refunded; who resolved it and why stay in the hub: the audit entry (its actor, the
    reason's hash) and a review note that only ops read (hub.audit.review_notes), with the
    failure that put the order in review. A reservation that has expired cannot be posted:
    refused (refund it, or requeue it). Like every resolution, each reservation resolves once
    (the ledger's unique pending_id), so a second resolve is refused here or there. Audited
    as `by`, in the same transaction."""
    reason = review_notes.required(reason)
    rows, _ = run(session.connection(), _LOCK, {"rid": redemption_id})
    if not rows or rows[0][0] != NEEDS_REVIEW:
        raise Conflict(f"redemption {redemption_id} does not need review", slug="not-in-review")
    order = _Locked(*rows[0])
    reservations = _reservations(session, redemption_id, order)
    if fulfilled:
        try:
            ledger.post_pending_many(session, reservations, by)
        except ledger.PendingExpired:
            raise Conflict(f"redemption {redemption_id}'s reservation has expired, so the hub cannot post it: "
                           "refund it or requeue it", slug="reservation-expired") from None
        state = FULFILLED
    else:
        _give_back(session, reservations, order, by)
        state = FAILED
    failure = None if fulfilled else REFUNDED_AFTER_REVIEW
    _change(session, redemption_id, state=state, failure=failure, resolved_at=utcnow(), lease_until=None)
    _announce(session, redemption_id, order, state, failure)
    action = "mark_fulfilled" if fulfilled else "refund"
    # The reason is free text (it could name a person): sealed in the note, hashed in the trail.
    review_notes.add(session, review_notes.REDEMPTION, redemption_id, action, reason=reason, by=by,
                     in_review_for=order.failure)
    trail.record(session, actor=by, action=f"redemption.{action}",
                 target=f"redemption:{redemption_id}", before={"state": NEEDS_REVIEW},
                 after={"state": state, "reservations": sorted(reservations), **trail.reason_digest(reason)})
    return state
