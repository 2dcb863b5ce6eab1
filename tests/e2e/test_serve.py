"""The real thing: `hub serve` with two worker processes, over real HTTP."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hub.identity.clients import create_client
from tests.conftest import unique_code

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_SECRET_KEY": settings.secret_key,
        "HUB_ISSUER": base,
        "HUB_PORT": str(port),
        "HUB_WORKERS": "2",
        "HUB_BROKER_URL": settings.broker_url,
        "HUB_INSTANCE_DIR": str(tmp_path_factory.mktemp("instance")),
    }
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"hub serve did not start:\n{log.read()}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_health_and_readiness(server, settings):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["status"] == "ok" and ready["checks"]["database"] == "ok"
    assert ready["checks"]["broker"] == ("ok" if settings.broker_url else "not configured")
    assert httpx.get(f"{server}/v1/openapi.json").json()["info"]["title"]
    assert httpx.get(f"{server}/v1/ui/").status_code == 200


def test_a_partner_integrates_end_to_end_and_races_earn_once(server, db):
    ops_client, ops_secret = db.write(lambda s: create_client(s, name="e2e ops", partner_id=None, by="test"))
    with httpx.Client(base_url=server, timeout=10) as http:
        def token(client_id, secret):
            r = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        ops = token(ops_client.client_id, ops_secret)
        code, program = unique_code("P"), unique_code("G")
        assert http.post("/v1/partners", json={"code": code, "name": "E2E"}, headers=ops).status_code == 201
        assert http.post("/v1/programs", headers=ops, json={
            "partner": code, "code": program, "name": "E2E points", "point_value": "1",
            "earn_rule": {"currency": "USD", "points_per_unit": "10"}}).status_code == 201
        client = http.post("/v1/clients", json={"name": "pos", "partner": code}, headers=ops).json()
        pos = token(client["client_id"], client["client_secret"])
        member = http.post("/v1/members", json={"program": program, "card_number": "4000123412341234"}, headers=pos).json()["id"]
        body = {"program": program, "member": {"card_number": "4000123412341234"}, "transaction_id": "race",
                "amount": "12.34", "currency": "USD", "occurred_at": "2026-11-20T12:00:00Z"}

        def post(_):
            with httpx.Client(base_url=server, timeout=10) as own:
                return own.post("/v1/transactions", json=body, headers=pos).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(post, range(8)))
        assert statuses == [200] * 7 + [201]
        (balance,) = http.get(f"/v1/members/{member}/balances", headers=pos).json()["items"]
        assert balance["posted"] == 123
