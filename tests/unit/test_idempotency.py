"""hub.idempotency.run's `read`: work's first read, made with the key's lock on PostgreSQL."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import BigInteger, bindparam, select

from hub import idempotency
from hub.db import prefetched
from hub.errors import Invalid

_READ = select(bindparam("v", type_=BigInteger).label("v"))


def test_work_finds_its_read_made_with_the_lock_on_postgresql_and_a_replay_skips_work(db):
    owner, key, calls = f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, []

    def work(session):
        calls.append(prefetched(session, _READ, {"v": 7}))
        return 201, {"made": True}

    first = idempotency.run(db, owner, key, "fp", work, read=lambda: (_READ, {"v": 7}))
    again = idempotency.run(db, owner, key, "fp", work, read=lambda: (_READ, {"v": 7}))
    assert (first.status, first.body, first.replayed) == (201, {"made": True}, False)
    assert again.replayed and again.body == {"made": True}
    # Read ahead (and taken once) only where the lock has a round trip to share: PostgreSQL.
    assert calls == [(7,) if db.dialect == "postgresql" else None]
    # The key used with another request is refused, read or not.
    with pytest.raises(Invalid, match="different request"):
        idempotency.run(db, owner, key, "other", work, read=lambda: (_READ, {"v": 7}))
    assert len(calls) == 1


def test_a_read_is_named_only_where_it_is_made_and_must_not_clash_with_the_keys_parameters(db):
    named = []

    def clashing():
        named.append(True)
        return select(bindparam("key", type_=BigInteger).label("v")), {"key": 1}

    def run():
        return idempotency.run(db, "test", uuid.uuid4().hex, "fp", lambda s: (201, {}), read=clashing)

    if db.dialect == "postgresql":
        with pytest.raises(ValueError, match="key"):
            run()
        assert named
    else:  # no lock to share a round trip with: the read is never named
        assert run().status == 201 and not named
