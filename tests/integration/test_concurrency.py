"""Concurrent duplicates never earn twice (service level, many threads, one database)."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from hub import idempotency
from hub.actor import Actor
from hub.errors import Conflict
from hub.programs import earning
from hub.programs.models import Partner as PartnerRow

THREADS = 8


def actor_of(partner, db) -> Actor:
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))
    return Actor(partner.client_id, partner_id, frozenset({"transactions:write"}))


def test_concurrent_duplicate_purchases_earn_once(partner, db):
    member = partner.enrol()
    actor = actor_of(partner, db)
    body = partner.purchase_body(member, "10000", txn=f"race-{uuid.uuid4().hex[:8]}")

    def post(_):
        return db.write(lambda s: earning.earn(s, actor, [(0, body)]))[0].status

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(post, range(THREADS)))
    assert sorted(statuses) == ["created"] + ["duplicate"] * (THREADS - 1)
    assert partner.balance(member)["posted"] == 10


def test_concurrent_requests_with_one_idempotency_key_run_once(partner, db):
    member = partner.enrol()
    actor = actor_of(partner, db)
    key = f"key-{uuid.uuid4().hex}"
    fingerprint = "same-request"

    def post(i):
        body = partner.purchase_body(member, "10000", txn=f"idem-{i}")  # would earn again if run twice
        work = lambda s: (201, {"status": earning.earn(s, actor, [(0, body)])[0].status})
        try:
            return idempotency.run(db, actor.client_id, key, fingerprint, work).replayed
        except Conflict:
            return "in-progress"  # PostgreSQL: told to retry while the first is running

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(post, range(THREADS)))
    assert outcomes.count(False) == 1, outcomes
    assert partner.balance(member)["posted"] == 10
