"""Scale-out on one machine, with real processes: two API processes (`hub serve`, each on its
own port) and two Celery workers (`hub worker`), with the dispatcher and the sandbox
providers, on one private PostgreSQL and one private Redis (hub.chaos.procs). Clients spread
their requests round-robin over both APIs; no faults. Both suites (SQLite and services) run
it the same way: the deployment brings its own database and broker."""
from __future__ import annotations

import copy
import re
import uuid

import pytest

from hub.chaos import checker
from hub.chaos.bank import deployment, run
from hub.chaos.workload import PROVIDERS
from hub.db import Database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    with deployment(apis=2, workers=2, members=24, workdir=tmp_path_factory.mktemp("scale-out")) as d:
        yield d, run(d, duration=8, seed=1, clients=4, nemesis=False)


def test_two_apis_and_two_workers_share_the_work(scaled):
    d, summary = scaled
    assert summary.violations == []
    assert summary.acknowledged["redeem"] > 0 and summary.acknowledged["convert"] > 0
    total = sum(summary.served.values())
    assert set(summary.served) == {"api0", "api1"}
    assert all(n >= total * 0.4 for n in summary.served.values()), summary.served  # round-robin: about half each
    # Each worker ran relay tasks (Celery logs every task it finished).
    finished = {name: len(re.findall(r"Task hub\.\S+ succeeded", d.hub.log(name))) for name in ("worker0", "worker1")}
    assert all(n > 0 for n in finished.values()), finished


def test_the_checker_sees_lost_doubled_and_unasked_operations(scaled):
    """The checks can fail: the same database against a tampered record of what was answered."""
    d, summary = scaled
    # (Orders in doubt would excuse an unasked-for one: leave them out.)
    ops = [op for op in copy.deepcopy(summary.ops) if not (op.kind == "redeem" and op.status == "indeterminate")]
    by_kind = {kind: [op for op in ops if op.kind == kind and op.status == "acked"] for kind in summary.attempted}
    by_kind["purchase"][0].result["points"] += 1                 # answered other points than the ledger holds
    by_kind["redeem"][0].result["id"] = str(uuid.uuid4())        # acknowledged, then lost
    ops.remove(by_kind["convert"][0])                             # in the hub, but nobody asked for it
    db = Database(d.pg.url, pool_size=1)
    try:
        with db.read() as session:
            found = checker.check(session, ops, {p: d.hub.orders(p) for p in PROVIDERS})
    finally:
        db.dispose()
    assert any(f"purchase {by_kind['purchase'][0].body['transaction_id']}: answered" in v for v in found), found
    assert any(f"acknowledged redemption {by_kind['redeem'][0].result['id']} is missing" in v for v in found), found
    assert any("redemptions not acknowledged" in v for v in found), found  # the real order is now unasked-for
    assert any("conversions not acknowledged, but only" in v for v in found), found
