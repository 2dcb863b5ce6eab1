"""`hub reconcile`: import a provider's report, list runs and exceptions, resolve one."""
from __future__ import annotations

import uuid

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub import money
from hub.commands.common import CLI_ACTOR, console, db, run
from hub.settlement import reconciliation
from hub.settlement.reconciliation_models import CLASSES, OPEN, RESOLUTIONS


@click.group()
def reconcile():
    """Providers' reports reconciled against the hub's orders (docs/reconciliation.md)."""


@reconcile.command("import")
@click.option("--provider", required=True, help="The provider whose report this is, e.g. tango.")
@click.argument("report", type=click.File("rb"))
def import_(provider, report):
    """Import REPORT (the provider's CSV, in its own layout) and reconcile it.

    One transaction: interrupted, nothing is written, and running it again is safe; the same
    file imported twice gives the first run."""
    data = report.read()
    lines = max(data.count(b"\n"), 1)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"reading {report.name}", total=lines)

        def work(session):
            bar.reset(task)  # a retried transaction reads the file again
            outcome = reconciliation.import_report(session, provider, data, CLI_ACTOR,
                                                   progress=lambda line: bar.update(task, completed=line))
            bar.update(task, completed=lines, description="matched")
            return outcome

        found, new = run(work)
    console.print(("imported" if new else "already imported as") + f" run {found.id}: {found.report_lines} lines")
    for name in CLASSES:
        console.print(f"  {name}: {getattr(found, name)}")


@reconcile.command("runs")
@click.option("--provider", default=None)
@click.option("--limit", default=50, show_default=True)
def runs(provider, limit):
    """Runs and their figures, newest first."""
    with db().read() as session:
        items, _ = reconciliation.runs(session, limit=limit, provider=provider)
    table = Table("id", "provider", "created", "lines", "figures")
    for r in items:
        table.add_row(str(r.id), r.provider, r.created_at.isoformat(timespec="seconds"), str(r.report_lines),
                      "\n".join(f"{name} {getattr(r, name)}" for name in CLASSES))
    console.print(table)


@reconcile.command("exceptions")
@click.option("--open", "only_open", is_flag=True, help="Only those still open.")
@click.option("--run", "run_id", type=click.UUID, default=None, help="Only this run's.")
@click.option("--limit", default=200, show_default=True)
def exceptions(only_open, run_id, limit):
    """Exceptions, newest first."""
    with db().read() as session:
        items, _ = reconciliation.exceptions(session, OPEN if only_open else None, run_id, limit=limit)
    # One line each (ids in full, for `hub reconcile resolve`), not a table cut to the terminal.
    for v in items:
        e, line = v.exception, v.line
        where = "not in the report" if line.line_no is None else f"line {line.line_no}"
        console.print(f"{e.id} {v.provider} {e.kind} [{e.resolution or e.status}] {line.reference or '-'} ({where}): "
                      f"provider {_side(line.provider_amount_minor, line.provider_currency, line.provider_status)}, "
                      f"hub {_side(line.hub_amount_minor, line.hub_currency, line.hub_state)}",
                      soft_wrap=True, highlight=False, markup=False)


@reconcile.command("resolve")
@click.argument("exception_id", type=click.UUID)
@click.option("--resolution", required=True, type=click.Choice(RESOLUTIONS))
@click.option("--reason", required=True, help="Why: kept on the exception; its hash goes to the audit trail.")
def resolve(exception_id: uuid.UUID, resolution, reason):
    """Resolve an open exception (once; audited)."""
    view = run(lambda session: reconciliation.resolve(session, exception_id, resolution, reason, CLI_ACTOR))
    console.print(f"exception {view.exception.id} resolved: {resolution}")


def _side(amount_minor, currency, status) -> str:
    if amount_minor is None or currency is None:
        return "-"
    return f"{money.to_major(amount_minor, currency)} {currency} {status}"
