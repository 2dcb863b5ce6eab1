"""Scale-out on one machine, with real processes: two API processes (`hub serve`, each on its
own port) and two Celery workers (`hub worker`), with the dispatcher and the sandbox
providers, on one private PostgreSQL and one private Redis (hub.chaos.procs). Clients spread
their requests round-robin over both APIs; no faults. Both suites (SQLite and services) run
it the same way: the deployment brings its own database and broker."""
from __future__ import annotations

import re

import pytest

from hub.chaos.bank import deployment, run

pytestmark = pytest.mark.e2e


def test_two_apis_and_two_workers_share_the_work(tmp_path):
    with deployment(apis=2, workers=2, members=24, workdir=tmp_path) as d:
        summary = run(d, duration=8, seed=1, clients=4, nemesis=False)
        # Each worker ran relay tasks (its own log: Celery logs every task it finished).
        finished = {name: len(re.findall(r"Task hub\.\S+ succeeded", d.hub.log(name))) for name in ("worker0", "worker1")}
    assert summary.violations == []
    assert summary.acknowledged["redeem"] > 0 and summary.acknowledged["convert"] > 0
    total = sum(summary.served.values())
    assert set(summary.served) == {"api0", "api1"}
    assert all(n >= total * 0.4 for n in summary.served.values()), summary.served  # round-robin: about half each
    assert all(n > 0 for n in finished.values()), finished
