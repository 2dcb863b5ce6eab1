"""hub.idempotency.run's `read`: work's first read, made with the key's lock on PostgreSQL."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import BigInteger, bindparam, select

from hub import idempotency
from hub.db import prefetched

_READ = select(bindparam("v", type_=BigInteger).label("v"))


def test_work_finds_its_read_made_with_the_lock_on_postgresql_and_a_replay_skips_work(db):
    owner, key, calls = f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, []

    def work(session):
        calls.append(prefetched(session, _READ, {"v": 7}))
        return 201, {"made": True}

    first = idempotency.run(db, owner, key, "fp", work, read=(_READ, {"v": 7}))
    again = idempotency.run(db, owner, key, "fp", work, read=(_READ, {"v": 7}))
    assert (first.status, first.body, first.replayed) == (201, {"made": True}, False)
    assert again.replayed and again.body == {"made": True}
    # Read ahead (and taken once) only where the lock has a round trip to share: PostgreSQL.
    assert calls == [(7,) if db.dialect == "postgresql" else None]


def test_a_read_whose_parameters_clash_with_the_keys_is_refused(db):
    clashing = select(bindparam("key", type_=BigInteger).label("v"))
    with pytest.raises(ValueError, match="key"):
        idempotency.run(db, "test", uuid.uuid4().hex, "fp", lambda s: (201, {}), read=(clashing, {"key": 1}))
