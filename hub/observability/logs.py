"""Log records carry the request id; HUB_LOG_FORMAT=json writes one JSON object per line.

`install()` wraps the log record factory (as hub/hardening/redaction.py does, and composed with
it: whichever is installed first, every record is redacted and carries `request_id`), so every
record of every logger has the id bound when it was made (context.py), or None.

`configure()` is for the entry points (`hub serve`'s app, `hub worker`, `hub dispatch`, the
CLI): one handler on the root logger, text or JSON. In JSON mode the servers' own loggers
(uvicorn's, gunicorn's) are routed through it too, so that every line of a process is JSON.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone

from hub.hardening import redaction
from hub.observability import context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Loggers that keep handlers of their own (and do not propagate) in the servers' default set-ups.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")


def install() -> None:
    """Every log record made from now on carries `request_id`, and is redacted (idempotent)."""
    redaction.install()  # first: the redacting factory sits under this one, its mark copied up
    factory = logging.getLogRecordFactory()
    if getattr(factory, "request_ids", False):
        return

    def with_request_id(*args, **kwargs):
        record = factory(*args, **kwargs)
        record.request_id = context.current()
        return record

    with_request_id.request_ids = True
    with_request_id.redacting = True  # redaction.install() checks this mark to stay idempotent
    logging.setLogRecordFactory(with_request_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request_id,
    and exception (the traceback, redacted like the message) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a record made before install()
            record.request_id = None
        return super().format(record)


def log_format() -> str:
    value = os.environ.get("HUB_LOG_FORMAT", "text").strip().lower()
    if value not in ("text", "json"):
        raise ValueError("HUB_LOG_FORMAT must be text or json")
    return value


def formatter(fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter() if (fmt or log_format()) == "json" else _TextFormatter(TEXT_FORMAT)


def configure(level: int = logging.INFO, fmt: str | None = None) -> None:
    """One stderr handler on the root logger, at `level`, in HUB_LOG_FORMAT (idempotent: a
    second call replaces the first's handler). The root logger's level is lowered to `level`
    if need be, never raised."""
    install()
    fmt = fmt or log_format()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.setLevel(level)
    handler.hub_configured = True
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "hub_configured", False)] + [handler]
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    if fmt == "json":
        for name in SERVER_LOGGERS:
            server = logging.getLogger(name)
            server.handlers, server.propagate = [], True
