"""Benchmark of settlement: close a month of N transfers (default 1,000,000) and export its
statements, against the plain SQL aggregate over the same rows, on PostgreSQL.

    python bench/settle.py [--database-url URL] [--transfers 1000000]

It makes its own database (dropped at the end, also on failure), builds four programs of
2,500 members each and N transfers in October 2026 with INSERT ... SELECT generate_series (a
mix of earns, returns, redemptions, conversions in and out, expiries and member transfers),
then times the plain aggregate (sql_s), the close (close_s) and the CSV export of every
statement (export_s). Close and export each run in a child process that reports its own peak
RSS, so the figures are theirs alone. Prints one JSON line; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PERIOD = "2026-10"
SECRET_KEY = secrets.token_urlsafe(32)
PROGRAMS = 4
MEMBERS = 2500  # per program


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build(url: str, transfers: int) -> None:
    from hub import migrations
    from hub.commands.common import db as cli_db
    from hub.programs import service
    from hub.settlement.models import ProgramPrice

    migrations.upgrade(url)
    os.environ.update(HUB_DATABASE_URL=url, HUB_SECRET_KEY=SECRET_KEY)
    db = cli_db()  # with the keyring: creating partners and programs writes the audit trail

    def programs(s):
        made = []
        for i in range(PROGRAMS):
            service.create_partner(s, f"BP{i}", f"Bench partner {i}", by="bench")
            program = service.create_program(s, partner_code=f"BP{i}", code=f"BG{i}", name=f"Bench {i}",
                                              point_value=Decimal(10), earn_currency="IDR", earn_rate=Decimal("0.001"), by="bench")
            s.add(ProgramPrice(program_id=program.id, effective_from=datetime(2026, 1, 1, tzinfo=timezone.utc),
                               currency="IDR", per_point_minor=Decimal("10.5"), issuance_fee_bps=150, created_by="bench"))
            made.append(program)
        return [(p.id, p.issuance_account_id, p.redemption_account_id, p.clearing_account_id, p.breakage_account_id)
                for p in made]

    made = db.write(programs)
    with db.engine.begin() as conn:
        for k, (program_id, iss, red, clr, brk) in enumerate(made):
            first = conn.execute(text(
                "INSERT INTO ledger_accounts (ledger, code, cached, no_overdraft, closed, debits_pending, "
                "debits_posted, credits_pending, credits_posted, created_at) "
                "SELECT :p, 'member', true, true, false, 0, 0, 0, 0, now() FROM generate_series(1, CAST(:n AS integer)) "
                "RETURNING id"), {"p": program_id, "n": MEMBERS}).scalars().all()
            base = min(first)
            # g % 20: 0-11 earn, 12 return, 13-14 redemption, 15 conversion out, 16 in,
            # 17 expiry, 18-19 member to member. Spread over the month.
            conn.execute(text(f"""
                INSERT INTO ledger_transfers (ledger, debit_account_id, credit_account_id, amount, code,
                                              phase, caused_by, created_at)
                SELECT :p,
                       CASE WHEN g % 20 < 12 THEN {iss} WHEN g % 20 = 16 THEN {clr}
                            ELSE {base} + (g * 7919) % {MEMBERS} END,
                       CASE g % 20 WHEN 12 THEN {iss} WHEN 13 THEN {red} WHEN 14 THEN {red} WHEN 15 THEN {clr}
                            WHEN 17 THEN {brk} WHEN 16 THEN {base} + (g * 7919) % {MEMBERS}
                            ELSE CASE WHEN g % 20 < 12 THEN {base} + (g * 7919) % {MEMBERS}
                                      ELSE {base} + (g * 7919 + 1) % {MEMBERS} END END,
                       1 + g % 97,
                       CASE WHEN g % 20 < 12 THEN 'earn' WHEN g % 20 = 12 THEN 'reversal'
                            WHEN g % 20 < 15 THEN 'redemption' WHEN g % 20 < 17 THEN 'conversion'
                            WHEN g % 20 = 17 THEN 'expiry' ELSE 'member_transfer' END,
                       CASE WHEN g % 20 = 14 THEN 'post_pending' ELSE 'posted' END,
                       'bench',
                       timestamptz '2026-10-01 00:00:00+00' + (g * interval '1 second' * 2678399 / CAST(:n AS bigint))
                FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g"""),
                {"p": program_id, "n": transfers, "lo": k * transfers // PROGRAMS + 1,
                 "hi": (k + 1) * transfers // PROGRAMS})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE ledger_transfers"))
    db.dispose()


PLAIN = text("""
    SELECT ledger, debit_account_id, credit_account_id, sum(amount), count(*)
    FROM ledger_transfers
    WHERE phase IN ('posted', 'post_pending')
      AND created_at >= timestamptz '2026-10-01 00:00:00+00' AND created_at < timestamptz '2026-11-01 00:00:00+00'
    GROUP BY ledger, debit_account_id, credit_account_id""")


def plain_sql(url: str) -> float:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(PLAIN).all()  # warm the cache as the close will find it
        started = time.perf_counter()
        conn.execute(PLAIN).all()
        elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def child_close(url: str) -> dict:
    from hub.commands.common import db as cli_db
    from hub.settlement import statements

    db = cli_db()  # with the keyring: the close writes the audit trail
    started = time.perf_counter()
    done = db.write(lambda s: statements.close(s, PERIOD, "bench"))
    elapsed = time.perf_counter() - started
    return {"close_s": elapsed, "statements": [str(s.id) for s in done.statements], "rss_mb": rss_mb()}


def child_export(url: str, ids: list[str]) -> dict:
    from hub.db import Database
    from hub.settlement import exports
    from hub.settlement.models import Statement

    db = Database(url)
    rows = size = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, db.read() as s:
        for statement_id in ids:
            path = Path(tmp) / f"{statement_id}.csv"
            with open(path, "w", encoding="utf-8", newline="") as f:
                for chunk in exports.stream(s, s.get(Statement, uuid.UUID(statement_id)), "csv"):
                    f.write(chunk)
                    rows += chunk.count("\n")
            size += path.stat().st_size
    return {"export_s": time.perf_counter() - started, "rows": rows, "bytes": size, "rss_mb": rss_mb()}


def child(phase: str, url: str, ids: list[str]) -> dict:
    command = [sys.executable, __file__, "--child", phase, "--database-url", url, *ids]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUB_DATABASE_URL": url, "HUB_SECRET_KEY": SECRET_KEY}
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--transfers", type=int, default=1_000_000)
    parser.add_argument("--child", choices=["close", "export"], help=argparse.SUPPRESS)
    parser.add_argument("ids", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child_close(args.database_url) if args.child == "close" else child_export(args.database_url, args.ids)
        print(json.dumps(result))
        return
    name = f"hub_bench_settle_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        log(f"building {args.transfers} transfers in {name}")
        started = time.perf_counter()
        build(url, args.transfers)
        log(f"built in {time.perf_counter() - started:.1f}s; plain aggregate")
        sql_s = plain_sql(url)
        log(f"sql {sql_s:.2f}s; closing {PERIOD}")
        closed = child("close", url, [])
        log(f"closed in {closed['close_s']:.2f}s; exporting {len(closed['statements'])} statements")
        exported = child("export", url, closed["statements"])
        log(f"exported {exported['rows']} rows in {exported['export_s']:.2f}s")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps({
        "transfers": args.transfers, "close_s": round(closed["close_s"], 3), "export_s": round(exported["export_s"], 3),
        "sql_s": round(sql_s, 3), "ratio": round(closed["close_s"] / sql_s, 2),
        "close_peak_rss_mb": closed["rss_mb"], "export_peak_rss_mb": exported["rss_mb"],
        "export_rows": exported["rows"], "export_bytes": exported["bytes"], "peak_rss_mb": rss_mb(),
    }))


if __name__ == "__main__":
    main()
