"""End to end with each provider's sandbox fake over HTTP: orders relayed by the real
connectors, the fake's own report of them fetched and imported: every line matches."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from hub import sandbox
from hub.db import utcnow
from hub.rewards import catalog, relay
from hub.rewards.models import Reward
from hub.rewards.providers import factories
from tests.integration.test_redemptions import POLICY, redeem, rich_member
from tests.integration.test_sandbox import PATHS, PRODUCTS


@pytest.fixture(scope="module")
def sandbox_url():
    server, url = sandbox.start()
    yield url
    server.shutdown()


@pytest.mark.parametrize("name", sorted(PATHS))
def test_a_providers_report_of_relayed_orders_all_match(name, sandbox_url, db, partner, ops):
    connector = factories()[name]({"base_url": sandbox_url + PATHS[name], "timeout_connect": "1",
                                   "timeout_read": "5"})
    db.write(lambda s: catalog.sync_provider(s, name, connector.kind.value, connector.catalog()))
    product, amount_minor = PRODUCTS[name]
    with db.read() as s:
        reward = s.scalar(select(Reward.code).where(Reward.provider == name, Reward.product == product))
    started = utcnow() - timedelta(seconds=1)
    member = rich_member(partner)
    relayer = relay.Relay(db, {name: connector}, POLICY)
    orders = []
    for _ in range(3):
        response = redeem(partner, member, reward, amount=f"{amount_minor / 100:.2f}")
        assert response.status_code in (201, 202), response.text
        orders.append(response.json()["id"])
        assert relayer.run(uuid.UUID(orders[-1])) == "fulfilled"

    report = requests.get(f"{sandbox_url}/{name}/reports/orders.csv", timeout=5)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    response = ops.post("/v1/reconciliation/runs", {
        "provider": name, "csv": report.text,
        "period_start": started.isoformat(), "period_end": (utcnow() + timedelta(minutes=1)).isoformat()})
    assert response.status_code == 201, response.text
    run = response.json()
    mine = [line for line in report.text.splitlines()[1:] if any(uuid.UUID(o).hex in line for o in orders)]
    assert len(mine) == 3
    assert run["figures"]["matched"] == run["report_lines"] >= 3
    assert run["figures"]["missing_at_provider"] == 0
    assert ops.get("/v1/reconciliation/exceptions", run_id=run["id"]).json()["items"] == []
