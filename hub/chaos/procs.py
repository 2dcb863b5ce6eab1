"""Real processes on this machine: a private PostgreSQL and Redis that a test may crash, and
the hub's own processes (`hub serve`, `hub worker`, `hub dispatch`, `hub sandbox`), each in
its own process group so that a SIGKILL reaches its children too."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


class PostgresServer:
    """A private PostgreSQL cluster (initdb into a temporary directory) on a free port, so a
    test can stop it immediately (as a crash would) without touching the machine's server.
    PostgreSQL refuses to run as root: as root, it runs as the `postgres` user."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = shutil.which("initdb") or (found[-1] if found else None)
        if not initdb:
            raise RuntimeError("no PostgreSQL server binaries (initdb) on PATH or under /usr/lib/postgresql/*/bin")
        self.bin = Path(initdb).parent
        self.user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no `postgres` user to run PostgreSQL as") from None
            self.user = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="hub-pg-"))  # not under a 0700 pytest dir: postgres must reach it
        if self.user:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/hub"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.start()
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE hub")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
                   " -c fsync=off -c synchronous_commit=on")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "server.log"),
                  "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop at once, as a power cut would to the server: no checkpoint, clients cut off."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


class HubProcesses:
    """The hub's processes on one database and broker, each started with the `hub` command
    and logging to <workdir>/<name>.log. Names: "sandbox", "dispatcher", "worker"
    (or any name given to start_worker), "api0", "api1", ..."""

    def __init__(self, database_url: str, secret_key: str, broker_url: str, workdir: Path):
        self.workdir = workdir
        self.sandbox_port = free_port()
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        self.env = {
            **os.environ,
            "HUB_DATABASE_URL": database_url,
            "HUB_SECRET_KEY": secret_key,
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
        self.commands: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
        self.apis: dict[str, str] = {}  # name -> base URL

    def provider_config(self) -> dict[str, dict[str, str]]:
        return {name: {"base_url": f"{self.sandbox}/{path}", "timeout_read": "1.5"}
                for name, path in PROVIDER_PATHS.items()}

    def hosted_config(self) -> dict[str, dict[str, str]]:
        """The hosted programs' connector settings, as the worker gets them."""
        return {name: {"base_url": f"{self.sandbox}/{path}", "timeout_read": "1.5"}
                for name, path in HOSTED_PATHS.items()}

    def _start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.commands[name] = (args, env or {})
        log = open(self.workdir / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args], env={**self.env, **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,  # its own process group: a kill reaches its children
        )
        log.close()

    def start(self) -> None:
        """The sandbox, one worker and the dispatcher (the relay's end-to-end set)."""
        self.start_sandbox()
        self.start_worker()
        self.start_dispatcher()

    def start_sandbox(self) -> None:
        self._start("sandbox", "sandbox", "--port", str(self.sandbox_port), "--timeout-sleep", "4")
        wait_for(lambda: self._get("/tango/_sandbox/orders") is not None, 20, "the sandbox")

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> None:
        self._start(name, "worker", "--concurrency", str(concurrency))

    def start_dispatcher(self) -> None:
        self._start("dispatcher", "dispatch")

    def start_api(self, name: str, issuer: str | None = None) -> str:
        """`hub serve` (one uvicorn process) on a free port; every API of a deployment shares one
        issuer, so that a token from one is good at the others. Returns its base URL."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        self._start(name, "serve", env={"HUB_PORT": str(port), "HUB_WORKERS": "1", "HUB_ISSUER": issuer or base})
        self.apis[name] = base
        return base

    def wait_healthy(self, name: str, timeout: float = 60) -> None:
        def up() -> bool:
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log(name)[-3000:]}")
            try:
                return httpx.get(self.apis[name] + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(up, timeout, f"{name} to answer", interval=0.2)

    def restart(self, name: str) -> None:
        args, env = self.commands[name]
        self._start(name, *args, env=env)

    def revive(self) -> list[str]:
        """Start again every process that exited on its own, as a supervisor (systemd,
        Kubernetes) would; their names."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self.restart(name)
        return dead

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop(self) -> None:
        for name, proc in list(self.procs.items()):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run a one-off `hub` command with this deployment's settings; its output."""
        done = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"hub {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

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
