"""The `hub` command: serve, migrate, create partners/programs/clients, verify the ledger,
seed the demo coalition."""
from __future__ import annotations

import json
import logging
import os
import sys
from decimal import Decimal

import click
from rich.table import Table

from hub import migrations
from hub.commands import common
from hub.commands.common import console
from hub.errors import DomainError
from hub.identity.roles import ROLES
from hub.ledger import LedgerError
from hub.observability import logs, metrics
from hub.privacy import keyring
from hub.settings import Settings

_db, _run, _ops = common.db, common.run, common.ops
_REVIEW_NOTE_HELP = "Why (optional): kept sealed as a review note that only ops read."


@click.group()
def main():
    """Coalition loyalty hub."""
    # Every command's logs redacted and carrying the request id; with HUB_LOG_FORMAT=json, its
    # warnings and errors as JSON lines (the server, the worker and the dispatcher log at INFO).
    logs.install()
    if logs.log_format() == "json":
        logs.configure(logging.WARNING)


def _shared_metrics_dir() -> None:
    """Processes about to be forked count into one directory, so that a scrape of any of them
    sees all (hub/observability/metrics.py). A fresh one unless the operator named one."""
    if not os.environ.get(metrics.MULTIPROCESS_ENV):
        import tempfile

        os.environ[metrics.MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="hub-metrics-")


@main.command()
def serve():
    """Serve the API (uvicorn; gunicorn with uvicorn workers when HUB_WORKERS > 1)."""
    settings = Settings.from_env()
    bind = f"{settings.host}:{settings.port}"
    if settings.workers > 1:
        # No --access-logfile at all without HUB_ACCESS_LOG: given /dev/null, uvicorn would
        # still format a log line for every request and throw it away.
        access_log = ["--access-logfile", "-"] if settings.access_log else []
        _shared_metrics_dir()
        os.execvp(
            sys.executable,
            [sys.executable, "-m", "gunicorn", "hub.asgi:app", "--bind", bind,
             "--workers", str(settings.workers), "--worker-class", "uvicorn.workers.UvicornWorker",
             "--forwarded-allow-ips", settings.forwarded_allow_ips, *access_log],
        )
    import uvicorn

    uvicorn.run("hub.asgi:app", host=settings.host, port=settings.port,
                access_log=settings.access_log, forwarded_allow_ips=settings.forwarded_allow_ips)


@main.command()
@click.option("--pool", type=click.Choice(["threads", "prefork", "solo"]), default="threads",
              envvar="HUB_WORKER_POOL", show_default=True, help="Celery execution pool (env HUB_WORKER_POOL).")
@click.option("--concurrency", default=16, show_default=True, envvar="HUB_WORKER_CONCURRENCY",
              help="Threads, or child processes with prefork (env HUB_WORKER_CONCURRENCY).")
@click.option("--beat/--no-beat", default=False, help="Also run the periodic schedule (one per deployment).")
def worker(pool, concurrency, beat):
    """Run a Celery worker for the relay tasks.

    Threads by default: a relay attempt mostly waits (on the provider's answer and on two
    short database transactions), so one process with many threads keeps many attempts in
    flight, where prefork keeps one per child process (bench/relay.py: with a provider that
    answers in 100 ms, 16 threads relay about 6 times as many redemptions as 2 children).
    A threads worker runs Python on one core at a time: to use more cores, run more
    workers, or prefork. A threads worker's database pool holds at least one connection per
    thread (HUB_DB_POOL_SIZE if larger)."""
    os.environ.update(HUB_WORKER_POOL=pool, HUB_WORKER_CONCURRENCY=str(concurrency))  # for hub.tasks
    if pool == "prefork" and Settings.from_env().worker_metrics_port:
        _shared_metrics_dir()  # the pool's children count, the worker's metrics port shows them
    args = [sys.executable, "-m", "celery", "-A", "hub.tasks:celery", "worker", "--loglevel", "info",
            "--pool", pool, "--concurrency", str(concurrency), "--without-gossip", "--without-mingle"]
    if beat:
        args += ["--beat", "--schedule", Settings.from_env().beat_schedule]
    os.execvp(sys.executable, args)


@main.command()
def beat():
    """Run the periodic schedule alone (Celery beat), for deployments whose workers are
    replicated: exactly one per deployment, or every periodic job runs once per beat. Its
    schedule file (HUB_BEAT_SCHEDULE) remembers the last runs across restarts. It answers
    `celery inspect ping` as celerybeat@<host> while its scheduler ticks (a health check)."""
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "hub.tasks:celery", "beat", "--loglevel", "info",
                               "--schedule", Settings.from_env().beat_schedule, "--enable-remote-control"])


@main.command()
@click.option("--poll", default=0.2, show_default=True,
              help="Seconds between looks for due messages (retries, expired leases).")
@click.option("--listen/--no-listen", default=True, show_default=True,
              help="On PostgreSQL, LISTEN for new messages and publish them at once.")
def dispatch(poll, listen):
    """Publish due outbox messages to the broker, forever (survives broker outages)."""
    from datetime import timedelta

    from hub import tasks
    from hub.notify import dispatcher

    logs.configure(logging.INFO)
    lease = timedelta(seconds=Settings.from_env().outbox_lease)
    dispatcher.run(_db(), dispatcher.celery_publisher(tasks.celery, tasks.TOPICS), lease=lease, poll=poll,
                   listen=listen, per_message=tasks.PER_MESSAGE)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True)
@click.option("--pending-delay", default=1.0, show_default=True, help="Seconds a +pending order stays pending.")
@click.option("--timeout-sleep", default=3.0, show_default=True, help="Seconds a +timeout answer is held back.")
@click.option("--webhook-url", default=None, help="Where the Tremendous fake posts signed events.")
def sandbox(host, port, pending_delay, timeout_sleep, webhook_url):
    """Serve the fake reward providers (Tango, Tremendous, GlobalGiving) and the fake
    partner-hosted program (LCP, at /lcp) for development."""
    from hub import sandbox as fakes

    console.print(f"sandbox providers on http://{host}:{port}/<provider>/")
    fakes.serve(host, port, pending_delay=pending_delay, timeout_sleep=timeout_sleep, webhook_url=webhook_url)


def _brand_sites() -> list:
    """The example brand sites (partners/brandsite), each with the OAuth client `hub demo seed`
    registered for it; none when the demo is not seeded."""
    import subprocess

    from hub import demo as demo_data
    from partners.brandsite.config import BRANDS_DIR

    if not demo_data.CREDENTIALS.exists():
        console.print("no demo brand sites: run `hub demo seed` first to have them")
        return []
    brands = json.loads(demo_data.CREDENTIALS.read_text()).get("brands", {})
    issuer = Settings.from_env().issuer
    sites = []
    for code, client in brands.items():
        env = {**os.environ, "BRAND_ISSUER": issuer, "BRAND_CLIENT_ID": client["client_id"],
               "BRAND_CLIENT_SECRET": client["client_secret"]}
        sites.append(subprocess.Popen([sys.executable, "-m", "partners.brandsite", str(BRANDS_DIR / f"{code}.json")],
                                      env=env))
    return sites


@main.command()
def up():
    """Everything on one machine: the sandbox (reward providers and the hosted airline's
    LCP API), a worker, the dispatcher, the example brand sites and the API."""
    import signal
    import subprocess

    hub = [sys.executable, "-m", "hub.cli"]
    children = [
        subprocess.Popen(hub + ["sandbox"]),
        subprocess.Popen(hub + ["worker", "--beat"]),
        subprocess.Popen(hub + ["dispatch"]),
        *_brand_sites(),
    ]
    try:
        subprocess.run(hub + ["rewards", "sync", "--wait"], check=False)
        subprocess.run(hub + ["serve"], check=False)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


@main.group()
def rewards():
    """The rewards catalog."""


@rewards.command("sync")
@click.option("--wait", is_flag=True, help="Wait up to 10 s for the providers to answer.")
def rewards_sync(wait):
    """Pull every reward provider's catalog now (the worker also does it every 6 hours)."""
    import time

    from rich.progress import Progress

    from hub.rewards.registry import configured_providers, sync_all

    providers = configured_providers(Settings.from_env())
    deadline = time.monotonic() + (10 if wait else 0)
    database = _db()
    report = {}
    # One provider at a time, each its own transaction: an interrupt keeps those done, and a
    # re-run syncs them again to the same catalog.
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("catalog sync", total=len(providers))
        for name, provider in providers.items():
            bar.update(task, description=f"catalog of {name}")
            while True:
                report |= sync_all(database, {name: provider})
                if "error" not in report[name] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            bar.advance(task)
    for name, result in report.items():
        console.print(f"{name}: {result}")


@main.group()
def redemptions():
    """Redemption orders."""


@redemptions.command("review")
def redemptions_review():
    """List orders that need review (no definitive answer from their provider)."""
    from sqlalchemy import select

    from hub.rewards.models import NEEDS_REVIEW, Redemption

    with _db().read() as session:
        rows = session.scalars(select(Redemption).where(Redemption.state == NEEDS_REVIEW)).all()
    table = Table("id", "provider", "attempts", "failure")
    for r in rows:
        table.add_row(str(r.id), r.provider or "", str(r.attempts), r.failure or "")
    console.print(table)


@redemptions.command("requeue")
@click.argument("redemption_id")
@click.option("--reason", default=None, help=_REVIEW_NOTE_HELP)
def redemptions_requeue(redemption_id, reason):
    """Hand an order that needs review back to the relay: it asks the provider first."""
    import uuid

    from hub.rewards import relay

    def work(session):
        relay.requeue(session, uuid.UUID(redemption_id), by=common.CLI_ACTOR, reason=reason)

    _run(work)
    console.print(f"requeued {redemption_id}")


@main.group()
def conversions():
    """Conversions between programs."""


@conversions.command("review")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def conversions_review(as_json):
    """List conversions that need review: the partner of a hosted program gave no definitive
    answer about the remote leg (its local leg is still reserved)."""
    from hub.exchange import saga

    with _db().read() as session:
        rows = [{"id": str(c.id), "hosted_side": c.hosted_side, "points": c.points_in, "receive": c.points_out,
                 "remote_member": c.remote_member, "remote_transaction_id": c.remote_transaction_id,
                 "attempts": c.attempts, "failure": c.failure} for c in saga.needing_review(session)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("id", "side", "points", "receive", "attempts", "failure")
    for r in rows:
        table.add_row(r["id"], r["hosted_side"], str(r["points"]), str(r["receive"]), str(r["attempts"]),
                      r["failure"] or "")
    console.print(table)


def _conversion_id(value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a conversion id") from exc


@conversions.command("requeue")
@click.argument("conversion_ids", metavar="[CONVERSION_ID]...", nargs=-1)
@click.option("--all", "requeue_all", is_flag=True, help="Every conversion that needs review.")
@click.option("--reason", default=None, help=_REVIEW_NOTE_HELP)
def conversions_requeue(conversion_ids, requeue_all, reason):
    """Hand conversions that need review back to the saga: each asks the partner first, and
    sends the remote leg again only if the partner has no record of it. Each is requeued in
    its own transaction; those that do not need review are named, and the exit code is 1."""
    from hub.exchange import saga

    if requeue_all == bool(conversion_ids):
        raise click.UsageError("name the conversions to requeue, or give --all")
    ids = [_conversion_id(value) for value in conversion_ids]
    db = _db()
    if requeue_all:
        with db.read() as session:
            ids = [c.id for c in saga.needing_review(session)]
        if not ids:
            console.print("no conversion needs review")
    refused = []
    for conversion in ids:
        try:
            db.write(lambda session, conversion=conversion: saga.requeue(session, conversion, by=common.CLI_ACTOR,
                                                                         reason=reason))
        except (DomainError, LedgerError) as exc:
            refused.append(str(exc))
            continue
        console.print(f"requeued {conversion}")
    if refused:
        raise click.ClickException("; ".join(refused))


@conversions.command("resolve")
@click.argument("conversion_id")
@click.option("--applied/--not-applied", default=None,
              help="What the partner says of the remote leg: applied (the local leg is posted: completed) "
                   "or not applied, and never will be (the local leg is voided: failed).")
@click.option("--reason", required=True,
              help="Why: kept sealed as a review note that only ops read, never shown to partners.")
def conversions_resolve(conversion_id, applied, reason):
    """Settle a conversion that needs review, once ops have checked with the partner."""
    from hub.exchange import saga

    if applied is None:
        raise click.UsageError("say what the partner answered: --applied or --not-applied")
    conversion = _conversion_id(conversion_id)
    state = _run(lambda session: saga.resolve(session, conversion, applied=applied, reason=reason, by=common.CLI_ACTOR))
    console.print(f"{conversion_id}: {state}")


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

    partner = _run(lambda s: service.create_partner(s, code, name, by=common.CLI_ACTOR))
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
            earn_currency=currency, earn_rate=_decimal(points_per_unit), by=common.CLI_ACTOR,
        )
    )
    _out({"id": str(program.id), "code": program.code, "partner": partner}, as_json)


@programs.command("transfer-policy")
@click.option("--code", required=True, help="Program code.")
@click.option("--max-points", type=click.IntRange(min=1), default=None, help="At most this many points a transfer.")
@click.option("--daily-limit", type=click.IntRange(min=1), default=None,
              help="At most this many points per sender in any 24 hours.")
@click.option("--json", "as_json", is_flag=True)
def programs_transfer_policy(code, max_points, daily_limit, as_json):
    """Open member-to-member transfers with these caps; with neither, close them."""
    from hub.api.views import transfer_policy
    from hub.exchange import transfers

    _out(transfer_policy(_run(lambda s: transfers.set_policy(s, _ops(), code, max_points, daily_limit))), as_json)


@main.group()
def rates():
    """Conversion rates (point values in coalition units) and pairs."""


@rates.command("set")
@click.argument("program")
@click.argument("point_value")
def rates_set(program, point_value):
    """Give PROGRAM a new POINT_VALUE, effective now (the old one stays in its history)."""
    from hub.exchange import rates as exchange

    valid_from = _run(lambda s: exchange.set_rate(s, program, _decimal(point_value), "cli").valid_from)
    _out({"program": program, "point_value": point_value, "valid_from": valid_from.isoformat()}, False)


@rates.command("pair")
@click.argument("from_program")
@click.argument("to_program")
@click.option("--closed", is_flag=True, help="Close this direction instead of opening it.")
@click.option("--fee-bps", type=int, default=0, show_default=True)
@click.option("--minimum", type=int, default=1, show_default=True, help="Least source points per conversion.")
@click.option("--increment", type=int, default=1, show_default=True, help="Source points in steps of this.")
def rates_pair(from_program, to_program, closed, fee_bps, minimum, increment):
    """Open (or close) conversions from FROM_PROGRAM into TO_PROGRAM, with their terms."""
    from hub.exchange import rates as exchange

    _run(lambda s: exchange.set_pair(s, from_program, to_program, open=not closed, fee_bps=fee_bps,
                                     min_points=minimum, increment=increment, updated_by="cli"))
    _out({"pair": f"{from_program} -> {to_program}", "open": not closed, "fee_bps": fee_bps,
          "minimum": minimum, "increment": increment}, False)


@rates.command("list")
@click.option("--all", "include_closed", is_flag=True, help="Closed pairs too.")
def rates_list(include_closed):
    """Every pair with its current rates, and what one step buys."""
    from hub.actor import Actor
    from hub.exchange import rates as exchange

    with _db().read() as s:
        pairs = exchange.list_pairs(s, Actor("cli", None, frozenset()), include_closed=include_closed)
    table = Table("from", "to", "open", "values", "fee bps", "min / step", "one step buys")
    for p in pairs:
        table.add_row(p.from_code, p.to_code, "yes" if p.open else "no", f"{p.from_value} -> {p.to_value}",
                      str(p.fee_bps), f"{p.min_points} / {p.increment}", f"{p.increment} -> {p.rate.points_out}")
    console.print(table)


@main.group()
def clients():
    """OAuth2 API clients."""


@clients.command("create")
@click.option("--partner", default=None, help="Partner code; omit for an ops client.")
@click.option("--name", required=True)
@click.option("--scope", "scopes", multiple=True, help="Repeat for several; default: all of its kind.")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Makes a brand client (OpenID Connect sign-in); repeat for several.")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True,
              help="Where RP-initiated logout may return (brand clients); repeatable.")
@click.option("--backchannel-logout-uri", default=None, help="Where logout tokens are POSTed (brand clients).")
@click.option("--public", is_flag=True, help="A brand app with no secret (PKCE required).")
@click.option("--role", type=click.Choice(ROLES), default=None,
              help="Scopes of this role (docs/security.md); partner_admin needs --partner, the ops roles none.")
@click.option("--json", "as_json", is_flag=True)
def clients_create(partner, name, scopes, redirect_uris, post_logout_redirect_uris, backchannel_logout_uri,
                   public, role, as_json):
    """Create a client. The secret is printed this once: the hub keeps only its hash."""
    from hub.identity.clients import create_client
    from hub.identity.oidc import clients as brand_clients
    from hub.programs import service

    brand = bool(redirect_uris)
    if brand and role:
        raise click.UsageError("--role is for back-end and ops clients, not brand clients (--redirect-uri)")
    if not brand and (post_logout_redirect_uris or backchannel_logout_uri or public):
        raise click.UsageError("--post-logout-redirect-uri, --backchannel-logout-uri and --public "
                               "are for brand clients: give --redirect-uri too")

    def work(s):
        partner_id = service.partner_by_code(s, partner).id if partner else None
        if brand:
            client, secret = brand_clients.register(
                s, name=name, partner_id=partner_id, redirect_uris=list(redirect_uris),
                post_logout_redirect_uris=list(post_logout_redirect_uris),
                backchannel_logout_uri=backchannel_logout_uri, public=public, scopes=list(scopes),
                by=common.CLI_ACTOR)
        else:
            client, secret = create_client(s, name=name, partner_id=partner_id, scopes=list(scopes), role=role,
                                           by=common.CLI_ACTOR)
        created = {"client_id": client.client_id, "client_secret": secret,
                   "partner": partner, "scopes": client.scopes.split(), "role": role}
        if brand:
            created.update(redirect_uris=list(redirect_uris), public=public)
        return created

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
    """JWT signing keys, and the data keys of encryption at rest."""


@keys.command("rotate")
def keys_rotate():
    """Sign with a new key from now on; older keys stay published so their tokens verify."""
    from hub.identity.keys import KeyStore

    kid = KeyStore(_db(), Settings.from_env().secret_key).rotate(by=common.CLI_ACTOR)
    console.print(f"signing with key [bold]{kid}[/]")


@keys.command("rotate-data")
@click.option("--resume", is_flag=True, help="Finish an interrupted rotation: no new data key.")
@click.option("--batch", default=500, show_default=True, help="Values sealed again per transaction.")
def keys_rotate_data(resume, batch):
    """Seal with a new data key from now on, wrap every data key under the current master key
    (the first of HUB_DATA_KEYS), and seal every value again under the new data key."""
    from hub.privacy import rotation

    db = _db()
    try:
        report = rotation.rotate(db, keyring.current(), by=common.CLI_ACTOR, new_key=not resume, batch=batch)
    except keyring.MasterKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"data key [bold]{report['data_key']}[/] under master key "
                  f"[bold]{keyring.current().current_kek}[/]: {report['rewrapped']} data keys re-wrapped, "
                  f"{report['resealed']} values sealed again")
    if report["skipped"]:
        console.print(f"[yellow]{report['skipped']} values changed meanwhile:[/] run "
                      f"`hub keys rotate-data --resume` again in {keyring.REFRESH_SECONDS:.0f} s")


@keys.command("data-status")
def keys_data_status():
    """The data keys, the master key wrapping each, and how many values each seals. A master
    key may leave HUB_DATA_KEYS once no data key is wrapped by it."""
    from hub.privacy import rotation

    table = Table("data key", "master key", "created", "values")
    for row in rotation.status(_db()):
        table.add_row(row["id"], row["master_key"], f"{row['created_at']:%Y-%m-%d %H:%M}", str(row["values"]))
    console.print(table)


@main.group()
def accounts():
    """Member accounts."""


@accounts.command("mail")
@click.option("--to", "to", default=None, help="Only the mail to this address.")
@click.option("--limit", default=5, show_default=True, help="How many messages, newest first.")
def accounts_mail(to, limit):
    """Print the latest mail to members (verification and reset links): in development the
    hub sends none, it keeps each message in the database (sealed)."""
    from hub.identity import mail
    from hub.identity.accounts import normalise_email

    try:
        to = normalise_email(to) if to else None
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    with _db().read() as session:
        messages = mail.latest(session, limit=limit, to=to)
    if not messages:
        click.echo("no mail")
    for message in messages:
        click.echo(f"--- #{message.id} {message.created_at:%Y-%m-%d %H:%M:%S}Z to {message.to}\n"
                   f"Subject: {message.subject}\n\n{message.body}")


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


@main.group()
def segments():
    """Partners' segments (hub/rules/segments.py)."""


@segments.command("refresh")
@click.option("--partner", default=None, help="Only this partner's segments (its code).")
def segments_refresh(partner):
    """Work out who is in each segment now (the beat job does it every 15 minutes)."""
    from hub.programs.service import partner_by_code
    from hub.rules import segments as rules_segments

    partner_id = _run(lambda s: partner_by_code(s, partner).id) if partner else None
    refreshed = rules_segments.refresh_all(_db(), partner_id)
    click.echo(f"{len(refreshed)} segments refreshed, {sum(refreshed.values())} memberships")


@main.group()
def challenges():
    """Coalition challenges (hub/rules/challenges.py)."""


@challenges.command("sweep")
def challenges_sweep():
    """Give the badges (and bonuses) of challenges members reached unnoticed by the earn path."""
    from hub.rules import challenges as rules_challenges

    click.echo(f"{_db().write(rules_challenges.sweep)} badges given")


@main.group()
def rules():
    """Programs' rule documents (JSON files, e.g. partners/<partner>/rules/<PROGRAM>.json)."""


def _rules_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def rules_check(file):
    """Check a rule document: print each finding with its path; exit 1 if there is any."""
    from hub.rules import admin

    found = admin.check(None, _ops(), None, _rules_file(file))
    for finding in found:
        click.echo(f"{finding.path}: {finding.message}")
    if found:
        sys.exit(1)
    click.echo(f"{file}: valid")


@rules.command("publish")
@click.argument("program")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--effective-from", default=None, help="ISO 8601 time with its zone; default now. Not in the past.")
def rules_publish(program, file, effective_from):
    """Publish FILE as PROGRAM's next rules version; a bad document prints every finding."""
    from hub.programs.earning import parse_time
    from hub.rules import admin

    document = _rules_file(file)
    try:
        when = parse_time(effective_from, "--effective-from", past_only=False) if effective_from else None
        published = _db().write(lambda s: admin.publish(s, _ops(), program, document, when, created_by="cli"))
    except DomainError as exc:
        for error in exc.extra.get("errors", ()):
            click.echo(f"{error['path']}: {error['message']}")
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{program} rules version {published.version} takes effect at {published.effective_from.isoformat()}")


@rules.command("show")
@click.argument("program")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Default: the version in force now.")
def rules_show(program, version):
    """Print a version of PROGRAM's rules (JSON): when it takes effect, who published it, its document."""
    from hub.api.views import rule_version
    from hub.db import utcnow
    from hub.rules import admin

    with _db().read() as s:
        try:
            found = (admin.get_version(s, _ops(), program, version) if version
                     else admin.in_force_at(s, _ops(), program, utcnow()))
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(rule_version(found), indent=2, ensure_ascii=False))


@main.group("tiers")
def tiers_group():
    """Member tiers (the tiers section of a program's rules)."""


def _now(value: str | None):
    """--now: an ISO 8601 time with a zone (default: the clock's)."""
    from hub.programs.earning import parse_time

    if value is None:
        return None
    try:
        return parse_time(value, "--now", past_only=False)
    except DomainError as exc:
        raise click.BadParameter(exc.detail) from exc


@tiers_group.command("review")
@click.option("--now", default=None, help="Review as of this ISO 8601 time (default: now).")
def tiers_review(now):
    """Review every membership whose review date has come: move it to the tier it qualifies
    for. Idempotent: a second run at the same time reviews nothing."""
    from hub.rules import tiers

    counts = tiers.review_due(_db(), _now(now))
    console.print(f"{counts['reviewed']} reviewed, {counts['changed']} changed")


@main.group("expiry")
def expiry_group():
    """Points expiry (the expiry section of a program's rules)."""


@expiry_group.command("run")
@click.option("--now", default=None, help="Expire what is due at this ISO 8601 time (default: now).")
def expiry_run(now):
    """Move expired points to each program's breakage account. Idempotent."""
    from hub.rules import expiry

    totals = expiry.run(_db(), _now(now))
    console.print(f"{totals['points']} points expired from {totals['accounts']} accounts")


@expiry_group.command("notify")
@click.option("--now", default=None, help="As of this ISO 8601 time (default: now).")
def expiry_notify(now):
    """Mail members with a dashboard account whose points expire soon (once per date)."""
    from hub.rules import expiry

    sent = expiry.notify(_db(), _now(now))
    console.print(f"{sent} notices written")


@main.group()
def webhooks():
    """Partner webhook endpoints and deliveries (docs/webhooks.md)."""


@webhooks.command("endpoints")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def webhooks_endpoints(as_json):
    """Every partner's endpoints, newest first (the 200 newest), with their pending and failed deliveries."""
    from sqlalchemy import func, select

    from hub.notify import webhook_endpoints as endpoints
    from hub.notify.webhook_models import WebhookDelivery

    with _db().read() as session:
        items, _ = endpoints.list_endpoints(session, _ops(), None, 200)
        counts = {(endpoint_id, status): n for endpoint_id, status, n in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .where(WebhookDelivery.endpoint_id.in_([e.id for e in items]), WebhookDelivery.status != "succeeded")
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status))}
    rows = [{"id": str(e.id), "url": e.url, "enabled": e.disabled_at is None, "disabled_reason": e.disabled_reason,
             "pending": counts.get((e.id, "pending"), 0), "failed": counts.get((e.id, "failed"), 0)} for e in items]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("id", "url", "enabled", "pending", "failed")
    for row in rows:
        table.add_row(row["id"], row["url"], "yes" if row["enabled"] else f"no ({row['disabled_reason']})",
                      str(row["pending"]), str(row["failed"]))
    console.print(table)


@webhooks.command("replay")
@click.argument("delivery_id")
def webhooks_replay(delivery_id):
    """Send DELIVERY_ID again now (same webhook-id; a worker makes the attempt)."""
    import uuid

    from hub.notify import webhook_endpoints as endpoints

    try:
        delivery = uuid.UUID(delivery_id)
    except ValueError:
        raise click.BadParameter(f"{delivery_id!r} is not a delivery id") from None
    view = _run(lambda s: endpoints.replay(s, _ops(), delivery))
    console.print(f"delivery [bold]{view.delivery.id}[/] of {view.delivery.event_id} queued")


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


@main.group()
def privacy():
    """Members' data: export, erasure, retention (docs/privacy.md)."""


def _member_id(value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a member id") from None


@privacy.command("export")
@click.argument("member_id")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True, help="The zip to write.")
def privacy_export(member_id, out):
    """Write a member's data archive (an ops request on the member's behalf)."""
    from hub.privacy import export

    try:
        data = export.ops_archive(_db(), _member_id(member_id), common.CLI_ACTOR)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    with open(out, "wb") as archive:
        archive.write(data)
    console.print(f"wrote {len(data)} bytes to {out}")


@privacy.command("erase")
@click.argument("member_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def privacy_erase(member_id, yes):
    """Erase a member's personal data and forfeit their points (cannot be undone)."""
    from hub.privacy import erasure

    member = _member_id(member_id)
    if not yes:
        click.confirm(f"Erase member {member} for good?", abort=True)
    done = _run(lambda s: erasure.erase(s, member, common.CLI_ACTOR))
    if done.already:
        console.print(f"member {member} was already erased")
        return
    forfeited = ", ".join(f"{code} {points}" for code, points in done.forfeited.items()) or "none"
    console.print(f"member {member} erased; points forfeited: {forfeited}", soft_wrap=True)


@privacy.command("retention")
def privacy_retention():
    """Delete what has outlived its retention period (also a daily Celery beat job)."""
    from hub.privacy import retention

    for job, deleted in retention.run(_db(), Settings.from_env()).items():
        console.print(f"{job}: {deleted} deleted")


@main.command()
@click.option("--duration", type=click.FloatRange(min=1), default=60, show_default=True,
              help="Seconds of traffic and faults.")
@click.option("--seed", type=int, default=None, help="The nemesis' and clients' random seed (default: random).")
@click.option("--clients", type=click.IntRange(min=1), default=4, show_default=True, help="Concurrent clients.")
@click.option("--no-nemesis", is_flag=True, help="Traffic only, no faults.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def chaos(duration, seed, clients, no_nemesis, as_json):
    """The bank test (docs/chaos.md): on a private PostgreSQL and Redis, two API processes and
    two workers serve concurrent clients while a nemesis kills and restarts processes; then
    the invariants are checked. Exit 1 on any violation."""
    import random

    from hub.chaos import bank

    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    with bank.deployment() as deployment:
        summary = bank.run(deployment, duration, seed=seed, clients=clients, nemesis=not no_nemesis)
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
    else:
        bank.print_summary(console, summary)
    if summary.violations:
        sys.exit(1)


# -- command groups in their own modules (hub/commands/) --
from hub.commands.audit import audit; main.add_command(audit)  # noqa: E402
from hub.commands.reconcile import reconcile; main.add_command(reconcile)  # noqa: E402
from hub.commands.settlement import settlement; main.add_command(settlement)  # noqa: E402
from hub.commands.ops import ops as ops_group; main.add_command(ops_group)  # noqa: E402


if __name__ == "__main__":  # below the command groups: `python -m hub.cli` (hub up's children) needs them
    main()
