"""The demo coalition that `make run` seeds: partners/demo/coalition.json.

Seeding is idempotent. Client secrets are shown once by design, so the demo keeps its own
in instance/demo-credentials.json (owner-only) to print the quick start again on every run.
The example brand sites (partners/brandsite/brands/*.json) get their OAuth clients here too,
also idempotently: `hub up` starts each brand with its client from that file. Each program
that earns in the hub gets its rules from partners/demo/rules/<PROGRAM>.json, and each program
its settlement price (coalition.json's "price": minor units per point, matching its
point_value at the default unit rates, and the hub's issuance fee). The ops console gets one
ops_admin user, whose password and TOTP secret the credentials file keeps too.
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyotp
from rich.console import Console
from sqlalchemy import func, select, update

from hub.actor import Actor
from hub.db import Database, utcnow
from hub.exchange import rates
from hub.identity import ops_users
from hub.identity.accounts import Passwords
from hub.identity.clients import create_client
from hub.identity.oidc import clients as brand_clients
from hub.privacy import blind
from hub.programs import earning, service
from hub.programs.models import Membership, MembershipIdentifier, Partner, Program
from hub.rewards import catalog
from hub.rules import admin as rules_admin
from hub.settings import INSTANCE_DIR, Settings
from hub.settlement import prices
from hub.settlement.models import SettlementPeriod

SEEDER = "demo seed"  # who the ledger and the audit trail say set the demo up
COALITION = Path(__file__).resolve().parents[1] / "partners" / "demo" / "coalition.json"
CREDENTIALS = INSTANCE_DIR / "demo-credentials.json"
RULES = COALITION.parent / "rules"  # one rule document per program that earns in the hub
OPS_EMAIL = "ops@demo.example"  # the demo's ops console user (ops_admin)
PRICED_FROM = datetime(2020, 1, 1, tzinfo=timezone.utc)  # before any demo transfer


def seed(db: Database) -> dict:
    spec = json.loads(COALITION.read_text())
    with db.read() as s:
        existing = set(s.scalars(select(Partner.code)))
    creds = None
    if spec["partners"][0]["code"] in existing:
        if not CREDENTIALS.exists():
            raise SystemExit(f"demo partners exist but {CREDENTIALS} is gone; use a fresh database")
        creds = json.loads(CREDENTIALS.read_text())
    # Partners added to the demo since this database was seeded are seeded now.
    missing = [p for p in spec["partners"] if p["code"] not in existing]
    if missing:
        creds = db.write(lambda s: _seed(s, spec, missing, creds))
        _save(creds)
    if db.write(lambda s: _register_brands(s, creds)):
        _save(creds)
    db.write(_publish_rules)
    db.write(lambda s: _price_programs(s, spec))
    if _add_console_user(db, creds):
        _save(creds)
    return creds


def _price_programs(s, spec: dict) -> None:
    """Price each demo program that has no price yet, through the prices service (audited as
    the seeder), from PRICED_FROM or, in a database with closed periods, from the end of the
    last (a closed period's price cannot change). A priced program is left alone."""
    closed_until = s.scalar(select(func.max(SettlementPeriod.ends_at)))
    since = max(PRICED_FROM, closed_until) if closed_until else PRICED_FROM
    for p in spec["partners"]:
        for prog in p["programs"]:
            if not prices.prices(s, prog["code"]):
                price = prog["price"]
                prices.set_price(s, SEEDER, prog["code"], since, price["currency"], price["per_point"],
                                 price["fee_bps"])


def _add_console_user(db: Database, creds: dict) -> bool:
    """The ops_admin console user, unless it exists (then the credentials file has kept its
    secrets since it was made). Whether it was added."""
    with db.read() as s:
        if ops_users.find(s, OPS_EMAIL) is not None:
            return False
    password = ops_users.new_password()
    password_hash = Passwords().hash(password)  # before the transaction: argon2 is slow on purpose
    _, uri = db.write(lambda s: ops_users.add(s, email=OPS_EMAIL, role="ops_admin", partner_code=None,
                                              password_hash=password_hash, actor=SEEDER))
    creds["ops_console"] = {"email": OPS_EMAIL, "password": password, "totp_secret": pyotp.parse_uri(uri).secret,
                            "otpauth_uri": uri}
    return True


def _publish_rules(s) -> None:
    """Each program's rule document from partners/demo/rules/<PROGRAM>.json, unless it is
    already that program's newest version (a re-seed publishes no duplicate; an edited file
    publishes the next version)."""
    ops = Actor(SEEDER, None, frozenset({"ops:write"}))
    for path in sorted(RULES.glob("*.json")):
        rules_admin.publish_if_changed(s, ops, path.stem, json.loads(path.read_text()), created_by=SEEDER)


def _save(creds: dict) -> None:
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh, indent=2)


def _register_brands(s, creds: dict) -> bool:
    """A confidential OIDC client for each example brand site, unless the credentials file
    already holds a live one with the same URIs (a database seeded before the brand sites
    existed, or a brand file whose port changed, gets a new one). Whether any was added."""
    from partners.brandsite.config import demo_brands

    brands, changed = creds.setdefault("brands", {}), False
    for brand in demo_brands():
        uris = {"redirect_uri": brand.redirect_uri, "post_logout_redirect_uri": brand.post_logout_redirect_uri,
                "backchannel_logout_uri": brand.backchannel_logout_uri}
        known = brands.get(brand.code)
        if known and all(known.get(k) == v for k, v in uris.items()) and brand_clients.find(s, known["client_id"]):
            continue
        partner_id = service.partner_by_code(s, brand.partner).id
        client, secret = brand_clients.register(
            s, name=f"{brand.name} website", partner_id=partner_id, redirect_uris=[brand.redirect_uri],
            post_logout_redirect_uris=[brand.post_logout_redirect_uri],
            backchannel_logout_uri=brand.backchannel_logout_uri, by=SEEDER)
        brands[brand.code] = {"client_id": client.client_id, "client_secret": secret, "url": brand.base_url + "/",
                              **uris}
        changed = True
    return changed


def _seed(s, spec: dict, partners: list[dict], creds: dict | None) -> dict:
    """Seed these partners of the spec (and an ops client on a fresh database), then open the
    demo's conversion pairs. Returns the credentials, the new ones added."""
    if creds is None:
        ops, ops_secret = create_client(s, name="demo ops console", partner_id=None, by=SEEDER)
        creds = {"ops": {"client_id": ops.client_id, "client_secret": ops_secret}, "partners": {}}
    else:
        creds = {**creds, "partners": dict(creds["partners"])}  # a retried transaction starts afresh
    when = (utcnow() - timedelta(days=1)).isoformat()
    for p in partners:
        partner = service.create_partner(s, p["code"], p["name"], by=SEEDER)
        for prog in p["programs"]:
            service.create_program(
                s, partner_code=p["code"], code=prog["code"], name=prog["name"],
                point_value=Decimal(prog["point_value"]), earn_currency=prog["currency"],
                earn_rate=Decimal(prog["points_per_unit"]), hosted_by=prog.get("hosted_by"), by=SEEDER,
            )
        client, secret = create_client(s, name=f"{p['name']} back end", partner_id=partner.id, by=SEEDER)
        creds["partners"][p["code"]] = {"client_id": client.client_id, "client_secret": secret}
        actor = Actor(client.client_id, partner.id, frozenset(client.scopes.split()))
        program = p["programs"][0]
        for m in p["members"]:
            identifiers = {k: v for k, v in m.items() if k not in ("purchases", "same_member_as")}
            enrolled = service.enrol(s, actor, {"program": program["code"], **identifiers})
            if "same_member_as" in m:
                _link(s, enrolled.id, **m["same_member_as"])
            purchases = [
                (i, {"program": program["code"], "member": {"external_id": m["external_id"]},
                     "transaction_id": txn, "amount": amount, "currency": program["currency"],
                     "occurred_at": when})
                for i, (txn, amount) in enumerate(m["purchases"])
            ]
            if purchases:
                earning.earn(s, actor, purchases)
        for reward in p.get("rewards", []):
            catalog.create_reward(s, actor, reward)
    pairs = spec.get("conversions")
    if pairs:
        codes = pairs["open_between"]
        for source in codes:
            for target in codes:
                if source != target:
                    rates.set_pair(s, source, target, open=True, fee_bps=pairs.get("fee_bps", 0),
                                   updated_by=SEEDER)
    return creds


def _link(s, member_id: uuid.UUID, program: str, external_id: str) -> None:
    """Make the member just enrolled the same person as a member of another partner's
    program, as account linking does once the member has proved both cards are theirs
    (hub/identity/linking.py): their new membership moves to that coalition member."""
    target = s.scalar(
        select(Membership.member_id)
        .join(MembershipIdentifier, MembershipIdentifier.membership_id == Membership.id)
        .join(Program, Program.id == Membership.program_id)
        .where(Program.code == program, MembershipIdentifier.kind == "external_id",
               MembershipIdentifier.value_index == blind.index("external_id", external_id)))
    s.execute(update(Membership).where(Membership.member_id == member_id).values(member_id=target))


def print_quickstart(console: Console, settings: Settings, creds: dict) -> None:
    base = f"http://{settings.host}:{settings.port}"
    kopi, terbang = creds["partners"]["KOPI"], creds["partners"]["TERBANG"]
    now = utcnow().replace(microsecond=0).isoformat().replace("+00:00", "Z")
    console.print(f"""
[bold]Demo coalition ready.[/] Partners: {', '.join(creds['partners'])}. Credentials: {CREDENTIALS}
API docs: {base}/v1/ui/   spec: {base}/v1/openapi.json

Try it as the coffee shop (KOPI):
  TOKEN=$(curl -s -u {kopi['client_id']}:{kopi['client_secret']} \\
      -d grant_type=client_credentials {base}/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" '{base}/v1/members?external_id=kopi-0001'
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{{"program":"KOPI","member":{{"external_id":"kopi-0001"}},"transaction_id":"try-1","amount":"55000","currency":"IDR","occurred_at":"{now}"}}' \\
      {base}/v1/transactions
  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/programs/KOPI/rules     # partners/demo/rules/KOPI.json
  curl -s -H "Authorization: Bearer $TOKEN" '{base}/v1/members/<id>/history'  # each movement says why

Redeem as the airline (TERBANG) for Citra: a gift card and a donation, relayed to the sandbox providers:
  TOKEN=$(curl -s -u {terbang['client_id']}:{terbang['client_secret']} \\
      -d grant_type=client_credentials {base}/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" '{base}/v1/rewards?program=MILES&kind=gift_card'
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{{"reward":"<a code from the list>","program":"MILES","member":{{"external_id":"ff-778899"}},"amount":"10.00"}}' \\
      {base}/v1/redemptions
  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/redemptions/<id>     # pending, then fulfilled
""", soft_wrap=True, highlight=False)
    langit = creds["partners"].get("LANGIT")
    if langit:
        console.print(f"""Convert Ani's points (KOPI, BUKU, MILES and SKY convert into each other, 1% fee). SKY is Langit
Airways' SkyMiles, kept by the airline itself (its LCP API, here the sandbox): Ani is SKY-0001 there.
As the coffee shop, KOPI points into SkyMiles (the miles are credited at the airline, then the KOPI points posted):
  TOKEN=$(curl -s -u {kopi['client_id']}:{kopi['client_secret']} \\
      -d grant_type=client_credentials {base}/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  QUOTE=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{{"from":"KOPI","to":"SKY","points":150,"member":{{"external_id":"kopi-0001"}}}}' \\
      {base}/v1/conversions/quotes | python3 -c 'import json,sys; print(json.load(sys.stdin)["quote"])')
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "{{\\"quote\\":\\"$QUOTE\\"}}" \\
      {base}/v1/conversions                      # 202 pending; GET /v1/conversions/<id>: completed
As the airline (LANGIT, client {langit['client_id']}, secret {langit['client_secret']}), SkyMiles back into KOPI:
  the same with '{{"from":"SKY","to":"KOPI","points":1000,"member":{{"external_id":"SKY-0001"}}}}'.
  The sandbox's magic amounts (points % 100): 1099 declines (failed, nothing moves), 1095 settles after a
  second, 1097 answers systemError but applied (the saga asks, then completes). Stuck ones: `hub conversions review`.
""", soft_wrap=True, highlight=False)
    brands = creds.get("brands", {})
    if brands:
        sites = "  ".join(f"{code}: {b['url']}" for code, b in brands.items())
        console.print(f"""Single sign-on: the example brand sites ({sites})
  1. Open {next(iter(brands.values()))['url']} and log in: create an account on the hub (Sign up), then
     print the verification mail with `hub accounts mail` and open its link.
  2. Open the other brand's site: already signed in, no form (Toko Buku asks only for `openid`, which shares
     nothing); "Show my name and points here" asks once whether to share them with that partner.
  3. Log out on one brand: you are logged out of both (back-channel logout).
""", soft_wrap=True, highlight=False)
    console_user = creds.get("ops_console")
    if console_user:
        console.print(f"""Ops console (ops_admin): {base}/ops/  email {console_user['email']}  password {console_user['password']}
  The TOTP code, without a phone (each code logs in once; for another login, wait for the next one):
  {sys.executable} -c "import pyotp; print(pyotp.TOTP('{console_user['totp_secret']}').now())"
  (or add {console_user['otpauth_uri']} to an authenticator app)
  Settlement: every demo program has a price per point (partners/demo/coalition.json). Once a month is over,
  `hub settlement close --period YYYY-MM` makes its statements: Statements in the console; the audit trail is under Audit.
""", soft_wrap=True, highlight=False)
