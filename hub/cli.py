"""The `hub` command: serve, migrate, create partners/programs/clients, verify the ledger,
seed the demo coalition."""
from __future__ import annotations

import json
import os
import sys
from decimal import Decimal

import click
from rich.console import Console
from rich.table import Table

from hub import migrations
from hub.db import Database
from hub.errors import DomainError
from hub.ledger import LedgerError
from hub.settings import Settings

console = Console()


def _db() -> Database:
    return Database(Settings.from_env().database_url)


def _run(work):
    """Run a write in one transaction; a refusal is a clear message and exit code 1."""
    try:
        return _db().write(work)
    except (DomainError, LedgerError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main():
    """Coalition loyalty hub."""


@main.command()
def serve():
    """Serve the API (uvicorn; gunicorn with uvicorn workers when HUB_WORKERS > 1)."""
    settings = Settings.from_env()
    bind = f"{settings.host}:{settings.port}"
    if settings.workers > 1:
        # No --access-logfile at all without HUB_ACCESS_LOG: given /dev/null, uvicorn would
        # still format a log line for every request and throw it away.
        access_log = ["--access-logfile", "-"] if settings.access_log else []
        os.execvp(
            sys.executable,
            [sys.executable, "-m", "gunicorn", "hub.asgi:app", "--bind", bind,
             "--workers", str(settings.workers), "--worker-class", "uvicorn.workers.UvicornWorker",
             *access_log],
        )
    import uvicorn

    uvicorn.run("hub.asgi:app", host=settings.host, port=settings.port,
                access_log=settings.access_log)


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head")
def db_upgrade(revision):
    """Apply migrations up to REVISION (default: head)."""
    url = Settings.from_env().database_url
    migrations.upgrade(url, revision)
    console.print(f"database at [bold]{revision}[/]")


@main.group()
def partners():
    """Partners (merchant brands)."""


@partners.command("create")
@click.option("--code", required=True)
@click.option("--name", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def partners_create(code, name, as_json):
    from hub.programs import service

    partner = _run(lambda s: service.create_partner(s, code, name))
    _out({"id": str(partner.id), "code": partner.code, "name": partner.name}, as_json)


@main.group()
def programs():
    """Points programs."""


@programs.command("create")
@click.option("--partner", required=True, help="Partner code.")
@click.option("--code", required=True)
@click.option("--name", required=True)
@click.option("--point-value", required=True, help="Value of one point in coalition units.")
@click.option("--currency", required=True, help="ISO 4217 currency of purchases.")
@click.option("--points-per-unit", required=True, help="Points per unit of currency (rounded down).")
@click.option("--json", "as_json", is_flag=True)
def programs_create(partner, code, name, point_value, currency, points_per_unit, as_json):
    from hub.programs import service

    program = _run(
        lambda s: service.create_program(
            s, partner_code=partner, code=code, name=name, point_value=_decimal(point_value),
            earn_currency=currency, earn_rate=_decimal(points_per_unit),
        )
    )
    _out({"id": str(program.id), "code": program.code, "partner": partner}, as_json)


@main.group()
def clients():
    """OAuth2 API clients."""


@clients.command("create")
@click.option("--partner", default=None, help="Partner code; omit for an ops client.")
@click.option("--name", required=True)
@click.option("--scope", "scopes", multiple=True, help="Repeat for several; default: all of its kind.")
@click.option("--json", "as_json", is_flag=True)
def clients_create(partner, name, scopes, as_json):
    """Create a client. The secret is printed this once: the hub keeps only its hash."""
    from hub.identity.clients import create_client
    from hub.programs import service

    def work(s):
        partner_id = service.partner_by_code(s, partner).id if partner else None
        client, secret = create_client(s, name=name, partner_id=partner_id, scopes=list(scopes))
        return {"client_id": client.client_id, "client_secret": secret,
                "partner": partner, "scopes": client.scopes.split()}

    _out(_run(work), as_json)


@main.group()
def ledger():
    """The points ledger."""


@ledger.command("verify")
def ledger_verify():
    """Check every ledger invariant; exit 1 on any violation."""
    from hub.ledger.verify import verify

    with _db().read() as session:
        report = verify(session)
    console.print(
        f"{report.transfers} transfers, {report.accounts} accounts, {report.ledgers} ledgers"
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning[/] {warning}")
    for violation in report.violations:
        console.print(f"[red]violation[/] {violation}")
    if not report.ok:
        sys.exit(1)
    console.print("[green]ledger OK[/]")


@main.group()
def keys():
    """JWT signing keys."""


@keys.command("rotate")
def keys_rotate():
    """Sign with a new key from now on; older keys stay published so their tokens verify."""
    from hub.identity.keys import KeyStore

    settings = Settings.from_env()
    kid = KeyStore(_db(), settings.secret_key).rotate()
    console.print(f"signing with key [bold]{kid}[/]")


@main.group()
def demo():
    """The demo coalition."""


@demo.command("seed")
def demo_seed():
    """Create the demo coalition (idempotent) and print how to try it."""
    from hub import demo as demo_data

    settings = Settings.from_env()
    creds = demo_data.seed(_db())
    demo_data.print_quickstart(console, settings, creds)


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except ArithmeticError as exc:
        raise click.BadParameter(f"{value!r} is not a decimal") from exc


def _out(data: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data))
        return
    table = Table(show_header=False)
    for key, value in data.items():
        table.add_row(key, str(value))
    console.print(table)


if __name__ == "__main__":
    main()
