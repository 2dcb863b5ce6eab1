"""A worker's database connections (hub/tasks.py, hub/db.py:Gated): the relay records on its
task threads, and the saga's threads take turns at a few outcome slots, so its pool keeps
every connection they use open, and none is opened and closed per transaction (past its size,
a pool opens a connection for a checkout and closes it on return)."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import event, text

from hub import tasks
from hub.db import Database, Gated


@pytest.fixture
def opened(settings):
    """A Database with a pool of 4, and the count of connections it opened."""
    db = Database(settings.database_url, pool_size=4)
    count = {"connections": 0}

    @event.listens_for(db.engine, "connect")
    def _connected(*_):
        count["connections"] += 1

    yield db, count
    db.dispose()


def test_gated_transactions_run_at_most_slots_at_once_on_the_connections_the_pool_keeps(opened):
    db, count = opened
    gated = Gated(db, threading.BoundedSemaphore(4))
    lock, inside, peak = threading.Lock(), [0], [0]

    def transaction(session):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        session.execute(text("SELECT 1"))
        time.sleep(0.005)
        with lock:
            inside[0] -= 1

    def relay_thread(n):
        for i in range(6):
            if (n + i) % 3:
                with gated.read() as session:
                    transaction(session)
            else:
                gated.write(transaction)

    threads = [threading.Thread(target=relay_thread, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 4  # 24 threads, four transactions at a time
    assert count["connections"] <= 4  # each one on a kept connection


@pytest.mark.parametrize("pool,concurrency,task_threads,connections", [
    ("threads", 16, 16, 32),  # `hub worker`'s default: 16 task threads, 64 relay threads
    ("threads", 2, 2, 5),  # HUB_DB_POOL_SIZE (5 in the tests) when larger
    ("prefork", 8, 1, 5),  # a child runs one task at a time: 1 + 1, or HUB_DB_POOL_SIZE
])
def test_a_worker_keeps_a_connection_per_task_thread_and_per_outcome_slot(
        monkeypatch, settings, pool, concurrency, task_threads, connections):
    monkeypatch.setenv("HUB_WORKER_POOL", pool)
    monkeypatch.setenv("HUB_WORKER_CONCURRENCY", str(concurrency))
    assert tasks._task_threads() == task_threads  # and as many outcome slots for the saga
    assert tasks._parallel() == 4 * concurrency
    assert tasks._pool_size(replace(settings, db_pool_size=5)) == connections
