"""Benchmark of the earn path: POST /v1/transactions and /v1/transactions/batch, against
pgbench TPC-B on the same PostgreSQL server with the same client count.

    /tmp/venv/bin/python bench/earn.py [--database-url URL] [--clients 16] [--seconds 20]

It makes its own databases (dropped at the end, also on failure or Ctrl-C), enrols 10,000
members in bulk through the real tables, starts `hub serve` with HUB_WORKERS=2, drives it with
bench/loadgen.py (its own process), runs pgbench, checks the ledger, and prints one JSON line
on stdout. Progress goes to stderr. Only loopback traffic; every phase is bounded in time.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Databases:
    """Databases this run creates on the admin URL's server; all dropped by drop_all()."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self, name: str) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.names:
            try:
                with self.admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                log(f"dropped database {name}")
            except Exception as exc:  # keep dropping the others
                log(f"could not drop {name}: {exc}")
        self.admin.dispose()


def setup_hub_db(url: str, members: int) -> dict:
    """Schema, a partner, its program and API client (service functions), and `members`
    members enrolled in bulk: account, member, membership and external_id rows."""
    from hub import migrations
    from hub.db import Database
    from hub.identity.clients import create_client
    from hub.ledger.models import Account
    from hub.programs import service
    from hub.programs.models import Member, Membership, MembershipIdentifier

    migrations.upgrade(url)
    db = Database(url, 2)
    try:
        code = f"B{secrets.token_hex(3).upper()}"

        def reference(s):
            partner = service.create_partner(s, code, "Bench partner")
            program = service.create_program(
                s, partner_code=code, code=f"G{code[1:]}", name="Bench program",
                point_value=Decimal("10"), earn_currency="IDR", earn_rate=Decimal("0.001"),
            )
            client, secret = create_client(s, name="bench pos", partner_id=partner.id)
            return program.id, program.code, client.client_id, secret

        program_id, program_code, client_id, secret = db.write(reference)
        now = datetime.now(timezone.utc)
        member_ids = [uuid.uuid4() for _ in range(members)]
        membership_ids = [uuid.uuid4() for _ in range(members)]
        external = [f"m-{i:06d}" for i in range(members)]
        with db.engine.begin() as conn:
            account_ids = conn.execute(
                insert(Account).returning(Account.id, sort_by_parameter_order=True),
                [{"ledger": program_id, "code": service.MEMBER_ACCOUNT, "cached": True,
                  "no_overdraft": True, "created_at": now} for _ in range(members)],
            ).scalars().all()
            conn.execute(insert(Member), [{"id": m, "created_at": now} for m in member_ids])
            conn.execute(
                insert(Membership),
                [{"id": ms, "member_id": m, "program_id": program_id, "account_id": a,
                  "created_at": now}
                 for ms, m, a in zip(membership_ids, member_ids, account_ids)],
            )
            conn.execute(
                insert(MembershipIdentifier),
                [{"id": uuid.uuid4(), "membership_id": ms, "program_id": program_id,
                  "kind": "external_id", "value": e}
                 for ms, e in zip(membership_ids, external)],
            )
            # Statistics for the tables just filled. Not for the empty ones (transfers,
            # purchases): "analyzed, 0 rows" makes PostgreSQL cache sequential-scan plans for
            # their foreign-key checks, which then read the growing table on every insert.
            for table in ("ledger_accounts", "members", "memberships", "membership_identifiers"):
                conn.execute(text(f"ANALYZE {table}"))
    finally:
        db.dispose()
    # Each member by either identifier: a random pick is a random member and kind.
    refs = [["external_id", e] for e in external] + [["member_id", str(m)] for m in member_ids]
    return {"program": program_code, "client_id": client_id, "secret": secret, "members": refs}


def stop_session(proc: subprocess.Popen, grace: float) -> None:
    """Stop a process started with start_new_session, and everything under it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


class Server:
    """`hub serve` with HUB_WORKERS workers, in its own session so it can be stopped whole."""

    def __init__(self, url: str, port: int, workers: int, logdir: Path, secret_key: str | None = None):
        self.port = port
        self.secret_key = secret_key or secrets.token_urlsafe(32)
        env = {
            **os.environ,
            "HUB_DATABASE_URL": url,
            "HUB_SECRET_KEY": self.secret_key,
            "HUB_ISSUER": f"http://127.0.0.1:{port}",
            "HUB_PORT": str(port),
            "HUB_HOST": "127.0.0.1",
            "HUB_WORKERS": str(workers),
            "HUB_INSTANCE_DIR": str(logdir),
        }
        env.pop("HUB_ACCESS_LOG", None)
        self.log_path = logdir / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN / "hub"), "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub serve exited ({self.proc.returncode}); see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError("hub did not become healthy in time")

    def workers(self) -> list[int]:
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(k) for k in kids]

    def stop(self) -> None:
        stop_session(self.proc, grace=15)
        self._log.close()


class Scratch:
    """What one benchmark run makes on this machine: its databases (on the admin URL's server),
    a work folder and the `hub serve` it starts. `close` removes them all."""

    def __init__(self, admin_url: str):
        self.dbs = Databases(admin_url)
        self.tag = f"hub_bench_{secrets.token_hex(4)}"
        self.workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
        self.server: Server | None = None

    def start_server(self, url: str, port: int, workers: int) -> Server:
        self.server = Server(url, port, workers, self.workdir)
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.stop_server()
        self.dbs.drop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)


def run(admin_url: str, measure) -> int:
    """Run `measure(scratch)` and print the result it returns as one JSON line. Everything it
    made is removed afterwards, also on a failure, Ctrl-C or SIGTERM (exit code 130)."""
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    scratch = Scratch(admin_url)
    try:
        result = measure(scratch)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        scratch.close()
    print(json.dumps(result), flush=True)
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (noise-robust cost per request)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def cpu_times() -> list[int]:
    """The machine's /proc/stat cpu line: user nice system idle iowait irq softirq steal."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def cpu_split(before: list[int], after: list[int]) -> str:
    d = [b - a for a, b in zip(before, after)]
    total = sum(d) or 1
    busy = d[0] + d[1] + d[2] + d[5] + d[6]
    return f"machine CPU: busy {100 * busy / total:.0f}%, idle {100 * (d[3] + d[4]) / total:.0f}%, steal {100 * d[7] / total:.0f}%"


def backend_pids(url: str, database: str) -> list[int]:
    """PostgreSQL backends serving `database` (the hub's pooled connections)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
                {"d": database},
            ).scalars())
    finally:
        engine.dispose()


def get_token(port: int, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/oauth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["access_token"]


def connections_per_worker(port: int, workers: list[int]) -> dict[int, int]:
    """Established client connections to `port`, per server worker (keep-alive pins a
    connection to the worker that accepted it, so an uneven split idles a core)."""
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {w: len(re.findall(rf"pid={w},", out)) for w in workers}


def loadgen(cfg: dict, workers: list[int] | None = None) -> dict:
    budget = cfg["warmup"] + cfg["seconds"] + 60
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "loadgen.py")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        proc.stdin.write(json.dumps(cfg))
        proc.stdin.close()
        if workers:
            time.sleep(cfg["warmup"] + min(1, cfg["seconds"] / 2))
            log(f"client connections per worker: {connections_per_worker(cfg['port'], workers)}")
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=budget)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err[-2000:]}")
    return json.loads(out)


def profile_workers(server: Server, seconds: float, outdir: Path, phase: str = "earn") -> list[subprocess.Popen]:
    """py-spy record of every worker for `seconds` (only with --profile)."""
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    procs = []
    for pid in server.workers():
        out = outdir / f"{phase}-worker-{pid}.txt"
        procs.append(subprocess.Popen(
            # --gil: only samples that hold the GIL, i.e. Python CPU, not waits on the database.
            [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "97", "-f", "raw",
             "-o", str(out), "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        log(f"py-spy recording worker {pid} -> {out}")
    return procs


def run_pgbench(dbs: Databases, name: str, clients: int, seconds: int) -> float:
    url = make_url(dbs.create(name))
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    conn = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    log(f"pgbench -i -s 10 ({name})")
    subprocess.run(["pgbench", "-i", "-s", "10", "-q", *conn, name], env=env, check=True,
                   capture_output=True, timeout=300)
    log(f"pgbench -c {clients} -j 2 -T {seconds}")
    done = subprocess.run(["pgbench", "-c", str(clients), "-j", "2", "-T", str(seconds), *conn, name],
                          env=env, check=True, capture_output=True, text=True, timeout=seconds + 120)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if not m:
        raise RuntimeError(f"cannot parse pgbench output:\n{done.stdout}")
    return float(m.group(1))


def scan_report(url: str) -> str:
    """Tables read by sequential scans during the run (a plan gone wrong shows up here)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT relname, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables"
                " WHERE seq_tup_read > 1000 ORDER BY seq_tup_read DESC LIMIT 5"
            )).all()
        return ", ".join(f"{r[0]}: {r[1]} seq scans reading {r[2]} rows, {r[3]} index scans" for r in rows) or "none"
    finally:
        engine.dispose()


def verify_ledger(url: str) -> None:
    from hub.db import Database
    from hub.ledger.verify import verify
    from hub.programs.models import PointTransaction

    db = Database(url, 1)
    try:
        with db.read() as s:
            report = verify(s)
            txns = s.scalar(select(func.count()).select_from(PointTransaction))
        log(f"ledger: {report.transfers} transfers, {report.accounts} accounts, {txns} purchases; "
            + ("OK" if report.ok else f"{len(report.violations)} VIOLATIONS: {report.violations[:5]}"))
        if not report.ok:
            raise RuntimeError("ledger verification failed")
    finally:
        db.dispose()


def _measure(scratch: Scratch, args, skip: set, batch_seconds: int) -> dict:
    url = scratch.dbs.create(scratch.tag)
    log(f"database {scratch.tag}: migrating and enrolling {args.members} members")
    t0 = time.monotonic()
    data = setup_hub_db(url, args.members)
    log(f"setup took {time.monotonic() - t0:.1f}s")

    port = free_port()
    server = scratch.start_server(url, port, args.workers)
    server.wait_ready()
    token = get_token(port, data["client_id"], data["secret"])
    log(f"hub up on port {port}, workers {server.workers()}")
    base = {"host": "127.0.0.1", "port": port, "token": token, "program": data["program"],
            "members": data["members"],
            "occurred_at": (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}

    single = {"ok": 0, "errors": 0, "p50_ms": 0.0, "p99_ms": 0.0}
    if "single" not in skip:
        log(f"POST /v1/transactions: {args.clients} clients, {args.warmup}s warm-up + {args.seconds}s")
        spies = []
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            spies = profile_workers(server, args.warmup + args.seconds, Path(args.profile))
        workers = server.workers()
        cpu0 = cpu_seconds(workers)
        machine0 = cpu_times()
        single = loadgen({**base, "mode": "single", "run": "s", "clients": args.clients,
                          "seconds": args.seconds, "warmup": args.warmup}, workers)
        done = max(single["total"], 1)
        # Backends opened during the phase count from 0; those opened before it (during
        # the token request) slightly overcount. Good enough to see where CPU goes.
        pg_cpu = cpu_seconds(backend_pids(args.database_url, scratch.tag))
        log(f"CPU per request (whole phase, warm-up too, {done} requests): hub workers "
            f"{1000 * (cpu_seconds(workers) - cpu0) / done:.2f} ms, "
            f"postgres backends ~{1000 * pg_cpu / done:.2f} ms; {cpu_split(machine0, cpu_times())}")
        for p in spies:
            p.wait(timeout=60)
        log(f"single: {single['ok'] / args.seconds:.1f}/s p50 {single['p50_ms']:.1f}ms "
            f"p90 {single['p90_ms']:.1f}ms p99 {single['p99_ms']:.1f}ms max {single['max_ms']:.1f}ms "
            f"statuses {single['statuses']} exceptions {single['exceptions']}")
        for sample in single["error_samples"]:
            log(f"error sample: {sample}")

    batch = {"purchases": 0}
    if "batch" not in skip:
        log(f"POST /v1/transactions/batch: {args.batch_clients} clients x {args.batch_size} "
            f"items, 2s warm-up + {batch_seconds}s")
        spies = []
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            spies = profile_workers(server, 2 + batch_seconds, Path(args.profile), "batch")
        workers = server.workers()
        cpu0 = cpu_seconds(workers)
        pg0 = cpu_seconds(backend_pids(args.database_url, scratch.tag))
        machine0 = cpu_times()
        batch = loadgen({**base, "mode": "batch", "run": "b", "clients": args.batch_clients,
                         "batch_size": args.batch_size, "seconds": batch_seconds, "warmup": 2},
                        workers)
        done = max(batch["purchases"] + batch["unmeasured_purchases"], 1)
        pg_cpu = cpu_seconds(backend_pids(args.database_url, scratch.tag)) - pg0
        log(f"CPU per purchase (whole phase, warm-up too, {done} purchases): hub workers "
            f"{1e6 * (cpu_seconds(workers) - cpu0) / done:.0f} us, postgres backends "
            f"~{1e6 * pg_cpu / done:.0f} us; {cpu_split(machine0, cpu_times())}")
        for p in spies:
            p.wait(timeout=60)
        log(f"batch: {batch['ok']} requests, {batch['purchases'] / batch_seconds:.0f} purchases/s, "
            f"p50 {batch['p50_ms']:.0f}ms p99 {batch['p99_ms']:.0f}ms statuses {batch['statuses']} "
            f"exceptions {batch['exceptions']}")
        for sample in batch["error_samples"]:
            log(f"error sample: {sample}")

    scratch.stop_server()
    log(f"sequential scans: {scan_report(url)}")
    verify_ledger(url)

    pgbench_tps = 0.0
    if "pgbench" not in skip:
        pgbench_tps = run_pgbench(scratch.dbs, f"{scratch.tag}_pgbench", args.clients, args.seconds)
        log(f"pgbench: {pgbench_tps:.1f} tps")

    earn_per_s = single["ok"] / args.seconds
    batch_per_s = batch["purchases"] / batch_seconds
    return {
        "earn_per_s": round(earn_per_s, 1),
        "p50_ms": round(single["p50_ms"], 2),
        "p99_ms": round(single["p99_ms"], 2),
        "errors": single["errors"],
        "pgbench_tps": round(pgbench_tps, 1),
        "ratio": round(earn_per_s / pgbench_tps, 3) if pgbench_tps else None,
        "batch_purchases_per_s": round(batch_per_s, 1),
        "batch_ratio": round(batch_per_s / pgbench_tps, 3) if pgbench_tps else None,
        "clients": args.clients,
        "seconds": args.seconds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=DEFAULT_URL, help="admin URL of the PostgreSQL server")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-clients", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--batch-seconds", type=int, default=None, help="default: --seconds")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: single,batch,pgbench")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record the workers during the single and batch phases")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    batch_seconds = args.batch_seconds or args.seconds
    return run(args.database_url, lambda scratch: _measure(scratch, args, skip, batch_seconds))


if __name__ == "__main__":
    sys.exit(main())
