"""`hub ops users ...`: the ops console's users (hub/identity/ops_users.py).

`add` prints the user's initial password and the otpauth URI of its TOTP secret once, to this
terminal only (never logged; the hub keeps the password's hash and the sealed secret): hand
them to the person over a channel you trust. Each change is audited as the CLI."""
from __future__ import annotations

import json

import click
from rich.table import Table

from hub.commands.common import CLI_ACTOR, console, db, run
from hub.identity import ops_users, roles
from hub.identity.accounts import Passwords


@click.group()
def ops():
    """The ops console (/ops/)."""


@ops.group()
def users():
    """Who may log in to the ops console, and with which role."""


@users.command("add")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(roles.ROLES))
@click.option("--partner", "partner_code", default=None, help="The partner a partner_admin reaches.")
def users_add(email, role, partner_code):
    """Create an ops user; prints its initial password and TOTP set-up URI once."""
    password = ops_users.new_password()
    password_hash = Passwords().hash(password)  # before the transaction: argon2 is slow on purpose

    def work(s):
        user, uri = ops_users.add(s, email=email, role=role, partner_code=partner_code,
                                  password_hash=password_hash, actor=CLI_ACTOR)
        return user.id, uri

    user_id, uri = run(work)
    # click.echo, not the log: these are secrets for the person at this terminal.
    click.echo(f"ops user {user_id} ({role}) created. Shown once:")
    click.echo(f"  password: {password}")
    click.echo(f"  TOTP (add it to an authenticator app): {uri}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def users_list(as_json):
    """Every ops user: email, role, partner, created, disabled."""
    with db().read() as session:
        rows = [{"email": u.email, "role": u.role, "partner": code or "", "created": u.created_at.strftime("%Y-%m-%d"),
                 "disabled": u.disabled_at.strftime("%Y-%m-%d") if u.disabled_at else ""}
                for u, code in ops_users.list_users(session)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("email", "role", "partner", "created", "disabled")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)


@users.command("disable")
@click.argument("email")
def users_disable(email):
    """No more logins for EMAIL; its console sessions end now."""
    run(lambda s: ops_users.disable(s, email, actor=CLI_ACTOR))
    console.print(f"disabled {email}")
