"""An order followed by its request id through real processes: the API (in the test), the
outbox dispatcher (`hub dispatch`), a Celery worker (`hub worker`) with JSON logs and its own
metrics port, and the sandbox provider over HTTP."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.rewards.providers import factories
from hub.rewards.registry import sync_all
from tests.e2e.relay_stack import Stack, free_port, wait_for
from tests.e2e.test_relay_faults import catalog_pick, settled
from tests.integration.test_redemptions import rich_member

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(settings, db, tmp_path_factory):
    stack = Stack(settings, tmp_path_factory.mktemp("traced"), settings.broker_url)
    stack.metrics_port = free_port()
    stack.env.update(HUB_LOG_FORMAT="json", HUB_WORKER_METRICS_PORT=str(stack.metrics_port))
    stack.start()
    try:
        providers = {name: factories()[name](config) for name, config in stack.provider_config().items()}
        assert all("error" not in r for r in sync_all(db, providers).values())
        yield stack
    finally:
        stack.stop()


def worker_lines(stack: Stack) -> list[dict]:
    lines = []
    for line in stack.log("worker").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass  # Celery's start-up banner is printed, not logged
    return lines


def test_an_orders_request_id_reaches_the_workers_log_lines(stack, partner):
    member = rich_member(partner)
    code, amount = catalog_pick(partner, "tango")
    trace = f"e2e-{uuid.uuid4().hex[:12]}"
    response = partner.api.post("/v1/redemptions", {"reward": code, "program": partner.program,
                                                    "member": {"member_id": member}, "amount": amount},
                                key=uuid.uuid4().hex, headers={"X-Request-Id": trace})
    assert response.status_code == 202 and response.headers["X-Request-Id"] == trace
    order = response.json()["id"]
    assert settled(partner, order, stack)["state"] == "fulfilled"

    traced = wait_for(lambda: [e for e in worker_lines(stack) if e["request_id"] == trace], 10,
                      "the worker's log line of the attempt")
    assert any(order in e["message"] and "fulfilled" in e["message"] for e in traced), traced
    assert all({"time", "level", "logger", "message"} <= set(e) for e in worker_lines(stack))

    def relayed() -> float:
        text = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=2).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "hub_relay_outcomes_total" and s.labels == {"provider": "tango", "outcome": "fulfilled"})
    assert relayed() >= 1
