"""Benchmark of the redemption relay (issue 3): N gift-card redemptions through the API, the
outbox dispatcher, Celery workers on Redis and the sandbox provider, on PostgreSQL; and, in
the same run, a no-op Celery task on the same broker, pool and worker count, as the anchor.

    .venv/bin/python bench/relay.py [--redemptions 1000] [--pool threads] [--concurrency 16]
        [--database-url URL] [--redis-url URL] [--clients 8] [--rate R] [--provider-latency MS]
        [--drain N] [--noop-tasks M] [--profile DIR]

It makes its own database (dropped at the end, also on failure or Ctrl-C) and its own broker
queue (HUB_TASK_QUEUE, on Redis db 14 by default; its keys are deleted at the end), enrols
members in bulk and gives them points (batch earn through the API), syncs the catalog from
`hub sandbox`, and starts `hub serve` (HUB_WORKERS=2), `hub dispatch` and `hub worker`
(--pool/--concurrency, else its defaults). Then, in order:

- relay: --clients keep-alive clients POST /v1/redemptions (a $10 Tango card, no magic tag:
  the sandbox fulfils it at once), one order per member, as fast as they can (or --rate per
  second, open loop). Time to fulfilled is each order's resolved_at - created_at, read from
  the database; redemptions_per_s is N / (last resolved_at - first created_at). A few orders
  go first as a warm-up (not counted).
- drain: the worker stops consuming (Celery remote control), --drain orders are posted and
  published, then it consumes again: drain_per_s is the relay alone (worker, database,
  provider) working off a full queue, with the API idle.
- noop: M `hub.noop` tasks published as fast as one producer can, on the same queue, to the
  same worker; each counts itself done in Redis. noop_per_s is M / (first publish - last
  done). ratio = redemptions_per_s / noop_per_s; drain_ratio = drain_per_s / noop_per_s.
- checks: every order fulfilled, the sandbox placed each reference exactly once, the outbox is
  drained, and `hub ledger verify` passes. Failures are listed in the JSON's "failures".

One JSON line on stdout; progress on stderr; each phase is bounded by --timeout. Per phase,
the CPU that each process group used per item (hub processes, their PostgreSQL backends,
Redis, this script) says where the capacity goes on a small machine better than wall time;
other_load_cores is what processes outside the benchmark used meanwhile (noise), and
pg_sessions how many connections PostgreSQL opened (pool churn). --provider-latency puts a
proxy that holds every provider call in front of the sandbox (real providers answer in
hundreds of milliseconds, the sandbox in one).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from earn import (  # noqa: E402  (the earn benchmark's helpers: same machine, same habits)
    SECRET_KEY, Databases, backend_pids, cpu_seconds, cpu_split, cpu_times, free_port, get_token, log,
    setup_hub_db, stop_session,
)

DEFAULT_DB_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
REWARD = "TANGO-U157189"         # Starbucks Card $10.00 in the sandbox's Tango catalog
AMOUNT = "10.00"
PURCHASE_IDR = "20000000"        # 20,000 points at the bench program's 0.001 point per IDR
PROVIDER_PATHS = {"tango": "tango/raas/v2", "tremendous": "tremendous/api/v2", "globalgiving": "globalgiving/api"}


# --- processes -----------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """pid and every process under it."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        stack += [int(k) for k in kids]
    return out


class Proc:
    """One `hub` command in its own session (so it and its children stop together)."""

    def __init__(self, name: str, args: list[str], env: dict, logdir: Path):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN / "hub"), *args], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc.poll() is None else []

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_session(self.proc, grace=20)
        self._log.close()


def wait_until(check, timeout: float, what: str, procs: list[Proc] = (), interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            p.check()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_json(method: str, port: int, path: str, body=None, headers: dict | None = None, timeout: float = 30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def responds(port: int, path: str) -> bool:
    try:
        return http_json("GET", port, path, timeout=2)[0] == 200
    except (OSError, ValueError, http.client.HTTPException):
        return False


class SlowProvider:
    """A forwarding HTTP proxy that holds every request `latency` seconds before passing it
    on to the sandbox: real providers answer in hundreds of milliseconds, the sandbox in one."""

    def __init__(self, target_port: int, latency: float):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                time.sleep(latency)
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # a worker opens dozens of connections at once, as to a real provider

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- CPU accounting ----------------------------------------------------------------------

class CpuMeter:
    """CPU seconds of each process group (hub processes, their PostgreSQL backends, Redis,
    this script) between two snapshots."""

    def __init__(self, procs: dict[str, Proc], admin_url: str, database: str, redis_pid: int | None):
        self.procs, self.admin_url, self.database, self.redis_pid = procs, admin_url, database, redis_pid

    def snapshot(self) -> tuple[dict[str, float], list[int]]:
        snap = {name: cpu_seconds(p.pids()) for name, p in self.procs.items()}
        snap["postgres"] = cpu_seconds(backend_pids(self.admin_url, self.database))
        snap["redis"] = cpu_seconds([self.redis_pid]) if self.redis_pid else 0.0
        t = os.times()
        snap["bench"] = t.user + t.system
        return snap, cpu_times()

    @staticmethod
    def per_item(before, after, items: int) -> dict[str, float]:
        (a, _), (b, _) = before, after
        per = {k: round(1000 * (b[k] - a.get(k, 0.0)) / max(items, 1), 3) for k in b}
        per["total"] = round(sum(per.values()), 3)
        return per

    @staticmethod
    def other_load(before, after) -> float:
        """Cores' worth of CPU that processes outside this benchmark used in between (other
        work on the machine makes the figures noisy; this says how much there was)."""
        (a, ma), (b, mb) = before, after
        d = [y - x for x, y in zip(ma, mb)]
        total = sum(d) or 1
        busy_cores = (d[0] + d[1] + d[2] + d[5] + d[6]) / total * (os.cpu_count() or 1)
        ours = sum(b[k] - a.get(k, 0.0) for k in b)
        seconds = total / os.sysconf("SC_CLK_TCK") / (os.cpu_count() or 1)
        return round(max(0.0, busy_cores - ours / seconds), 2) if seconds > 0 else 0.0


# --- setup -------------------------------------------------------------------------------

def give_points(port: int, token: str, program: str, member_ids: list[str]) -> None:
    occurred = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for start in range(0, len(member_ids), 1000):
        items = [{"program": program, "member": {"member_id": m}, "transaction_id": f"seed-{start + i}",
                  "amount": PURCHASE_IDR, "currency": "IDR", "occurred_at": occurred}
                 for i, m in enumerate(member_ids[start:start + 1000])]
        status, body = http_json("POST", port, "/v1/transactions/batch", {"items": items},
                                 {"Authorization": f"Bearer {token}"}, timeout=120)
        created = body.get("created") if isinstance(body, dict) else None
        if status != 200 or created != len(items):
            raise RuntimeError(f"batch earn: HTTP {status}: {str(body)[:500]}")


def sync_catalog(url: str, sandbox: str) -> None:
    from hub.db import Database
    from hub.rewards.providers import factories
    from hub.rewards.registry import sync_all

    db = Database(url, 1)
    try:
        providers = {name: factories()[name]({"base_url": f"{sandbox}/{path}"})
                     for name, path in PROVIDER_PATHS.items()}
        report = sync_all(db, providers)
    finally:
        db.dispose()
    if "error" in report.get("tango", {"error": "missing"}):
        raise RuntimeError(f"catalog sync failed: {report}")


# --- the relay phase ---------------------------------------------------------------------

def post_redemptions(port: int, token: str, program: str, members: list[str], clients: int,
                     timeout: float, rate: float = 0.0) -> dict:
    """POST one redemption per member from `clients` keep-alive connections: as fast as they
    go, or with `rate`, the i-th POST not before i / rate seconds (open loop)."""
    todo = list(reversed(members))
    lock = threading.Lock()
    out = {"ids": [], "latencies": [], "statuses": {}, "errors": []}
    start = time.monotonic()
    deadline = start + timeout
    sent = [0]

    def client():
        conn = None
        while time.monotonic() < deadline:
            with lock:
                if not todo:
                    break
                member = todo.pop()
                slot = sent[0]
                sent[0] += 1
            if rate > 0:
                time.sleep(max(0.0, start + slot / rate - time.monotonic()))
            body = json.dumps({"reward": REWARD, "program": program, "member": {"member_id": member},
                               "amount": AMOUNT, "recipient": {"email": f"{member[:8]}@example.com",
                                                               "name": "Bench Member"}}).encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                       "Idempotency-Key": uuid.uuid4().hex}
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/v1/redemptions", body=body, headers=headers)
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                status, data = type(exc).__name__, b""
            elapsed = time.perf_counter() - t0
            with lock:
                out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
                if status == 202:
                    out["ids"].append(json.loads(data)["id"])
                    out["latencies"].append(elapsed)
                elif len(out["errors"]) < 5:
                    out["errors"].append(f"{status}: {data[:300].decode(errors='replace')}")
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 5))
    out["seconds"] = time.monotonic() - start
    return out


def wait_resolved(engine, ids: list[str], timeout: float, procs: list[Proc]) -> None:
    from sqlalchemy import text

    want = set(ids)

    def done():
        with engine.connect() as conn:
            pending = conn.execute(text("SELECT id FROM redemptions WHERE state = 'pending'")).scalars().all()
        left = want & {str(p) for p in pending}
        return not left

    wait_until(done, timeout, f"{len(ids)} redemptions to resolve", procs, interval=0.25)


def relay_stats(engine, ids: list[str]) -> dict:
    from sqlalchemy import text

    want = set(ids)
    with engine.connect() as conn:
        rows = [r for r in conn.execute(text(
            "SELECT id, state, attempts, created_at, resolved_at FROM redemptions")).all() if str(r.id) in want]
    done = [r for r in rows if r.resolved_at is not None]
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    if not done:
        return {"states": states, "per_s": 0.0, "p50_ms": None, "p99_ms": None, "max_ms": None, "attempts": 0}
    lat = sorted((r.resolved_at - r.created_at).total_seconds() * 1000 for r in done)
    span = (max(r.resolved_at for r in done) - min(r.created_at for r in rows)).total_seconds()
    return {
        "states": states,
        "per_s": len(done) / span if span > 0 else 0.0,
        "span_s": span,
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": lat[-1],
        "attempts": sum(r.attempts for r in rows),
    }


# --- the drain phase: the relay alone, from a full queue ---------------------------------

def published_count(engine, ids: list[str]) -> int:
    from sqlalchemy import bindparam, text

    query = text("SELECT count(*) FROM outbox WHERE key IN :keys AND publish_count > 0")
    with engine.connect() as conn:
        return conn.execute(query.bindparams(bindparam("keys", expanding=True)), {"keys": ids}).scalar_one()


def drain_phase(engine, queue: str, node: str, post, count: int, timeout: float,
                procs: list[Proc], meter: "CpuMeter") -> dict:
    """The worker stops consuming; `count` redemptions are posted and published; then it
    consumes again and the relay works the backlog off with the API idle. What this measures
    is the relay's own path (worker, database, provider) on the same worker as the no-op."""
    from hub import tasks as hub_tasks

    control = hub_tasks.celery.control
    if not control.cancel_consumer(queue, destination=[node], reply=True, timeout=10):
        raise RuntimeError(f"no reply from {node} to cancel_consumer")
    posted = post()
    # Published: on the queue, several orders a task (the dispatcher batches them).
    wait_until(lambda: published_count(engine, posted["ids"]) >= len(posted["ids"]), timeout,
               f"{len(posted['ids'])} relay orders published", procs, interval=0.1)
    before = meter.snapshot()
    t0 = time.time()
    if not control.add_consumer(queue, destination=[node], reply=True, timeout=10):
        raise RuntimeError(f"no reply from {node} to add_consumer")
    wait_resolved(engine, posted["ids"], timeout, procs)
    after = meter.snapshot()
    stats = relay_stats(engine, posted["ids"])
    with engine.connect() as conn:
        from sqlalchemy import text

        last = max(r.resolved_at for r in conn.execute(text("SELECT resolved_at FROM redemptions")).all()
                   if r.resolved_at is not None)
    seconds = last.timestamp() - t0
    return {"ids": posted["ids"], "per_s": len(posted["ids"]) / seconds if seconds > 0 else 0.0,
            "seconds": seconds, "states": stats["states"], "cpu": meter.per_item(before, after, len(posted["ids"])),
            "other": meter.other_load(before, after)}


# --- the no-op phase ---------------------------------------------------------------------

def noop_phase(redis_client, tasks: int, timeout: float, procs: list[Proc]) -> dict:
    from hub import tasks as hub_tasks

    counter = f"hub-bench-noop-{secrets.token_hex(4)}"
    app = hub_tasks.celery
    t0 = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            app.send_task(hub_tasks.NOOP_TASK, args=[counter], producer=producer)
    published = time.time()
    try:
        wait_until(lambda: int(redis_client.get(counter) or 0) >= tasks, timeout,
                   f"{tasks} no-op tasks", procs, interval=0.05)
        last = float(redis_client.get(f"{counter}:last"))
        done = int(redis_client.get(counter))
    finally:
        redis_client.delete(counter, f"{counter}:last")
    return {"per_s": done / (last - t0), "seconds": last - t0, "publish_s": published - t0}


def pg_session_count(admin_url: str, database: str) -> int | None:
    """Sessions (connections) PostgreSQL has opened to `database` so far (PostgreSQL 14+):
    a pool that keeps opening and closing connections shows up here."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT sessions FROM pg_stat_database WHERE datname = :d"),
                                {"d": database}).scalar()
    except Exception:
        return None
    finally:
        engine.dispose()


# --- checks ------------------------------------------------------------------------------

def checks(engine, ids: list[str], sandbox_port: int, env: dict) -> list[str]:
    from sqlalchemy import text

    failures = []
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT state, count(*) FROM redemptions GROUP BY state")).all())
        open_messages = conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NULL")).scalar()
    if set(states) != {"fulfilled"} or states["fulfilled"] != len(ids):
        failures.append(f"expected {len(ids)} fulfilled orders, got {states}")
    if open_messages:
        failures.append(f"{open_messages} outbox messages not done")
    status, book = http_json("GET", sandbox_port, "/tango/_sandbox/orders", timeout=60)
    if status != 200 or not isinstance(book, dict):
        failures.append(f"sandbox order book: HTTP {status}")
    else:
        refs = {f"rdm{uuid.UUID(i).hex}" for i in ids}
        missing = [r for r in refs if r not in book]
        twice = {r: book[r]["placements"] for r in refs if r in book and book[r]["placements"] != 1}
        extra = [r for r in book if r not in refs]
        if missing:
            failures.append(f"{len(missing)} references never reached the sandbox, e.g. {missing[:3]}")
        if twice:
            failures.append(f"{len(twice)} references not placed exactly once: {dict(list(twice.items())[:3])}")
        if extra:
            failures.append(f"{len(extra)} unexpected references at the sandbox")
    done = subprocess.run([str(BIN / "hub"), "ledger", "verify"], env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        failures.append(f"hub ledger verify exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}")
    return failures


# --- profiles ----------------------------------------------------------------------------

def start_profiles(procs: dict[str, Proc], outdir: Path, mode: str) -> list[subprocess.Popen]:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    outdir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name in ("worker", "dispatcher", "api"):
        proc = procs[name]
        out = outdir / f"relay-{name}.txt"
        args = [spy, "record", "-p", str(proc.proc.pid), "--subprocesses", "-r", "97", "-f", "raw",
                "-o", str(out), "--nonblocking"]
        # gil: only samples holding the GIL (Python CPU); wall: idle ones too (where time goes).
        args += {"gil": ["--gil"], "wall": ["--idle"]}.get(mode, [])
        spies.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        log(f"py-spy recording {name} -> {out}")
    return spies


def stop_profiles(spies: list[subprocess.Popen]) -> None:
    for p in spies:
        p.send_signal(signal.SIGINT)
    for p in spies:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


# --- main --------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redemptions", type=int, default=1000, help="measured redemptions (one per member)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="`hub worker --concurrency` for both measurements (default: hub worker's own)")
    ap.add_argument("--pool", default=None, help="`hub worker --pool` (default: hub worker's own)")
    ap.add_argument("--database-url", default=DEFAULT_DB_URL, help="admin URL of the PostgreSQL server")
    ap.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis for the broker (a unique queue on it)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent API clients posting redemptions")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="POSTs per second in all (open loop; default: as fast as the clients go)")
    ap.add_argument("--dispatch-args", default="", help="extra arguments for `hub dispatch`, e.g. '--no-listen'")
    ap.add_argument("--warmup", type=int, default=20, help="redemptions before the measured ones")
    ap.add_argument("--noop-tasks", type=int, default=None, help="default: 4 x --redemptions, at least 2000")
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--provider-latency", type=float, default=0.0, metavar="MS",
                    help="hold each provider call this long (a proxy in front of the sandbox)")
    ap.add_argument("--drain", type=int, default=None,
                    help="redemptions for the drain phase (relay alone, from a full queue); default --redemptions, 0: skip")
    ap.add_argument("--timeout", type=float, default=120, help="seconds each phase may take at most")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record worker, dispatcher and API in the relay phase")
    ap.add_argument("--profile-mode", choices=("cpu", "gil", "wall"), default="gil",
                    help="with --profile: py-spy's default (cpu), --gil (Python CPU only) or --idle (wall)")
    args = ap.parse_args()
    noop_tasks = args.noop_tasks or max(2000, 4 * args.redemptions)
    if args.drain is None:
        args.drain = args.redemptions

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-relay-"))
    tag = f"hub_bench_relay_{secrets.token_hex(4)}"
    queue = f"bench-relay-{secrets.token_hex(4)}"
    api_port, sandbox_port = free_port(), free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    dbs = Databases(args.database_url)
    procs: dict[str, Proc] = {}
    redis_client = engine = slow = None
    result: dict = {}
    t_start = time.monotonic()
    try:
        url = dbs.create(tag)
        env = {
            **os.environ,
            "HUB_DATABASE_URL": url,
            "HUB_SECRET_KEY": SECRET_KEY,
            "HUB_ISSUER": f"http://127.0.0.1:{api_port}",
            "HUB_HOST": "127.0.0.1",
            "HUB_PORT": str(api_port),
            "HUB_WORKERS": str(args.api_workers),
            "HUB_INSTANCE_DIR": str(workdir),
            "HUB_BROKER_URL": args.redis_url,
            "HUB_TASK_QUEUE": queue,
        }
        env.pop("HUB_ACCESS_LOG", None)
        provider_url = sandbox
        if args.provider_latency > 0:
            slow = SlowProvider(sandbox_port, args.provider_latency / 1000)
            provider_url = f"http://127.0.0.1:{slow.port}"
            log(f"provider calls held {args.provider_latency:.0f} ms by a proxy on port {slow.port}")
        for name, path in PROVIDER_PATHS.items():
            env[f"HUB_PROVIDER_{name.upper()}_BASE_URL"] = f"{provider_url}/{path}"
        # This process imports hub too (the Celery app for the no-op publisher): same settings.
        os.environ.update({k: env[k] for k in ("HUB_DATABASE_URL", "HUB_SECRET_KEY", "HUB_INSTANCE_DIR",
                                               "HUB_BROKER_URL", "HUB_TASK_QUEUE")})
        import redis
        from sqlalchemy import create_engine

        redis_client = redis.Redis.from_url(args.redis_url)
        redis_pid = int(redis_client.info("server").get("process_id", 0)) or None

        members = args.warmup + args.redemptions + args.drain
        log(f"database {tag}: migrating and enrolling {members} members; queue {queue} on {args.redis_url}")
        data = setup_hub_db(url, members)
        member_ids = [value for kind, value in data["members"] if kind == "member_id"]

        procs["sandbox"] = Proc("sandbox", ["sandbox", "--port", str(sandbox_port)], env, workdir)
        procs["api"] = Proc("api", ["serve"], env, workdir)
        wait_until(lambda: responds(sandbox_port, "/tango/_sandbox/orders"), 30, "the sandbox", [procs["sandbox"]])
        sync_catalog(url, sandbox)
        wait_until(lambda: responds(api_port, "/healthz"), 60, "the API", [procs["api"]])
        token = get_token(api_port, data["client_id"], data["secret"])
        give_points(api_port, token, data["program"], member_ids)
        log(f"{members} members hold points; catalog synced ({time.monotonic() - t_start:.0f}s)")

        worker_args = ["worker"]
        if args.concurrency:
            worker_args += ["--concurrency", str(args.concurrency)]
        if args.pool:
            worker_args += ["--pool", args.pool]
        procs["worker"] = Proc("worker", worker_args, env, workdir)
        procs["dispatcher"] = Proc("dispatcher", ["dispatch", *args.dispatch_args.split()], env, workdir)
        wait_until(lambda: b" ready." in procs["worker"].log_path.read_bytes(), 60, "the worker",
                   [procs["worker"], procs["dispatcher"]])
        log(f"worker up: {' '.join(worker_args)}")
        alive = list(procs.values())

        engine = create_engine(url, pool_size=2)
        warm = post_redemptions(api_port, token, data["program"], member_ids[:args.warmup], args.clients,
                                args.timeout)
        if len(warm["ids"]) != args.warmup:
            raise RuntimeError(f"warm-up POSTs failed: {warm['statuses']} {warm['errors']}")
        wait_resolved(engine, warm["ids"], args.timeout, alive)
        log(f"warm-up: {args.warmup} redemptions fulfilled")

        meter = CpuMeter(procs, args.database_url, tag, redis_pid)
        spies = start_profiles(procs, Path(args.profile), args.profile_mode) if args.profile else []
        cpu0 = meter.snapshot()
        log(f"relay: {args.redemptions} redemptions from {args.clients} clients")
        posted = post_redemptions(api_port, token, data["program"], member_ids[args.warmup:args.warmup + args.redemptions], args.clients,
                                  args.timeout, args.rate)
        log(f"posted {len(posted['ids'])} in {posted['seconds']:.1f}s ({len(posted['ids']) / posted['seconds']:.0f}/s), "
            f"statuses {posted['statuses']}")
        for e in posted["errors"]:
            log(f"error sample: {e}")
        try:
            wait_resolved(engine, posted["ids"], args.timeout, alive)
        except RuntimeError as exc:
            log(str(exc))
        cpu1 = meter.snapshot()
        stop_profiles(spies)
        relay = relay_stats(engine, posted["ids"])
        relay_cpu = meter.per_item(cpu0, cpu1, len(posted["ids"]))
        log(f"relay: {relay['per_s']:.1f}/s, to fulfilled p50 {relay['p50_ms']:.0f}ms p99 {relay['p99_ms']:.0f}ms "
            f"max {relay['max_ms']:.0f}ms, states {relay['states']}, attempts {relay['attempts']}")
        relay_other = meter.other_load(cpu0, cpu1)
        log(f"relay CPU ms per redemption: {relay_cpu}; {cpu_split(cpu0[1], cpu1[1])}; "
            f"other processes: {relay_other} cores")

        log(f"noop: {noop_tasks} tasks")
        cpu2 = meter.snapshot()
        noop = noop_phase(redis_client, noop_tasks, args.timeout, alive)
        cpu3 = meter.snapshot()
        noop_cpu = meter.per_item(cpu2, cpu3, noop_tasks)
        log(f"noop: {noop['per_s']:.0f}/s ({noop['seconds']:.1f}s, publishing took {noop['publish_s']:.1f}s)")
        noop_other = meter.other_load(cpu2, cpu3)
        log(f"noop CPU ms per task: {noop_cpu}; {cpu_split(cpu2[1], cpu3[1])}; other processes: {noop_other} cores")

        drain = {"ids": [], "per_s": 0.0, "cpu": None, "other": None}
        if args.drain:
            log(f"drain: {args.drain} redemptions queued while the worker does not consume, then drained")
            node = f"celery@{socket.gethostname()}"
            first = args.warmup + args.redemptions
            drain = drain_phase(
                engine, queue, node,
                lambda: post_redemptions(api_port, token, data["program"], member_ids[first:], args.clients,
                                         args.timeout),
                args.drain, args.timeout, alive, meter)
            log(f"drain: {drain['per_s']:.1f}/s ({drain['seconds']:.1f}s), states {drain['states']}")
            log(f"drain CPU ms per redemption: {drain['cpu']}; other processes: {drain['other']} cores")

        pg_sessions = pg_session_count(args.database_url, tag)
        log(f"PostgreSQL sessions opened on {tag} during the run: {pg_sessions}")

        failures = []
        if len(drain["ids"]) != args.drain:
            failures.append(f"drain phase: {args.drain - len(drain['ids'])} POSTs failed")
        if len(posted["ids"]) != args.redemptions:
            failures.append(f"{args.redemptions - len(posted['ids'])} POSTs failed: {posted['statuses']}")
        failures += checks(engine, warm["ids"] + posted["ids"] + drain["ids"], sandbox_port, env)
        for f in failures:
            log(f"FAILURE: {f}")
        post_lat = sorted(posted["latencies"]) or [0.0]
        result = {
            "redemptions_per_s": round(relay["per_s"], 1),
            "p99_ms_to_fulfilled": round(relay["p99_ms"], 1) if relay["p99_ms"] is not None else None,
            "p50_ms_to_fulfilled": round(relay["p50_ms"], 1) if relay["p50_ms"] is not None else None,
            "noop_per_s": round(noop["per_s"], 1),
            "ratio": round(relay["per_s"] / noop["per_s"], 3) if noop["per_s"] else None,
            "drain_per_s": round(drain["per_s"], 1),
            "drain_ratio": round(drain["per_s"] / noop["per_s"], 3) if noop["per_s"] and args.drain else None,
            "posts_per_s": round(len(posted["ids"]) / posted["seconds"], 1),
            "post_p99_ms": round(1000 * post_lat[min(len(post_lat) - 1, int(len(post_lat) * 0.99))], 1),
            "attempts": relay["attempts"],
            "pg_sessions": pg_sessions,
            "redemptions": args.redemptions,
            "noop_tasks": noop_tasks,
            "concurrency": args.concurrency or "default",
            "pool": args.pool or "default",
            "clients": args.clients,
            "rate": args.rate or None,
            "dispatch_args": args.dispatch_args or None,
            "provider_latency_ms": args.provider_latency,
            "cpu_ms_per_redemption": relay_cpu,
            "cpu_ms_per_noop": noop_cpu,
            "cpu_ms_per_drained": drain["cpu"],
            "other_load_cores": {"relay": relay_other, "noop": noop_other, "drain": drain["other"]},
            "failures": failures,
            "ok": not failures,
            "seconds": round(time.monotonic() - t_start, 1),
        }
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:
        for name, p in procs.items():
            log(f"--- {name} log tail ---\n{p.tail(1500)}")
        result = {"ok": False, "failures": [f"{type(exc).__name__}: {exc}"]}
        log(f"FAILED: {exc}")
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
        if slow is not None:
            slow.stop()
        if engine is not None:
            engine.dispose()
        if redis_client is not None:
            try:
                keys = list(redis_client.scan_iter(match=f"*{queue}*"))
                if keys:
                    redis_client.delete(*keys)
            except Exception as exc:
                log(f"could not clean Redis: {exc}")
        dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
