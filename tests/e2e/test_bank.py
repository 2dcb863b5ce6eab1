"""The bank test (docs/chaos.md): concurrent clients earn, reverse, convert and redeem while a
nemesis SIGKILLs API and worker processes, restarts Redis, stops PostgreSQL immediately and
makes the sandbox providers fail or hang. Then every acknowledged operation is in the ledger
exactly once, every order is fulfilled exactly once or refunded, the outbox is drained and
`hub ledger verify` passes. HUB_BANK_SECONDS runs it longer (default 60); `hub chaos` is the
same run from the command line."""
from __future__ import annotations

import os

import pytest

from hub.chaos.bank import deployment, run

pytestmark = pytest.mark.e2e


def test_no_acknowledged_operation_is_lost_or_doubled_under_faults(tmp_path):
    seconds = float(os.environ.get("HUB_BANK_SECONDS", "60"))
    with deployment(workdir=tmp_path) as d:
        summary = run(d, duration=seconds, seed=int(os.environ.get("HUB_BANK_SEED", "8")), clients=4)
    print(summary.as_dict())
    assert summary.violations == [], "\n".join(summary.violations[:50])
    assert sum(summary.faults.values()) >= seconds / 10  # the nemesis did its work
    assert sum(summary.acknowledged.values()) > 0 and summary.acknowledged["redeem"] > 0
