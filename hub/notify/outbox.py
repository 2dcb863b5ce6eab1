"""The transactional outbox (design.md, "Running"; brandur.org/job-drain).

A message is written in the same database transaction as the change that needs it, so
nothing external happens for work that did not commit. The dispatcher publishes due messages
to the broker and pushes their `available_at` forward by a lease: if the broker or a worker
loses the task, the message comes due again and is republished. A message ends only when
its consumer calls `complete` (in the transaction that records the outcome). Consumers are
idempotent, since a message may be delivered more than once.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Index, Integer, String, Table, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, BigId, JSONDoc, UTCDateTime, bind_values, one_of, run, utcnow, values_shape
from hub.observability import context


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "done_at", "available_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict] = mapped_column(JSONDoc)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The id of the API request that wrote the message (hub/observability/context.py): its
    # task's log records and outgoing calls carry it too.
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)


_outbox = OutboxMessage.__table__
# PostgreSQL: enqueue() notifies this channel, delivered when its transaction commits, so a
# dispatcher that LISTENs publishes at once instead of at its next poll.
NOTIFY_CHANNEL = "hub_outbox"


# Every column is given (`run` applies no column defaults), as "new_<column>".
_INSERT = insert(_outbox).values(
    {c.name: bindparam(f"new_{c.name}", type_=c.type) for c in _outbox.c if c.name != "id"}
)
# PostgreSQL: the insert and the notification in one round trip.
_INSERT_AND_NOTIFY = select(func.pg_notify(NOTIFY_CHANNEL, "")).select_from(
    _INSERT.returning(_outbox.c.id).cte("message")
)


def enqueue(session: Session, topic: str, key: str, payload: dict, *,
            with_row: tuple[Table, dict] | None = None) -> None:
    """Queue a message, in the caller's transaction. `with_row`: (table, row), a row that the
    message is about, inserted with it: on PostgreSQL in the same statement (a relayed order
    and its message cost one round trip). The row gives every column of the table."""
    now = utcnow()
    conn = session.connection()
    row = {"topic": topic, "key": key, "payload": payload, "available_at": now, "published_at": None,
           "publish_count": 0, "done_at": None, "created_at": now, "request_id": context.current()}
    params = {f"new_{name}": value for name, value in row.items()}
    if conn.dialect.name != "postgresql":
        if with_row is not None:
            run(conn, insert(with_row[0]), with_row[1])
        run(conn, _INSERT, params)
    elif with_row is None:
        run(conn, _INSERT_AND_NOTIFY, params)
    else:
        table, other = with_row
        run(conn, _insert_and_notify_with(table), {**params, **other})


@functools.cache
def _insert_and_notify_with(table: Table):
    """_INSERT_AND_NOTIFY with a row of `table` (every column, bound by its name) inserted in
    the same statement, as a data-modifying CTE (PostgreSQL runs it, referenced or not)."""
    if {c.name for c in table.c} & set(_INSERT_AND_NOTIFY.compile().binds):
        raise ValueError(f"{table.name}'s columns would clash with the message's parameters")
    row = insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in table.c}).cte(f"new_{table.name}")
    return _INSERT_AND_NOTIFY.add_cte(row)


# Built once: the relay runs these on every attempt.
_OPEN = (_outbox.c.topic == bindparam("t"), _outbox.c.key == bindparam("k"), _outbox.c.done_at.is_(None))
_RESCHEDULE = update(_outbox).where(*_OPEN).values(available_at=bindparam("at"))
# The open messages of some keys of a topic (hub.db.one_of): one order's, or a relay wave's.
_COMPLETE = {
    shape: update(_outbox).where(_outbox.c.topic == bindparam("t"), one_of(_outbox.c.key, "keys", shape),
                                 _outbox.c.done_at.is_(None)).values(done_at=bindparam("done"))
    for shape in ("one", "in", "array")
}


def reschedule(session: Session, topic: str, key: str, at: datetime) -> None:
    """Make the open message for `key` due again at `at` (a retry after a backoff)."""
    run(session.connection(), _RESCHEDULE, {"t": topic, "k": key, "at": at})


def complete(session: Session, topic: str, key: str) -> None:
    complete_many(session, topic, [key])


def complete_many(session: Session, topic: str, keys: Sequence[str]) -> None:
    """The open messages of these keys are done: one statement for all of them."""
    conn = session.connection()
    shape = values_shape(conn, keys, by_key=True)
    run(conn, _COMPLETE[shape], {"t": topic, "keys": bind_values(shape, list(keys)), "done": utcnow()})


def backoff(attempt: int, base: float, cap: float) -> timedelta:
    """Exponential backoff with full jitter (AWS architecture blog), in [base/2, cap]."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return timedelta(seconds=random.uniform(min(base / 2, ceiling), ceiling))


# Due messages, oldest first; built once (the dispatcher runs it several times a second).
_DUE = (
    select(_outbox.c.id, _outbox.c.topic, _outbox.c.payload, _outbox.c.request_id)
    .where(_outbox.c.done_at.is_(None), _outbox.c.available_at <= bindparam("now"))
    .order_by(_outbox.c.available_at)
    .limit(bindparam("n"))
)
_DUE_PG = _DUE.with_for_update(skip_locked=True)
# A batch's rows, published: pushed forward by the lease. The ids are one array parameter on
# PostgreSQL (one statement to parse and plan whatever the batch size), an expanding IN
# elsewhere.
_MARK = update(_outbox).values(
    published_at=bindparam("at"), publish_count=_outbox.c.publish_count + 1, available_at=bindparam("due"))
_MARK_PG = _MARK.where(_outbox.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
_MARK = _MARK.where(_outbox.c.id.in_(bindparam("ids", expanding=True)))


# Payloads a broker message carries at most, unless the dispatcher is given a topic's own
# (hub.tasks.PER_MESSAGE): a task that handles its payloads one after the other (webhook
# deliveries, logouts) must finish them all well within the broker's visibility timeout.
PER_MESSAGE = 20


def dispatch_due(
    session: Session,
    publish: Callable[[str, list[dict], list[str | None]], None],
    lease: timedelta,
    limit: int = 200,
    per_message: Mapping[str, int] | None = None,
) -> int:
    """Publish up to `limit` due messages; return how many were published.

    Messages of one topic go out together, up to `per_message[topic]` payloads (else
    PER_MESSAGE) in one broker message: what a broker message and a task cost is then paid
    once for several (a task runs each payload on its own, so the consumer's semantics stay
    per payload). `publish` gets the topic, the payloads and their request ids (None where
    none was bound).

    Rows are claimed with FOR UPDATE SKIP LOCKED (PostgreSQL), so several dispatchers can
    run. The published rows are pushed forward by their lease in one UPDATE, after the
    batch. A publish that raises (broker down) propagates: the caller's transaction rolls
    back, so the whole batch stays due (what went out before the failure goes out again,
    which consumers tolerate) and the caller tries again later.
    """
    per_message = per_message or {}
    now = utcnow()
    pg = session.get_bind().dialect.name == "postgresql"
    by_topic: dict[str, list] = {}
    for row in session.execute(_DUE_PG if pg else _DUE, {"now": now, "n": limit}).all():
        by_topic.setdefault(row.topic, []).append(row)
    published: list[int] = []
    for topic, rows in by_topic.items():
        size = per_message.get(topic, PER_MESSAGE)
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            publish(topic, [row.payload for row in chunk], [row.request_id for row in chunk])
            published += [row.id for row in chunk]
    if published:
        session.execute(_MARK_PG if pg else _MARK, {"ids": published, "at": now, "due": now + lease})
    return len(published)
