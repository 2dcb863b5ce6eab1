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


def _anchor(ctx, param, value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    if not (seq.isdigit() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise click.BadParameter("give the head as SEQ:HASH, as `hub audit verify` prints it")
    return int(seq), digest


@audit.command("verify")
@click.option("--expect", callback=_anchor, metavar="SEQ:HASH",
              help="A head printed by an earlier verify and kept outside the database: it must still be in the chain.")
def audit_verify(expect):
    """Check the whole chain: exit 1 naming the first entry that was altered, removed,
    inserted or moved, or the entries deleted from its end. Keep the head it prints
    (SEQ:HASH) somewhere the database's writers cannot change, and pass it as --expect later."""
    with db().read() as session:
        verdict = trail.verify(session, expect)
    if not verdict.ok:
        click.echo(f"audit trail BROKEN after {verdict.entries} good entries: {verdict.problem}")
        sys.exit(1)
    click.echo(f"audit trail OK: {verdict.entries} entries, head {verdict.entries}:{verdict.head_hash}")


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
