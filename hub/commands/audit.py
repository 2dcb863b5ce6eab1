"""`hub audit`: check the audit trail's chain, and read its latest entries (docs/audit.md)."""
from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from hub.audit import trail
from hub.commands.common import console, db


@click.group()
def audit():
    """The audit trail of privileged actions (docs/audit.md)."""


@audit.command("verify")
def audit_verify():
    """Check the whole chain: exit 1 naming the first entry that was altered, removed,
    inserted or moved, or the entries deleted from its end."""
    with db().read() as session:
        verdict = trail.verify(session)
    if not verdict.ok:
        click.echo(f"audit trail BROKEN after {verdict.entries} good entries: {verdict.problem}")
        sys.exit(1)
    click.echo(f"audit trail OK: {verdict.entries} entries, head {verdict.head_hash}")


@audit.command("list")
@click.option("--action", default=None, help="Only this action, e.g. partner.create.")
@click.option("--actor", default=None, help="Only this actor, e.g. cli or client:<id>.")
@click.option("--target", default=None, help="Only targets starting with this, e.g. partner:KOPI.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
def audit_list(action, actor, target, limit, as_json):
    """The latest entries, newest first."""
    with db().read() as session:
        rows, _ = trail.entries(session, limit=limit, action=action, actor=actor, target=target)
        items = [trail.view(e) for e in rows]
    if as_json:
        for item in items:
            click.echo(json.dumps(item))
        return
    table = Table("seq", "at", "actor", "action", "target", "before", "after")
    for item in items:
        table.add_row(str(item["seq"]), item["at"], item["actor"], item["action"], item["target"],
                      _compact(item["before"]), _compact(item["after"]))
    console.print(table)


def _compact(value) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"))
