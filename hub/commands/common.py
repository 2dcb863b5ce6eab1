"""What every `hub` command shares: the console, the database with this process's keyring,
one-transaction writes that turn refusals into clear messages, and the CLI's ops actor."""
from __future__ import annotations

import click
from rich.console import Console

from hub.actor import Actor
from hub.db import Database
from hub.errors import DomainError
from hub.ledger import LedgerError
from hub.privacy import keyring
from hub.settings import Settings

console = Console()

# How the audit trail names what the command line did.
CLI_ACTOR = "cli"


def db() -> Database:
    """The database, with this process's keyring for its sealed columns (hub.privacy)."""
    settings = Settings.from_env()
    database = Database(settings.database_url)
    try:
        keyring.install(settings, database.engine)
    except keyring.MasterKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    return database


def run(work):
    """Run a write in one transaction; a refusal is a clear message and exit code 1."""
    try:
        return db().write(work)
    except (DomainError, LedgerError) as exc:
        raise click.ClickException(str(exc)) from exc


def ops() -> Actor:
    """Who the CLI acts as in services that take an Actor: ops, with every partner in reach."""
    return Actor(client_id=CLI_ACTOR, partner_id=None, scopes=frozenset({"ops:read", "ops:write"}))
