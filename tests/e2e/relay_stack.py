"""Real processes for the relay's end-to-end tests: the sandbox providers, a Celery worker
and the outbox dispatcher, each started with the `hub` command, sharing the test database."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

PROVIDER_PATHS = {"tango": "tango/raas/v2", "tremendous": "tremendous/api/v2", "globalgiving": "globalgiving/api"}
# Partner-hosted programs' connectors (hub.exchange.hosted), also served by the sandbox.
HOSTED_PATHS = {"lcp": "lcp"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A private redis-server on a free port, so a test can restart it."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, 10, "redis-server")

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # like a crash: what was queued in memory is gone
            self.proc.wait(timeout=10)


class Stack:
    def __init__(self, settings, workdir: Path, broker_url: str):
        self.workdir = workdir
        self.sandbox_port = free_port()
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        self.env = {
            **os.environ,
            "HUB_DATABASE_URL": settings.database_url,
            "HUB_SECRET_KEY": settings.secret_key,
            "HUB_BROKER_URL": broker_url,
            "HUB_INSTANCE_DIR": str(workdir),
            "HUB_TASK_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
            # Fast retries and short leases, so that faults resolve in seconds.
            "HUB_RELAY_LEASE": "5",
            "HUB_RELAY_BACKOFF_BASE": "0.3",
            "HUB_RELAY_BACKOFF_CAP": "1.5",
            "HUB_OUTBOX_LEASE": "6",
        }
        for name, config in {**self.provider_config(), **self.hosted_config()}.items():
            for key, value in config.items():
                self.env[f"HUB_PROVIDER_{name.upper()}_{key.upper()}"] = value
        self.procs: dict[str, subprocess.Popen] = {}

    def provider_config(self) -> dict[str, dict[str, str]]:
        return {name: {"base_url": f"{self.sandbox}/{path}", "timeout_read": "1.5"}
                for name, path in PROVIDER_PATHS.items()}

    def hosted_config(self) -> dict[str, dict[str, str]]:
        """The hosted programs' connector settings, as the worker gets them."""
        return {name: {"base_url": f"{self.sandbox}/{path}", "timeout_read": "1.5"}
                for name, path in HOSTED_PATHS.items()}

    def _start(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches the worker's children
        )

    def start(self) -> None:
        self._start("sandbox", "sandbox", "--port", str(self.sandbox_port), "--timeout-sleep", "4")
        wait_for(lambda: self._get("/tango/_sandbox/orders") is not None, 20, "the sandbox")
        self.start_worker()
        self.start_dispatcher()

    def start_worker(self) -> None:
        self._start("worker", "worker", "--concurrency", "2")

    def start_dispatcher(self) -> None:
        self._start("dispatcher", "dispatch")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for name, proc in list(self.procs.items()):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()

    def _get(self, path: str):
        try:
            response = httpx.get(self.sandbox + path, timeout=2)
            return response.json() if response.status_code == 200 else None
        except httpx.TransportError:
            return None

    def orders(self, provider: str) -> dict:
        """The sandbox's record: reference -> {"placements": n, "status": ...} (for the LCP
        fake: its postings, by confirmationNumber, with "applied": times the balance moved)."""
        return self._get(f"/{provider}/_sandbox/orders") or {}
