"""Fixtures shared by every test level.

The database is SQLite in a temporary folder, or, when HUB_TEST_DATABASE_URL is set, a fresh
PostgreSQL database made for this run and dropped after it. Migrations build the schema, so
they are tested too. Tests isolate their data by making their own partners (unique codes).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import uuid

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from hub import migrations
from hub.db import Database
from hub.hardening import redaction
from hub.identity.clients import create_client
from hub.settings import Settings
from tests.log_capture import LeakScan

ISSUER = "http://127.0.0.1"
SECRET_KEY = "test-secret-key-not-for-production"

# The log capture of the whole run (tests/log_capture.py): every record at DEBUG, scanned for
# secrets and tokens at the end; a leak fails the run. The tests' passwords are looked for too.
LOG_SCAN = LeakScan()
TEST_PASSWORDS = ("correct horse battery", "a new long password", "a long enough passphrase 42",
                  "the members own password", "wrong password 123")


def pytest_configure(config):
    redaction.install()  # as the app does; here from the start, whichever test creates the app first
    LOG_SCAN.remember(SECRET_KEY, *TEST_PASSWORDS)
    LOG_SCAN.watch_issuers()
    root = logging.getLogger()
    root.addHandler(LOG_SCAN)
    root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session):
    LOG_SCAN.leaks = LOG_SCAN.findings()
    if LOG_SCAN.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    leaks = getattr(LOG_SCAN, "leaks", [])
    terminalreporter.write_line(f"log capture: {len(LOG_SCAN.lines)} records scanned, {len(leaks)} secrets found")
    for leak in leaks[:50]:
        terminalreporter.write_line(f"LEAK: {leak}", red=True)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    base = os.environ.get("HUB_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.sqlite3'}"
        return
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _forget_rate_limits(redis_url: str) -> None:
    """Rate-limit counters live in the test Redis for up to an hour, keyed by IP (127.0.0.1
    for every test): one run's sign-ups and failed logins must not refuse the next run's."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match="hub:rl:*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory):
    migrations.upgrade(database_url)
    redis_url = os.environ.get("HUB_TEST_REDIS_URL", "")
    if redis_url:
        _forget_rate_limits(redis_url)
    yield Settings(
        database_url=database_url,
        broker_url=redis_url,
        secret_key=SECRET_KEY,
        issuer=ISSUER,
        access_token_ttl=3600,
        db_pool_size=5,
        workers=1,
        host="127.0.0.1",
        port=8000,
    )
    if redis_url:
        _forget_rate_limits(redis_url)


@pytest.fixture(scope="session")
def app(settings):
    from hub.app import create_app

    return create_app(settings, validate_responses=True)


@pytest.fixture(scope="session")
def db(app) -> Database:
    from hub.api import runtime

    return runtime.current().db


@pytest.fixture(scope="session")
def http(app):
    # Authlib refuses plain http except on localhost, so the test client poses as it.
    with TestClient(app, base_url=ISSUER) as client:
        yield client


class Api:
    """An HTTP client that carries one access token."""

    def __init__(self, http, token: str):
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path, **params):
        return self.http.get(path, params=params or None, headers=self.headers)

    def post(self, path, json=None, key: str | None = None, headers=None, **kwargs):
        headers = {**self.headers, **(headers or {})}
        if key:
            headers["Idempotency-Key"] = key
        return self.http.post(path, json=json, headers=headers, **kwargs)


def assert_problem(response, status: int, slug: str) -> dict:
    """An RFC 9457 problem of this status and stable type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/" + slug) and problem["status"] == status and problem["detail"]
    return problem


def token_for(http, client_id: str, secret: str, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = http.post("/oauth/token", data=data, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def unique_code(prefix: str = "P") -> str:
    # 48 random bits: a suite makes thousands of partners and programs, and with 32 a
    # collision (a 409 in some fixture) came once in a few hundred runs.
    return f"{prefix}{secrets.token_hex(6).upper()}"


@pytest.fixture(scope="session")
def ops(http, db) -> Api:
    client, secret = db.write(lambda s: create_client(s, name="test ops", partner_id=None, by="test"))
    return Api(http, token_for(http, client.client_id, secret))


class Partner:
    """A partner with one program (earning 1 point per 1,000 IDR) and its API client;
    `hosted_by` makes it a partner-hosted program served by that connector."""

    def __init__(self, ops: Api, http, currency="IDR", points_per_unit="0.001", point_value="10",
                 hosted_by: str | None = None):
        self.ops = ops
        self.code = unique_code("P")
        self.program = unique_code("G")
        self.currency = currency
        assert ops.post("/v1/partners", {"code": self.code, "name": f"Partner {self.code}"}).status_code == 201
        response = ops.post(
            "/v1/programs",
            {
                "partner": self.code,
                "code": self.program,
                "name": f"Program {self.program}",
                "point_value": point_value,
                "earn_rule": {"currency": currency, "points_per_unit": points_per_unit},
                **({"hosted_by": hosted_by} if hosted_by else {}),
            },
        )
        assert response.status_code == 201, response.text
        created = ops.post("/v1/clients", {"name": "pos", "partner": self.code}).json()
        self.client_id, self.secret = created["client_id"], created["client_secret"]
        self.api = Api(http, token_for(http, self.client_id, self.secret))
        self._n = 0

    def enrol(self, **identifiers) -> str:
        if not identifiers:
            self._n += 1
            identifiers = {"external_id": f"m-{secrets.token_hex(6)}"}
        response = self.api.post("/v1/members", {"program": self.program, **identifiers})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def purchase_body(self, member_id: str, amount: str, txn: str | None = None, **extra) -> dict:
        return {
            "program": self.program,
            "member": {"member_id": member_id},
            "transaction_id": txn or f"t-{secrets.token_hex(8)}",
            "amount": amount,
            "currency": self.currency,
            "occurred_at": "2026-11-01T10:00:00Z",
            **extra,
        }

    def buy(self, member_id: str, amount: str, txn: str | None = None) -> dict:
        response = self.api.post("/v1/transactions", self.purchase_body(member_id, amount, txn))
        assert response.status_code == 201, response.text
        return response.json()

    def balance(self, member_id: str) -> dict:
        response = self.api.get(f"/v1/members/{member_id}/balances")
        assert response.status_code == 200, response.text
        (item,) = response.json()["items"]
        return item


@pytest.fixture
def partner(ops, http) -> Partner:
    return Partner(ops, http)


@pytest.fixture
def other_partner(ops, http) -> Partner:
    return Partner(ops, http)


@pytest.fixture
def make_partner(ops, http):
    return lambda **kw: Partner(ops, http, **kw)


@contextlib.contextmanager
def round_trips(db):
    """Every statement `db` sends inside the block: those SQLAlchemy executes (as
    `statements_run` sees them) and those hub.db sends straight to psycopg on PostgreSQL."""
    from hub import db as hub_db

    driver_cursor = hub_db._driver_cursor

    def counting(conn, sql, params, **kwargs):
        seen.append(sql.lower())
        return driver_cursor(conn, sql, params, **kwargs)

    hub_db._driver_cursor = counting
    try:
        with statements_run(db) as seen:
            yield seen
    finally:
        hub_db._driver_cursor = driver_cursor


@contextlib.contextmanager
def statements_run(db):
    """The SQL statements `db` runs inside the block, lower-cased, as SQLAlchemy's cursor
    events see them (on PostgreSQL the earn path's own statements, run by hub.db.run, bypass
    them: a test of what the earn path does not run counts the others)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.lower())

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
