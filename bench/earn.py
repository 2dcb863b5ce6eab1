"""Benchmark of the earn path: POST /v1/transactions and /v1/transactions/batch, against
pgbench TPC-B on the same PostgreSQL server with the same client count, and the same load on
a second program rated by 50 rules and 5 promotions (rules_document): `rules_ratio` is its
figure over the base rule's, from the same run (the issue's target: at least 0.85).

    /tmp/venv/bin/python bench/earn.py [--database-url URL] [--clients 16] [--seconds 30] [--rounds 3]

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
# The hub servers' HUB_SECRET_KEY. The data made here is sealed and indexed under keys derived
# from it (docs/encryption.md), so that the servers open and find it.
SECRET_KEY = secrets.token_urlsafe(32)
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


CATEGORIES = [f"cat{i:02d}" for i in range(18)] + ["coffee", "books"]
STORES = [f"S{i:02d}" for i in range(1, 11)]
# What a purchase carries besides its amount (the same for both programs): a channel, a
# store, a line of a category, or nothing.
EXTRAS = [
    "",
    ',"channel":"in_store","store_id":"S01","items":[{"category":"coffee","amount":"500"}]',
    ',"channel":"online","items":[{"category":"books","amount":"800"},{"category":"cat03","amount":"100"}]',
    ',"channel":"in_store","store_id":"S07"',
    ',"items":[{"category":"unknown","amount":"900"}]',
]


def rules_document(now: datetime) -> dict:
    """50 rules of every kind and 5 promotions (3 targeted at tiers), all in force at `now`."""
    def cap(n):
        return {"per_transaction": n}

    rules = [{"id": f"cat-{c}", "kind": "multiplier", "multiplier": f"1.{i % 9 + 1}", "when": {"categories": [c]},
              "cap": cap(500)} for i, c in enumerate(CATEGORIES)]
    rules += [{"id": f"store-{s}", "kind": "multiplier", "multiplier": "1.5", "group": "store",
               "priority": i % 3, "when": {"stores": [s]}, "cap": cap(300)} for i, s in enumerate(STORES)]
    rules += [{"id": "online", "kind": "multiplier", "multiplier": "1.2", "when": {"channel": "online"}, "cap": cap(200)},
              {"id": "in-store", "kind": "multiplier", "multiplier": "1.1", "when": {"channel": "in_store"}, "cap": cap(200)}]
    days = [["mon", "tue"], ["wed"], ["thu", "fri"], ["sat", "sun"]]
    rules += [{"id": f"window-{i}", "kind": "multiplier", "multiplier": "2",
               "when": {"days": days[i % 4], "time": {"from": f"{(i * 3) % 24:02d}:00", "to": f"{(i * 3 + 6) % 24:02d}:00"}},
               "cap": cap(100)} for i in range(8)]
    rules += [{"id": f"bonus-{i}", "kind": "bonus", "bonus": 5 + i,
               "when": {"min_amount": str(100_000 * (i + 1)), **({"categories": [CATEGORIES[i]]} if i % 2 else {})}}
              for i in range(8)]
    rules += [{"id": "coffee-monthly", "kind": "multiplier", "multiplier": "3", "priority": 1,
               "when": {"categories": ["coffee"]},
               "cap": {"per_member": 50, "period": "month"}},
              {"id": "max", "kind": "cap", "cap": cap(5000)}]
    assert len(rules) == 50
    window = {"starts_at": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "ends_at": (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    promotions = [
        {"id": "coffee-week", "name": "Coffee week", "multiplier": "2", "when": {"categories": ["coffee"]},
         "budget_points": 10**9, **window},
        {"id": "online-bonus", "name": "Online bonus", "bonus": 3, "when": {"channel": "online"},
         "budget_points": 10**9, **window},
        {"id": "gold-double", "name": "Gold double", "multiplier": "2", "target": {"tiers": ["gold"]},
         "budget_points": 10**9, **window},
        {"id": "silver-bonus", "name": "Silver bonus", "bonus": 2, "target": {"tiers": ["silver"]},
         "when": {"stores": STORES[:3]}, "budget_points": 10**9, **window},
        {"id": "gold-books", "name": "Gold books", "bonus": 10, "target": {"tiers": ["gold"]},
         "when": {"categories": ["books"]}, "budget_points": 10**9, **window},
    ]
    return {
        "earning": {"timezone": "Asia/Jakarta", "rules": rules},
        "promotions": promotions,
    }


def _enrol(db, program_id, members: int, tiers: tuple[str | None, ...] = (None,)) -> list[list[str]]:
    """`members` members of the program, in bulk through the real tables (tiers in turn);
    each by either identifier: a random pick is a random member and kind."""
    from hub.ledger.models import Account
    from hub.privacy import blind
    from hub.programs import service
    from hub.programs.models import Member, Membership, MembershipIdentifier

    now = datetime.now(timezone.utc)
    member_ids = [uuid.uuid4() for _ in range(members)]
    membership_ids = [uuid.uuid4() for _ in range(members)]
    prefix = f"m{secrets.token_hex(2)}"
    external = [f"{prefix}-{i:06d}" for i in range(members)]
    with db.engine.begin() as conn:
        account_ids = conn.execute(
            insert(Account).returning(Account.id, sort_by_parameter_order=True),
            [{"ledger": program_id, "code": service.MEMBER_ACCOUNT, "cached": True,
              "no_overdraft": True, "created_at": now} for _ in range(members)],
        ).scalars().all()
        conn.execute(insert(Member), [{"id": m, "created_at": now} for m in member_ids])
        conn.execute(
            insert(Membership),
            [{"id": ms, "member_id": m, "program_id": program_id, "account_id": a, "created_at": now,
              "tier": tiers[i % len(tiers)]}
             for i, (ms, m, a) in enumerate(zip(membership_ids, member_ids, account_ids))],
        )
        conn.execute(
            insert(MembershipIdentifier),
            [{"id": uuid.uuid4(), "membership_id": ms, "program_id": program_id,
              "kind": "external_id", "value": e, "value_index": blind.index("external_id", e)}
             for ms, e in zip(membership_ids, external)],
        )
        # Statistics for the tables just filled. Not for the empty ones (transfers,
        # purchases): "analyzed, 0 rows" makes PostgreSQL cache sequential-scan plans for
        # their foreign-key checks, which then read the growing table on every insert.
        for table in ("ledger_accounts", "members", "memberships", "membership_identifiers"):
            conn.execute(text(f"ANALYZE {table}"))
    return [["external_id", e] for e in external] + [["member_id", str(m)] for m in member_ids]


def install_keyring(db) -> None:
    """Seal and index what this process writes as the servers (SECRET_KEY) will read it."""
    from types import SimpleNamespace

    from hub.privacy import keyring

    keyring.install(SimpleNamespace(secret_key=SECRET_KEY, data_keys="", index_key=""), db.engine)


def setup_hub_db(url: str, members: int, rules: bool = False) -> dict:
    """Schema, a partner, its program and API client (service functions), and `members`
    members enrolled in bulk. With `rules`, a second program of the partner, as many members
    (holding tiers), and a rule document in force from now (rules_document) in
    data["rules"]: {program, members, from}."""
    from hub import migrations
    from hub.db import Database
    from hub.identity.clients import create_client
    from hub.programs import service
    from hub.rules import versions

    migrations.upgrade(url)
    db = Database(url, 2)
    install_keyring(db)
    try:
        code = f"B{secrets.token_hex(3).upper()}"

        def program(s, program_code):
            return service.create_program(
                s, partner_code=code, code=program_code, name="Bench program",
                point_value=Decimal("10"), earn_currency="IDR", earn_rate=Decimal("0.001"), by="bench",
            )

        def reference(s):
            partner = service.create_partner(s, code, "Bench partner", by="bench")
            made = program(s, f"G{code[1:]}")
            client, secret = create_client(s, name="bench pos", partner_id=partner.id, by="bench")
            return made.id, made.code, client.client_id, secret

        program_id, program_code, client_id, secret = db.write(reference)
        data = {"program": program_code, "client_id": client_id, "secret": secret,
                "members": _enrol(db, program_id, members)}
        if rules:
            def rated(s):
                made = program(s, f"R{code[1:]}")
                version = versions.publish(s, made.id, rules_document(datetime.now(timezone.utc)), created_by="bench")
                return made.id, made.code, version.effective_from

            rules_id, rules_code, since = db.write(rated)
            data["rules"] = {"program": rules_code, "from": since,
                             "members": _enrol(db, rules_id, members, ("gold", "silver", None))}
    finally:
        db.dispose()
    return data


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
        self.secret_key = secret_key or SECRET_KEY
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


def profile_workers(server: Server, seconds: float, outdir: str | None, phase: str = "earn") -> list[subprocess.Popen]:
    """py-spy record of every worker for `seconds` into `outdir` (--profile; None: nothing)."""
    if not outdir:
        return []
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
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


def _phases(scratch: Scratch, server: Server, args, skip: set, batch_seconds: int, base: dict,
            label: str, seconds: int | None = None) -> tuple[dict, dict]:
    """The single and batch phases against one program: (single, batch) loadgen results.
    `seconds`: of the single phase (default --seconds)."""
    seconds = seconds or args.seconds
    single = {"ok": 0, "errors": 0, "p50_ms": 0.0, "p99_ms": 0.0}
    if "single" not in skip:
        log(f"[{label}] POST /v1/transactions: {args.clients} clients, {args.warmup}s warm-up + {seconds}s")
        spies = profile_workers(server, args.warmup + seconds, args.profile, f"{label}-earn")
        workers = server.workers()
        cpu0 = cpu_seconds(workers)
        pg0 = cpu_seconds(backend_pids(args.database_url, scratch.tag))
        machine0 = cpu_times()
        single = loadgen({**base, "mode": "single", "run": f"s{label}", "clients": args.clients,
                          "seconds": seconds, "warmup": args.warmup}, workers)
        done = max(single["total"], 1)
        # The backends' CPU since the phase began (the pool's connections outlive phases);
        # those opened during it count from 0.
        pg_cpu = cpu_seconds(backend_pids(args.database_url, scratch.tag)) - pg0
        log(f"[{label}] CPU per request (whole phase, warm-up too, {done} requests): hub workers "
            f"{1000 * (cpu_seconds(workers) - cpu0) / done:.2f} ms, "
            f"postgres backends ~{1000 * pg_cpu / done:.2f} ms; {cpu_split(machine0, cpu_times())}")
        for p in spies:
            p.wait(timeout=60)
        log(f"[{label}] single: {single['ok'] / seconds:.1f}/s p50 {single['p50_ms']:.1f}ms "
            f"p90 {single['p90_ms']:.1f}ms p99 {single['p99_ms']:.1f}ms max {single['max_ms']:.1f}ms "
            f"statuses {single['statuses']} exceptions {single['exceptions']}")
        for sample in single["error_samples"]:
            log(f"error sample: {sample}")

    batch = {"purchases": 0}
    if "batch" not in skip:
        log(f"[{label}] POST /v1/transactions/batch: {args.batch_clients} clients x {args.batch_size} "
            f"items, 2s warm-up + {batch_seconds}s")
        spies = profile_workers(server, 2 + batch_seconds, args.profile, f"{label}-batch")
        workers = server.workers()
        cpu0 = cpu_seconds(workers)
        pg0 = cpu_seconds(backend_pids(args.database_url, scratch.tag))
        machine0 = cpu_times()
        batch = loadgen({**base, "mode": "batch", "run": f"b{label}", "clients": args.batch_clients,
                         "batch_size": args.batch_size, "seconds": batch_seconds, "warmup": 2},
                        workers)
        done = max(batch["purchases"] + batch["unmeasured_purchases"], 1)
        pg_cpu = cpu_seconds(backend_pids(args.database_url, scratch.tag)) - pg0
        log(f"[{label}] CPU per purchase (whole phase, warm-up too, {done} purchases): hub workers "
            f"{1e6 * (cpu_seconds(workers) - cpu0) / done:.0f} us, postgres backends "
            f"~{1e6 * pg_cpu / done:.0f} us; {cpu_split(machine0, cpu_times())}")
        for p in spies:
            p.wait(timeout=60)
        log(f"[{label}] batch: {batch['ok']} requests, {batch['purchases'] / batch_seconds:.0f} purchases/s, "
            f"p50 {batch['p50_ms']:.0f}ms p99 {batch['p99_ms']:.0f}ms statuses {batch['statuses']} "
            f"exceptions {batch['exceptions']}")
        for sample in batch["error_samples"]:
            log(f"error sample: {sample}")
    return single, batch


def _figures(single: dict, batch: dict, seconds: int, batch_seconds: int) -> dict:
    return {
        "earn_per_s": round(single["ok"] / seconds, 1),
        "p50_ms": round(single["p50_ms"], 2),
        "p99_ms": round(single["p99_ms"], 2),
        "errors": single["errors"],
        "batch_purchases_per_s": round(batch["purchases"] / batch_seconds, 1),
    }


def _merged(results: list[dict], measured: int, seconds: int) -> dict:
    """Single-phase results of runs adding up to `measured` seconds, as if over `seconds`:
    counts scaled, latencies their mean (p50) or worst (p99)."""
    return {
        "ok": sum(r["ok"] for r in results) * seconds / measured,
        "errors": sum(r["errors"] for r in results),
        "p50_ms": sum(r["p50_ms"] for r in results) / len(results),
        "p99_ms": max(r["p99_ms"] for r in results),
    }


def _measure(scratch: Scratch, args, skip: set, batch_seconds: int) -> dict:
    url = scratch.dbs.create(scratch.tag)
    compare = "rules" not in skip
    log(f"database {scratch.tag}: migrating and enrolling {args.members} members"
        + (" in each of two programs (base rule; 50 rules and 5 promotions)" if compare else ""))
    t0 = time.monotonic()
    data = setup_hub_db(url, args.members, rules=compare)
    log(f"setup took {time.monotonic() - t0:.1f}s")

    port = free_port()
    server = scratch.start_server(url, port, args.workers)
    server.wait_ready()
    token = get_token(port, data["client_id"], data["secret"])
    log(f"hub up on port {port}, workers {server.workers()}")
    # Both programs get the same load: the same purchases, at a moment the rules are in force.
    since = data["rules"]["from"] if compare else datetime.now(timezone.utc) - timedelta(hours=1)
    base = {"host": "127.0.0.1", "port": port, "token": token, "program": data["program"],
            "members": data["members"], "extras": EXTRAS,
            "occurred_at": (since + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    rated = {**base, "program": data["rules"]["program"], "members": data["rules"]["members"]} if compare else None
    if compare and "single" not in skip:
        # base, rules, rules, base, --rounds times, in segments adding up to --seconds per
        # program: a drift of the machine's speed (on a shared host it moves by 20% within
        # minutes) or of the database's size weighs on both figures alike. After a program's
        # first segment the server is warm: one second of warm-up.
        segment = max(1, args.seconds // (2 * args.rounds))
        runs = {"base": [], "rules": []}
        for label in ("base", "rules", "rules", "base") * args.rounds:
            warm = args.warmup if not runs[label] else min(args.warmup, 1)
            runs[label].append(_phases(scratch, server, argparse.Namespace(**{**vars(args), "warmup": warm}),
                                       skip | {"batch"}, batch_seconds, base if label == "base" else rated,
                                       label, segment)[0])
        measured = 2 * args.rounds * segment
        single, rules_single = (_merged(runs[label], measured, args.seconds) for label in ("base", "rules"))
    else:
        single, _ = _phases(scratch, server, args, skip | {"batch"}, batch_seconds, base, "base")
        rules_single = single
    _, batch = _phases(scratch, server, args, skip | {"single"}, batch_seconds, base, "base")
    _, rules_batch = _phases(scratch, server, args, skip | {"single"}, batch_seconds, rated, "rules") if compare else (None, batch)

    scratch.stop_server()
    log(f"sequential scans: {scan_report(url)}")
    verify_ledger(url)

    pgbench_tps = 0.0
    if "pgbench" not in skip:
        pgbench_tps = run_pgbench(scratch.dbs, f"{scratch.tag}_pgbench", args.clients, args.seconds)
        log(f"pgbench: {pgbench_tps:.1f} tps")

    result = _figures(single, batch, args.seconds, batch_seconds)
    result.update({
        "pgbench_tps": round(pgbench_tps, 1),
        "ratio": round(result["earn_per_s"] / pgbench_tps, 3) if pgbench_tps else None,
        "batch_ratio": round(result["batch_purchases_per_s"] / pgbench_tps, 3) if pgbench_tps else None,
        "clients": args.clients,
        "seconds": args.seconds,
    })
    if compare:
        rules = _figures(rules_single, rules_batch, args.seconds, batch_seconds)
        result.update({f"rules_{name}": value for name, value in rules.items()})
        # The target: rating by 50 rules and 5 promotions within 15% of the base rule.
        result["rules_ratio"] = round(rules["earn_per_s"] / result["earn_per_s"], 3) if result["earn_per_s"] else None
        result["rules_batch_ratio"] = (round(rules["batch_purchases_per_s"] / result["batch_purchases_per_s"], 3)
                                       if result["batch_purchases_per_s"] else None)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=DEFAULT_URL, help="admin URL of the PostgreSQL server")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3,
                    help="base-rules-rules-base rounds of the single phase (rules comparison)")
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-clients", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--batch-seconds", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of phases to skip: single,batch,pgbench,rules"
                    " (rules: the same load on a program with 50 rules and 5 promotions, compared)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record the workers during the single and batch phases")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    batch_seconds = args.batch_seconds
    return run(args.database_url, lambda scratch: _measure(scratch, args, skip, batch_seconds))


if __name__ == "__main__":
    sys.exit(main())
