"""Request ids, metric labels, the /metrics access rule and the log formats (hub/observability)."""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from hub.hardening import redaction
from hub.observability import context, logs, metrics
from hub.observability.middleware import operation_label
from hub.settings import Settings


@pytest.mark.parametrize("incoming", ["abc", "order-7f3a.1:2_x", "A" * 64, b"from-a-proxy"])
def test_a_valid_incoming_request_id_is_kept(incoming):
    expected = incoming.decode() if isinstance(incoming, bytes) else incoming
    assert context.accept(incoming) == expected


@pytest.mark.parametrize("incoming", [None, "", "A" * 65, "has space", "new\nline", "semi;colon", "é", "a,b",
                                      "<script>", "eq=sign"])
def test_an_invalid_or_missing_request_id_is_replaced_by_a_new_one(incoming):
    made = context.accept(incoming)
    assert made != incoming and len(made) == 32 and int(made, 16) >= 0


def test_bound_sets_and_restores_the_request_id():
    assert context.current() is None
    with context.bound("outer"):
        with context.bound("inner"):
            assert context.current() == "inner"
        assert context.current() == "outer"
        with context.bound("bad id"):  # invalid: binds none
            assert context.current() is None
    assert context.current() is None


@pytest.mark.parametrize("status, error, result", [
    (204, None, "success"), (500, None, "5xx"), (410, None, "4xx"), (302, None, "3xx"),
    (None, "timeout", "timeout"), (None, "connect failed", "connect_failed"),
    (None, "refused: resolves to a private address", "refused"), (None, "paused", "paused"),
])
def test_webhook_attempt_results_are_a_small_set(status, error, result):
    before = _value(metrics.WEBHOOK_ATTEMPTS, result)
    metrics.webhook_attempt(status, error)
    assert _value(metrics.WEBHOOK_ATTEMPTS, result) == before + 1


def test_operation_labels_drop_the_package_prefix():
    assert operation_label("hub.api.transactions.purchase") == "transactions.purchase"
    assert metrics.status_class(201) == "2xx" and metrics.status_class(503) == "5xx"


def _settings(**changes) -> Settings:
    base = Settings(database_url="sqlite://", broker_url="", secret_key="k", issuer="https://hub.example",
                    access_token_ttl=60, db_pool_size=1, workers=1, host="127.0.0.1", port=8000)
    return replace(base, **changes)


@pytest.mark.parametrize("changes, authorization, status", [
    ({}, None, 404),  # a public issuer: not served unless asked for
    ({"issuer": "http://127.0.0.1:8000"}, None, 200),  # `make run`
    ({"metrics": True}, None, 200),
    ({"metrics": False, "issuer": "http://127.0.0.1:8000"}, None, 404),
    ({"metrics_token": "scrape-me-please"}, None, 401),
    ({"metrics_token": "scrape-me-please"}, "Bearer wrong", 401),
    ({"metrics_token": "scrape-me-please"}, "Bearer scrape-me-please", 200),
    ({"metrics_token": "scrape-me-please", "metrics": False}, "Bearer scrape-me-please", 404),
])
def test_who_may_read_metrics(changes, authorization, status):
    assert metrics.access(_settings(**changes), authorization) == status


def test_transfers_are_counted_when_their_transaction_commits_only():
    engine = create_engine("sqlite://")
    rows = [{"code": "unit-test-earn", "phase": "posted", "amount": 70}]
    before = _value(metrics.TRANSFER_POINTS, "unit-test-earn", "posted")
    with Session(engine) as session:
        session.execute(text("SELECT 1"))  # as the ledger's statements do: a transaction begins
        metrics.transfers_made(session, rows)
        session.rollback()
        session.execute(text("SELECT 1"))
        session.commit()  # nothing left to count from the rolled-back transaction
        assert _value(metrics.TRANSFER_POINTS, "unit-test-earn", "posted") == before
        session.execute(text("SELECT 1"))
        with session.begin_nested():
            metrics.transfers_made(session, rows * 2)
        try:
            with session.begin_nested():
                raise ValueError("a savepoint rolled back keeps the outer transaction's counts")
        except ValueError:
            pass
        session.commit()
    assert _value(metrics.TRANSFER_POINTS, "unit-test-earn", "posted") == before + 140
    assert _value(metrics.TRANSFERS, "unit-test-earn", "posted") >= 2


def _value(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()


def _record(msg, *args, exc_info=None) -> logging.LogRecord:
    return logging.getLogRecordFactory()("hub.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_a_json_line_carries_the_request_id_and_is_redacted():
    logs.install()
    with context.bound("req-42"):
        record = _record("calling with %s", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123")
    line = logs.JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["request_id"] == "req-42" and entry["level"] == "WARNING" and entry["logger"] == "hub.test"
    assert entry["time"].endswith("+00:00")
    assert "abcdefghijklmnopqrstuvwxyz0123" not in line and "[redacted]" in entry["message"]


def test_a_json_line_holds_the_redacted_traceback():
    logs.install()
    try:
        raise ValueError("bad callback ?code=c0de_value_123")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    entry = json.loads(logs.JsonFormatter().format(record))
    assert "ValueError" in entry["exception"] and "c0de_value_123" not in entry["exception"]
    assert entry["request_id"] is None


@pytest.mark.parametrize("first", [redaction.install, logs.install])
def test_request_ids_and_redaction_compose_in_either_order(monkeypatch, first):
    monkeypatch.setattr(logging, "_logRecordFactory", logging.LogRecord)  # as a fresh process starts
    first()
    logs.install()
    installed = logging.getLogRecordFactory()
    redaction.install()
    logs.install()
    assert logging.getLogRecordFactory() is installed  # both idempotent, whichever came first
    with context.bound("req-7"):
        record = _record("token=%s", "s3cr3t_t0ken_value")
    assert record.request_id == "req-7" and "s3cr3t_t0ken_value" not in record.getMessage()


def test_the_text_format_names_the_request_id():
    logs.install()
    with context.bound("req-9"):
        record = _record("hello")
    assert "[req-9] hello" in logs.formatter("text").format(record)


def test_an_unknown_log_format_is_refused(monkeypatch):
    monkeypatch.setenv("HUB_LOG_FORMAT", "xml")
    with pytest.raises(ValueError):
        logs.log_format()


@pytest.fixture
def root_logging():
    """The root logger and the servers' loggers as they were, back after the test."""
    root = logging.getLogger()
    servers = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
               for name in logs.SERVER_LOGGERS}
    saved = root.handlers[:], root.level
    yield root
    root.handlers, root.level = saved
    for name, (handlers, propagate) in servers.items():
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate


def test_configure_json_writes_one_object_a_line_for_every_logger(root_logging, capsys, monkeypatch):
    monkeypatch.setenv("HUB_LOG_FORMAT", "json")
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers, uvicorn_access.propagate = [logging.StreamHandler()], False  # as uvicorn sets it up
    logs.configure(logging.INFO)
    logs.configure(logging.INFO)  # again: still one handler of ours
    assert sum(getattr(h, "hub_configured", False) for h in root_logging.handlers) == 1
    with context.bound("req-json"):
        logging.getLogger("hub.rewards.relay").info("redemption %s attempt %d", "r-1", 2)
        uvicorn_access.info('%s "%s" %s', "10.0.0.1", "GET /account/verify?token=s3cr3t_t0ken HTTP/1.1", 200)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["logger"], e["request_id"]) for e in lines] == [("hub.rewards.relay", "req-json"),
                                                               ("uvicorn.access", "req-json")]
    assert lines[0]["message"] == "redemption r-1 attempt 2"
    assert "s3cr3t_t0ken" not in lines[1]["message"]


def test_provider_calls_carry_the_bound_request_id(mocked):
    from partners import _http

    client = _http.Client({"base_url": "https://provider.example", "timeout_connect": "1", "timeout_read": "2"})
    mocked.get("https://provider.example/orders/1", json={})
    with context.bound("order-77"):
        client.send("GET", "/orders/1")
    client.send("GET", "/orders/1")
    first, second = (call.request.headers for call in mocked.calls)
    assert first[context.HEADER] == "order-77" and context.HEADER not in second
