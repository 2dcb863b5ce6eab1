"""Real processes for the relay's end-to-end tests: the sandbox providers, a Celery worker
and the outbox dispatcher, each started with the `hub` command, sharing the test database.
The process helpers themselves live in hub.chaos.procs (the bank test uses them too)."""
from __future__ import annotations

from pathlib import Path

from hub.chaos.procs import HubProcesses, RedisServer, free_port, wait_for

__all__ = ["RedisServer", "Stack", "free_port", "wait_for"]


class Stack(HubProcesses):
    """The hub's processes on the test session's database and the given broker."""

    def __init__(self, settings, workdir: Path, broker_url: str):
        super().__init__(settings.database_url, settings.secret_key, broker_url, workdir)
