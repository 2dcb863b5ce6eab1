"""Encryption at rest (docs/encryption.md): a dump of the database holds no contact detail,
TOTP secret or gift-card code in clear; lookups still find members by email and phone; and
`hub keys rotate-data` moves every sealed value to a new data key (and master key)."""
from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import subprocess
import uuid

import pyotp
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from hub.cli import main as hub_cli
from hub.db import Database
from hub.identity import accounts, mail
from hub.identity.account_models import MemberAccount
from hub.privacy import keyring, rotation
from hub.privacy.sealed import as_stored
from hub.programs.models import Membership, MembershipIdentifier
from hub.rewards.models import Redemption
from hub.rewards.providers import Outcome, Status
from tests.integration.test_redemptions import provider, redeem, reward_code, run_relay  # noqa: F401


def _dump(database_url: str) -> str:
    """The whole database as SQL text, as a backup would hold it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database) as conn:
            return "\n".join(conn.iterdump())
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(["/usr/bin/pg_dump", "--no-owner", f"--dbname={plain}"], check=True,
                          capture_output=True, text=True, timeout=120).stdout


def _token(n: int = 5) -> str:
    return secrets.token_hex(n)


@pytest.fixture
def known(partner, provider, db):  # noqa: F811  (the scripted gift-card provider)
    """A member with a known email, phone and name, TOTP on, and a fulfilled gift card."""
    email, phone = f"Dump.{_token()}@Example.com", f"+62812{secrets.randbelow(10**8):08d}"
    given, family = f"Givenname{_token(3)}", f"Familyname{_token(3)}"
    card = {"code": f"GIFT-{_token(6).upper()}", "pin": f"{secrets.randbelow(10**9):09d}"}

    enrolled = partner.api.post("/v1/members", {"program": partner.program, "email": email, "phone": phone},
                                key=uuid.uuid4().hex)  # its response is kept for replays
    assert enrolled.status_code == 201, enrolled.text
    member = enrolled.json()["id"]
    partner.buy(member, "5000000000")
    done = db.write(lambda s: accounts.sign_up(s, email=email, password_hash="argon2-hash-not-checked-here",
                                               given_name=given, family_name=family))
    uri = db.write(lambda s: accounts.begin_totp(s, s.get(MemberAccount, done.account_id), "argon2-hash-not-checked-here"))
    totp = pyotp.parse_uri(uri)
    db.write(lambda s: accounts.confirm_totp(s, s.get(MemberAccount, done.account_id), totp.now()))
    db.write(lambda s: mail.send(s, to=email.lower(), subject="Welcome", body="hello"))

    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-dump", delivery=card)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    return {"member": member, "email": email, "phone": phone, "given": given, "family": family,
            "totp": totp.secret, "card": card, "order": order["id"], "account": done.account_id}


def test_a_database_dump_holds_no_contact_detail_totp_secret_or_gift_card_code(known, partner, settings):
    dump = _dump(settings.database_url).lower()
    assert partner.program.lower() in dump  # the dump is the real one: the program's code is in clear
    secrets_ = [known["email"], known["phone"], known["phone"].lstrip("+"), known["given"], known["family"],
                known["totp"], base64.b32decode(known["totp"]).hex(), known["card"]["code"], known["card"]["pin"]]
    leaked = [s for s in secrets_ if s.lower() in dump]
    assert leaked == []


def test_members_are_still_found_by_email_and_phone(known, partner, db):
    for query in ({"email": known["email"].upper()}, {"phone": known["phone"]}):
        response = partner.api.get("/v1/members", **query)
        assert response.status_code == 200, response.text
        found = response.json()["items"]
        assert [m["id"] for m in found] == [known["member"]]
    purchase = partner.api.post("/v1/transactions",
                                partner.purchase_body(known["member"], "10000") | {"member": {"phone": known["phone"]}},
                                key=uuid.uuid4().hex)
    assert purchase.status_code == 201, purchase.text
    with db.read() as s:
        assert accounts.find(s, known["email"].lower()).given_name == known["given"]


def test_a_sealed_column_cannot_be_compared_in_sql():
    with pytest.raises(TypeError, match="blind index"):
        select(MemberAccount).where(MemberAccount.email == "someone@example.com")


def _stored_keys(db, known) -> set[str]:
    """The data keys sealing the known member's values, read as stored."""
    with db.read() as s:
        values = [
            s.scalar(select(as_stored(MemberAccount.email)).where(MemberAccount.id == known["account"])),
            s.scalar(select(as_stored(MemberAccount.__table__.c.totp_secret_sealed))
                     .where(MemberAccount.id == known["account"])),
            s.scalar(select(as_stored(Redemption.__table__.c.delivery_sealed))
                     .where(Redemption.id == uuid.UUID(known["order"]))),
            *s.scalars(select(as_stored(MembershipIdentifier.value))
                       .join(Membership, Membership.id == MembershipIdentifier.membership_id)
                       .where(Membership.member_id == uuid.UUID(known["member"]))),
        ]
    return {keyring.key_of(v) for v in values}


@pytest.fixture
def cli(settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    runner = CliRunner()

    def run(*args, data_keys=""):
        monkeypatch.setenv("HUB_DATA_KEYS", data_keys)
        return runner.invoke(hub_cli, list(args), catch_exceptions=False)
    yield run
    keyring.install(settings, Database(settings.database_url).engine)  # the tests' own keys again


def test_rotation_moves_every_value_to_a_new_data_key_and_lookups_keep_working(known, partner, db, cli, settings):
    before = _stored_keys(db, known)
    ring = keyring.current()
    with db.engine.begin() as conn:
        ring.create_key(conn)  # a new data key alone: the old values still open
    with db.read() as s:
        assert accounts.find(s, known["email"]).email == known["email"].lower()

    done = cli("keys", "rotate-data")
    assert done.exit_code == 0, done.output
    newest = rotation.status(db)[0]
    assert _stored_keys(db, known) == {newest["id"]} and newest["id"] not in before
    assert [row["values"] for row in rotation.status(db)[1:] if row["values"]] == []
    again = cli("keys", "rotate-data", "--resume")
    assert "0 values sealed again" in " ".join(again.output.split())  # (rich wraps lines)
    found = partner.api.get("/v1/members", email=known["email"]).json()["items"]
    assert [m["id"] for m in found] == [known["member"]]


def test_a_new_master_key_rewraps_the_data_keys_and_a_missing_one_is_a_clear_error(known, db, cli, settings):
    new = f"k{_token(3)}:" + base64.b64encode(os.urandom(32)).decode()
    done = cli("keys", "rotate-data", data_keys=f"{new},derived")
    assert done.exit_code == 0, done.output
    assert {row["master_key"] for row in rotation.status(db)} == {new.split(":")[0]}
    with db.read() as s:  # opened with the new master key only
        assert accounts.find(s, known["email"]).family_name == known["family"]

    refused = cli("keys", "data-status", data_keys="derived")
    assert refused.exit_code == 1
    assert f"wrapped by master key {new.split(':')[0]!r}, which HUB_DATA_KEYS does not hold" in refused.output

    back = cli("keys", "rotate-data", "--resume", data_keys=f"derived,{new}")  # the tests' keys again
    assert back.exit_code == 0, back.output
    assert {row["master_key"] for row in rotation.status(db)} == {"derived"}
