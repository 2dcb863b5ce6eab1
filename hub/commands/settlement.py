"""`hub settlement`: program prices, closing periods, verifying and exporting statements."""
from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime, timedelta, timezone

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hub.commands.common import CLI_ACTOR, console, db, ops, run
from hub.errors import DomainError
from hub.settings import Settings
from hub.settlement.periods import Period


@click.group()
def settlement():
    """Settlement between partners, providers and the hub (docs/settlement.md)."""


@settlement.command()
@click.option("--program", required=True, help="Program code.")
@click.option("--from", "effective_from", required=True, help="UTC date or time the price applies from.")
@click.option("--currency", required=True, help="ISO 4217 code.")
@click.option("--per-point", required=True, help="Minor units per point, e.g. 10.5.")
@click.option("--fee-bps", type=int, required=True, help="The hub's fee on issued value, basis points.")
def price(program, effective_from, currency, per_point, fee_bps):
    """Price a program's points from a date on (audited)."""
    from hub.settlement import prices

    try:
        when = datetime.fromisoformat(effective_from)
    except ValueError as exc:
        raise click.ClickException(f"--from {effective_from!r} is not a date") from exc
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    run(lambda s: prices.set_price(s, CLI_ACTOR, program, when, currency, per_point, fee_bps))
    console.print(f"{program}: {per_point} {currency} minor units per point from {when.isoformat()}, fee {fee_bps} bps")


@settlement.command()
@click.option("--period", required=True, help="The month to close, e.g. 2026-11.")
def close(period):
    """Close a month (and earlier unclosed ones), one transaction per month."""
    from hub.settlement import statements

    grace = timedelta(minutes=Settings.from_env().settlement_grace_minutes)
    database = db()
    try:
        months = database.write(lambda s: statements.to_close(s, period, grace=grace))
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    with _progress() as progress:
        task = progress.add_task("closing", total=len(months))
        for month in months:
            progress.update(task, description=f"closing {month}")
            run(lambda s, m=month: statements.close(s, m.name, CLI_ACTOR, grace=grace))
            progress.advance(task)
    with database.read() as s:
        found = statements.stored(s, Period.parse(period).name)
    if not months:
        console.print(f"{period} was already closed: its statements are unchanged")
    for statement in found:
        console.print(f"{statement.id}  {statement.party_kind:8} {statement.party}  "
                      f"{statement.currency} net due {statement.net_due_minor}  sha256 {statement.digest[:12]}")


@settlement.command()
@click.option("--period", default=None, help="Only this month.")
def verify(period):
    """Recompute closed statements; exit 1 if any differs from what was stored."""
    from hub.settlement import statements

    with db().read() as s:
        drift = statements.verify(s, period)
    for d in drift:
        console.print(f"[red]drift[/red] {d['period']} {d['party_kind']} {d['party']} {d['currency']}: "
                      f"stored {d['stored']} recomputed {d['recomputed']}")
    if drift:
        sys.exit(1)
    console.print("statements verified: no drift")


@settlement.command()
@click.argument("statement_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def export(statement_id, fmt, out):
    """Write a statement and its transfers to OUT (through OUT.partial: never half a file)."""
    from hub.settlement import exports, statements

    try:
        wanted = uuid.UUID(statement_id)
    except ValueError as exc:
        raise click.ClickException(f"{statement_id!r} is not a statement id") from exc
    partial = out + ".partial"
    with db().read() as s:
        try:
            found = statements.statement(s, ops(), wanted)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
        total = sum(line.count for line in statements.lines(s, found.id) if statements.traceable(line))
        with _progress() as progress, open(partial, "w", encoding="utf-8", newline="") as f:
            task = progress.add_task("exporting", total=total)
            for chunk in exports.stream(s, found, fmt):
                f.write(chunk)
                progress.update(task, advance=chunk.count("\n") if fmt == "csv" else chunk.count('"transfer_id"'))
    os.replace(partial, out)
    console.print(f"wrote {out}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)
