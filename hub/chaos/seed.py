"""The bank test's coalition, on a fresh database: one partner with two programs that convert
into each other, its API client, members enrolled in both, and the providers' catalogs.

Run in its own process (`python -m hub.chaos.seed MEMBERS`, with the deployment's HUB_*
environment), as `hub` commands are: it installs that deployment's keyring (sealed columns),
which must not replace the keyring of the process that drives the test. Prints JSON.
"""
from __future__ import annotations

import json
import sys
from decimal import Decimal

from hub import migrations
from hub.actor import Actor
from hub.db import Database
from hub.exchange import rates
from hub.identity.clients import create_client
from hub.privacy import keyring
from hub.programs import service
from hub.rewards.registry import configured_providers, sync_all
from hub.settings import Settings

PARTNER = "BANK"
# A program's point is worth point_value coalition units (USD 1 = 16,000 units by default):
# a $1-$3 gift card costs 1,600-4,800 BANKA points; a $10-$60 purchase earns 10,000-60,000.
PROGRAMS = {"BANKA": "10", "BANKB": "5"}
POINTS_PER_USD = "1000"
SEEDER = "chaos seed"  # who the ledger and the audit trail say set the coalition up


def seed(db: Database, settings: Settings, members: int) -> dict:
    migrations.upgrade(settings.database_url)
    keyring.install(settings, db.engine)
    created = db.write(lambda s: _coalition(s, members))
    report = sync_all(db, configured_providers(settings))
    failed = {name: r for name, r in report.items() if "error" in r}
    if failed:
        raise SystemExit(f"catalog sync failed: {failed}")
    return created


def _coalition(s, members: int) -> dict:
    partner = service.create_partner(s, PARTNER, "Bank test partner", by=SEEDER)
    for code, value in PROGRAMS.items():
        service.create_program(s, partner_code=PARTNER, code=code, name=f"{code} points", point_value=Decimal(value),
                               earn_currency="USD", earn_rate=Decimal(POINTS_PER_USD), by=SEEDER)
    a, b = PROGRAMS
    for source, target in ((a, b), (b, a)):
        rates.set_pair(s, source, target, open=True, updated_by=SEEDER)
    client, secret = create_client(s, name="bank test back end", partner_id=partner.id, by=SEEDER)
    actor = Actor(client.client_id, partner.id, frozenset(client.scopes.split()))
    ids = []
    for i in range(members):
        member = service.enrol(s, actor, {"program": a, "external_id": f"bank-{i:04d}"})
        service.enrol(s, actor, {"program": b, "member_id": str(member.id), "external_id": f"bank-{i:04d}"})
        ids.append(str(member.id))
    return {"client_id": client.client_id, "client_secret": secret, "programs": [a, b], "members": ids}


if __name__ == "__main__":
    settings = Settings.from_env()
    print(json.dumps(seed(Database(settings.database_url), settings, int(sys.argv[1]))))
