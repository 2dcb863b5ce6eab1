"""Benchmark of conversions between two hub programs, against pgbench TPC-B on the same
PostgreSQL server with the same client count.

    .venv/bin/python bench/convert.py [--database-url URL] [--clients 16] [--seconds 20]

It makes its own databases (dropped at the end, also on failure or Ctrl-C), sets up one partner
with two programs (point values 10 and 4) and the pairs between them open both ways (0.5% fee,
minimum 100 in steps of 100), and 10,000 members holding 1,000,000 points in each, written in
bulk through the real tables (transfers from the issuance accounts, so the ledger verifies).
It starts `hub serve` with two workers and drives it with bench/loadgen.py in "convert" mode:
each client converts for random members, in both directions, as a partner back end would: a
quote, then its execution. One conversion is that pair of requests. A second phase executes
quotes the benchmark signed ahead (with the server's key, as POST /v1/conversions/quotes
would have), so it measures the conversion itself: the write transaction, which pgbench's
TPC-B is the anchor for. Then it runs pgbench, checks the ledger and prints one JSON line:
ratio = conversions_per_s / pgbench_tps, conversions being executions of quotes (the second
phase); flow_ratio = the first phase's quote-and-execute pairs per second / pgbench_tps.
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from decimal import Decimal

from psycopg.types.json import Jsonb
from sqlalchemy import func, insert, select, text

from earn import (
    Scratch, backend_pids, cpu_seconds, cpu_split, cpu_times, free_port, get_token, loadgen, log,
    profile_workers, run, run_pgbench, scan_report, verify_ledger,
)

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HOLDING = 1_000_000


def setup_hub_db(url: str, members: int) -> dict:
    """Schema, a partner with two programs, the pairs open, its API client, and `members`
    members of both programs, each holding HOLDING points in each."""
    from hub import migrations
    from hub.db import Database, insert_many
    from hub.exchange import rates
    from hub.identity.clients import create_client
    from hub.ledger.models import Account, Transfer
    from hub.programs import service
    from hub.programs.models import Member, Membership

    migrations.upgrade(url)
    db = Database(url, 2)
    try:
        code = f"C{secrets.token_hex(3).upper()}"

        def reference(s):
            service.create_partner(s, code, "Bench partner", by="bench")
            programs = [service.create_program(
                s, partner_code=code, code=f"{letter}{code[1:]}", name=f"Bench {letter}",
                point_value=Decimal(value), earn_currency="IDR", earn_rate=Decimal("0.001"), by="bench")
                for letter, value in (("A", "10"), ("B", "4"))]
            a, b = (p.code for p in programs)
            for source, target in ((a, b), (b, a)):
                rates.set_pair(s, source, target, open=True, fee_bps=50, min_points=100, increment=100,
                               updated_by="bench")
            client, secret = create_client(s, name="bench back end", partner_id=programs[0].partner_id, by="bench")
            return [(p.id, p.code, p.issuance_account_id) for p in programs], client.client_id, secret

        programs, client_id, secret = db.write(reference)
        now = datetime.now(timezone.utc)
        member_ids = [uuid.uuid4() for _ in range(members)]
        with db.engine.begin() as conn:
            conn.execute(insert(Member), [{"id": m, "created_at": now} for m in member_ids])
            for program_id, _, issuance in programs:
                account_ids = conn.execute(
                    insert(Account).returning(Account.id, sort_by_parameter_order=True),
                    [{"ledger": program_id, "code": service.MEMBER_ACCOUNT, "cached": True, "no_overdraft": True,
                      "credits_posted": HOLDING, "created_at": now} for _ in range(members)],
                ).scalars().all()
                conn.execute(insert(Membership), [
                    {"id": uuid.uuid4(), "member_id": m, "program_id": program_id, "account_id": a, "created_at": now}
                    for m, a in zip(member_ids, account_ids)])
                insert_many(conn, Transfer.__table__, [
                    {"id": i, "ledger": program_id, "debit_account_id": issuance, "credit_account_id": a,
                     "amount": HOLDING, "code": "adjustment", "phase": "posted", "caused_by": "bench",
                     "ref_type": None, "ref_id": None, "metadata": Jsonb(None), "created_at": now,
                     "pending_id": None, "timeout_at": None}
                    for i, a in zip(_next_ids(conn, members), account_ids)])
            for table in ("ledger_accounts", "members", "memberships", "ledger_transfers"):
                conn.execute(text(f"ANALYZE {table}"))
    finally:
        db.dispose()
    return {"programs": [code for _, code, _ in programs], "client_id": client_id, "secret": secret,
            "members": [["member_id", str(m)] for m in member_ids]}


def _next_ids(conn, n: int) -> list[int]:
    return list(conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('ledger_transfers', 'id')) FROM generate_series(1, :n)"),
        {"n": n}).scalars())


def signed_quotes(port: int, token: str, secret_key: str, data: dict, clients: int,
                  per_client: int) -> list[list[str]]:
    """Quotes as POST /v1/conversions/quotes makes them, for random members, directions and
    amounts: one real quote per direction (its terms and their versions), then hub code signs
    the others with the server's key; valid for the next 10 minutes."""
    import dataclasses
    import random
    from datetime import timedelta

    from hub.exchange import rates
    from hub.exchange.conversions import Quote

    rng = random.Random(7)
    a, b = data["programs"]
    member = data["members"][0][1]
    templates = {}
    for source, target in ((a, b), (b, a)):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/conversions/quotes", method="POST",
            data=json.dumps({"from": source, "to": target, "points": 100, "member": {"member_id": member}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            templates[source, target] = Quote.read(secret_key, json.load(answer)["quote"])
    expires = datetime.now(timezone.utc) + timedelta(minutes=10)
    members = [uuid.UUID(value) for _, value in data["members"]]
    out = []
    for _ in range(clients):
        mine = []
        for _ in range(per_client):
            t = templates[rng.choice(list(templates))]
            points = 100 * rng.randrange(1, 11)
            amounts = rates.convert(points, t.from_value, t.to_value, t.fee_bps)
            mine.append(dataclasses.replace(
                t, id=uuid.uuid4(), member_id=rng.choice(members), points_in=points, points_out=amounts.points_out,
                fee_units=amounts.fee_units, expires_at=expires).sign(secret_key))
        out.append(mine)
    return out


def count_conversions(url: str) -> int:
    from hub.db import Database
    from hub.exchange.models import Conversion

    db = Database(url, 1)
    try:
        with db.read() as s:
            return s.scalar(select(func.count()).select_from(Conversion))
    finally:
        db.dispose()


def _measure(scratch: Scratch, args) -> dict:
    url = scratch.dbs.create(scratch.tag)
    log(f"database {scratch.tag}: migrating, {args.members} members in two programs")
    t0 = time.monotonic()
    data = setup_hub_db(url, args.members)
    log(f"setup took {time.monotonic() - t0:.1f}s")
    port = free_port()
    server = scratch.start_server(url, port, args.workers)
    server.wait_ready()
    token = get_token(port, data["client_id"], data["secret"])
    workers = server.workers()
    log(f"hub up on port {port}, workers {workers}")
    spies = profile_workers(server, args.warmup + args.seconds, args.profile, "convert")
    cpu0, machine0 = cpu_seconds(workers), cpu_times()
    log(f"quote + conversion: {args.clients} clients, {args.warmup}s warm-up + {args.seconds}s")
    run = loadgen({"host": "127.0.0.1", "port": port, "token": token, "mode": "convert",
                   "programs": data["programs"], "members": data["members"], "clients": args.clients,
                   "seconds": args.seconds, "warmup": args.warmup}, workers)
    for p in spies:
        p.wait(timeout=60)
    done = max(run["total"], 1)
    pg_cpu = cpu_seconds(backend_pids(args.database_url, scratch.tag))
    log(f"CPU per quote + conversion (whole phase, warm-up too, {done} of them): hub workers "
        f"{1000 * (cpu_seconds(workers) - cpu0) / done:.2f} ms, postgres backends ~{1000 * pg_cpu / done:.2f} ms; "
        f"{cpu_split(machine0, cpu_times())}")
    log(f"quote + conversion: {run['ok'] / args.seconds:.1f}/s p50 {run['p50_ms']:.1f}ms p99 {run['p99_ms']:.1f}ms "
        f"statuses {run['statuses']} exceptions {run['exceptions']}")
    for sample in run["error_samples"]:
        log(f"error sample: {sample}")

    per_client = int(args.seconds * 2000 / args.clients)  # more than a client can execute
    quotes = signed_quotes(port, token, server.secret_key, data, args.clients, per_client)
    log(f"execution of quotes signed ahead: {args.clients} clients, 2s warm-up + {args.seconds}s")
    cpu0 = cpu_seconds(workers)
    pg0 = cpu_seconds(backend_pids(args.database_url, scratch.tag))
    execute = loadgen({"host": "127.0.0.1", "port": port, "token": token, "mode": "execute", "quotes": quotes,
                       "members": [], "clients": args.clients, "seconds": args.seconds, "warmup": 2}, workers)
    done = max(execute["total"], 1)
    log(f"CPU per conversion: hub workers {1000 * (cpu_seconds(workers) - cpu0) / done:.2f} ms, postgres "
        f"~{1000 * (cpu_seconds(backend_pids(args.database_url, scratch.tag)) - pg0) / done:.2f} ms")
    log(f"conversions (quotes signed ahead): {execute['ok'] / args.seconds:.1f}/s p50 {execute['p50_ms']:.1f}ms "
        f"p99 {execute['p99_ms']:.1f}ms statuses {execute['statuses']} exceptions {execute['exceptions']}")
    for sample in execute["error_samples"]:
        log(f"error sample: {sample}")
    scratch.stop_server()
    log(f"sequential scans: {scan_report(url)}")
    verify_ledger(url)
    log(f"conversions recorded: {count_conversions(url)}")
    pgbench_tps = 0.0
    if not args.skip_pgbench:
        pgbench_tps = run_pgbench(scratch.dbs, f"{scratch.tag}_pgbench", args.clients, args.seconds)
        log(f"pgbench: {pgbench_tps:.1f} tps")
    per_s = run["ok"] / args.seconds
    executed_per_s = execute["ok"] / args.seconds
    return {
        "conversions_per_s": round(executed_per_s, 1),
        "p50_ms": round(execute["p50_ms"], 2),
        "p99_ms": round(execute["p99_ms"], 2),
        "errors": execute["errors"],
        "pgbench_tps": round(pgbench_tps, 1),
        "ratio": round(executed_per_s / pgbench_tps, 3) if pgbench_tps else None,
        "flow_per_s": round(per_s, 1),
        "flow_p99_ms": round(run["p99_ms"], 2),
        "flow_errors": run["errors"],
        "flow_ratio": round(per_s / pgbench_tps, 3) if pgbench_tps else None,
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
    ap.add_argument("--skip-pgbench", action="store_true")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record the workers during the run")
    args = ap.parse_args()
    return run(args.database_url, lambda scratch: _measure(scratch, args))


if __name__ == "__main__":
    sys.exit(main())
