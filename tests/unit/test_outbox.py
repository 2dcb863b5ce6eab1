"""The transactional outbox: messages stay due until completed, whatever the broker does."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from hub.db import utcnow
from hub.notify import outbox
from hub.notify.outbox import OutboxMessage

TOPIC = "test.outbox"


@pytest.fixture
def keys(db):
    keys = [uuid.uuid4().hex for _ in range(3)]
    db.write(lambda s: [outbox.enqueue(s, TOPIC, k, {"k": k}) for k in keys])
    yield keys
    db.write(lambda s: s.execute(delete(OutboxMessage).where(OutboxMessage.topic == TOPIC)))


def dispatch(db, publish, lease=timedelta(seconds=60)):
    # Only this test's topic: other tests' messages may be due in the same database.
    def only_ours(topic, payloads, request_ids):
        if topic == TOPIC:
            for payload in payloads:
                publish(payload)
    return db.write(lambda s: outbox.dispatch_due(s, only_ours, lease, limit=10_000))


def test_a_broker_failure_leaves_every_message_due(db, keys):
    sent = []

    def flaky(payload):
        if len(sent) == 1:
            raise ConnectionError("broker down")
        sent.append(payload["k"])

    with pytest.raises(ConnectionError):
        dispatch(db, flaky)
    again = []
    dispatch(db, lambda p: again.append(p["k"]))
    assert sorted(again) == sorted(keys)  # the batch rolled back: all republished


def test_published_messages_come_due_again_after_their_lease_until_completed(db, keys):
    dispatch(db, lambda p: None, lease=timedelta(seconds=60))
    seen = []
    dispatch(db, lambda p: seen.append(p["k"]))
    assert seen == []  # within the lease
    db.write(lambda s: s.execute(OutboxMessage.__table__.update()
                                 .where(OutboxMessage.topic == TOPIC).values(available_at=utcnow())))
    db.write(lambda s: outbox.complete(s, TOPIC, keys[0]))
    dispatch(db, lambda p: seen.append(p["k"]))
    assert sorted(seen) == sorted(keys[1:])  # lost ones republished; the completed one not
    with db.read() as s:
        counts = dict(s.execute(select(OutboxMessage.key, OutboxMessage.publish_count)
                                .where(OutboxMessage.topic == TOPIC)).all())
    assert counts == {keys[0]: 1, keys[1]: 2, keys[2]: 2}


def test_reschedule_moves_only_open_messages(db, keys):
    later = utcnow() + timedelta(hours=1)
    db.write(lambda s: outbox.reschedule(s, TOPIC, keys[0], later))
    seen = []
    dispatch(db, lambda p: seen.append(p["k"]))
    assert sorted(seen) == sorted(keys[1:])


def test_backoff_grows_with_jitter_and_stays_under_the_cap():
    for attempt in range(1, 20):
        delay = outbox.backoff(attempt, base=2.0, cap=600.0).total_seconds()
        assert 1.0 <= delay <= min(600.0, 2.0 * 2 ** (attempt - 1))
    assert len({outbox.backoff(8, 2.0, 600.0) for _ in range(20)}) > 1


def test_a_row_enqueued_with_its_message_is_written_in_the_same_statement(db, monkeypatch):
    """A relayed order and its message: one round trip on PostgreSQL (two elsewhere)."""
    from hub import db as hub_db
    from hub.programs.models import Member
    from tests.conftest import statements_run

    opened, driver_cursor = [], hub_db._driver_cursor
    monkeypatch.setattr(hub_db, "_driver_cursor", lambda *a, **k: opened.append(1) or driver_cursor(*a, **k))
    member, key = uuid.uuid4(), uuid.uuid4().hex
    with statements_run(db) as seen:
        db.write(lambda s: outbox.enqueue(s, TOPIC, key, {"k": key},
                                          with_row=(Member.__table__, {"id": member, "created_at": utcnow()})))
    assert len(opened) + len([q for q in seen if q.startswith("insert")]) == (1 if db.dialect == "postgresql" else 2)
    with db.read() as s:
        assert s.scalar(select(Member.id).where(Member.id == member)) == member
        assert s.scalar(select(OutboxMessage.payload).where(OutboxMessage.key == key)) == {"k": key}
    db.write(lambda s: (s.execute(delete(OutboxMessage).where(OutboxMessage.key == key)),
                        s.execute(delete(Member).where(Member.id == member))))


def test_a_row_whose_columns_clash_with_the_message_s_parameters_is_refused():
    from sqlalchemy import Column, Integer, MetaData, Table

    clashing = Table("clashing", MetaData(), Column("new_topic", Integer, primary_key=True))
    with pytest.raises(ValueError, match="clash"):
        outbox._insert_and_notify_with(clashing)


def test_a_topic_may_carry_more_payloads_per_message_than_the_default(db):
    """hub.tasks.PER_MESSAGE: relay tasks carry 40; any other topic the default."""
    keys = [uuid.uuid4().hex for _ in range(outbox.PER_MESSAGE + 5)]
    other = "test.outbox.other"
    db.write(lambda s: [outbox.enqueue(s, t, k, {"k": k}) for k in keys for t in (TOPIC, other)])
    sizes: dict[str, list[int]] = {TOPIC: [], other: []}

    def publish(topic, payloads, request_ids):
        if topic in sizes:
            sizes[topic].append(len(payloads))

    try:
        db.write(lambda s: outbox.dispatch_due(s, publish, timedelta(seconds=60), limit=10_000,
                                               per_message={TOPIC: 40}))
        assert sizes == {TOPIC: [25], other: [20, 5]}
    finally:
        db.write(lambda s: s.execute(delete(OutboxMessage).where(OutboxMessage.topic.in_([TOPIC, other]))))
