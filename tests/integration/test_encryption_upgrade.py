"""Migration 0016 on a database that already holds members: contact details are sealed and
indexed, values sealed by the former scheme are sealed again, and the hub finds them all."""
from __future__ import annotations

import base64
import dataclasses
import sqlite3
import uuid

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub import crypto, migrations
from hub.db import Database
from hub.identity import accounts, mail
from hub.identity.account_models import MemberAccount
from hub.privacy import keyring
from tests.integration.upgrade_support import old_database  # noqa: F401  (fixture)
from hub.programs import service
from hub.programs.models import Program

NOW = "2026-01-01 00:00:00.000000+00:00"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"


def _former_seal(secret_key: str, purpose: str, plaintext: bytes) -> str:
    """hub.crypto.seal before 0016: Fernet under a key derived from HUB_SECRET_KEY."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"hub:{purpose}".encode()).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key)).encrypt(plaintext).decode()


def _rows_before_0016(path: str, secret_key: str) -> dict:
    ids = {name: uuid.uuid4().hex for name in ("partner", "program", "member", "membership", "account")}
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO ledger_accounts (id, ledger, code, cached, no_overdraft, debits_pending, "
                     "debits_posted, credits_pending, credits_posted, created_at) VALUES (1, ?, 'member', 1, 1, 0, 0, "
                     "0, 0, ?)", (ids["program"], NOW))
        conn.execute("INSERT INTO partners (id, code, name, created_at) VALUES (?, 'OLD', 'Old', ?)", (ids["partner"], NOW))
        conn.execute("INSERT INTO programs (id, partner_id, code, name, point_value, earn_currency, earn_rate, "
                     "issuance_account_id, redemption_account_id, clearing_account_id, breakage_account_id, created_at) "
                     "VALUES (?, ?, 'OLDP', 'Old points', '1', 'IDR', '0.001', 1, 1, 1, 1, ?)",
                     (ids["program"], ids["partner"], NOW))
        conn.execute("INSERT INTO members (id, created_at) VALUES (?, ?)", (ids["member"], NOW))
        conn.execute("INSERT INTO memberships (id, member_id, program_id, account_id, created_at) VALUES (?, ?, ?, 1, ?)",
                     (ids["membership"], ids["member"], ids["program"], NOW))
        for kind, value in (("email", "old.member@example.com"), ("phone", "+628111222333")):
            conn.execute("INSERT INTO membership_identifiers (id, membership_id, program_id, kind, value) "
                         "VALUES (?, ?, ?, ?, ?)", (uuid.uuid4().hex, ids["membership"], ids["program"], kind, value))
        conn.execute("INSERT INTO member_accounts (id, member_id, email, password_hash, password_changed_at, given_name, "
                     "family_name, totp_secret_sealed, created_at) VALUES (?, ?, 'old.member@example.com', 'x', ?, "
                     "'Oldgiven', 'Oldfamily', ?, ?)",
                     (ids["account"], ids["member"], NOW, _former_seal(secret_key, "totp-secret", TOTP_SECRET.encode()), NOW))
        conn.execute("INSERT INTO outgoing_mail (to_address, subject, body_sealed, created_at) VALUES "
                     "('old.member@example.com', 'Hello', ?, ?)", (_former_seal(secret_key, "outgoing-mail", b"old body"), NOW))
        conn.execute("INSERT INTO idempotency_keys (owner, key, fingerprint, status, body, created_at) VALUES "
                     "('cli_old', 'k1', 'f', 201, '{\"email\": \"old.member@example.com\"}', ?)", (NOW,))
    return ids


def test_an_existing_database_is_sealed_and_indexed_by_the_upgrade(settings, old_database):
    path, url = old_database("0015_partner_webhooks")
    ids = _rows_before_0016(str(path), settings.secret_key)

    migrations.upgrade(url)
    with sqlite3.connect(path) as conn:
        stored = "\n".join(conn.iterdump()).lower()
    for plain in ("old.member@example.com", "628111222333", "oldgiven", "oldfamily", TOTP_SECRET.lower()):
        assert plain not in stored

    db = Database(url)
    keyring.install(dataclasses.replace(settings, database_url=url), db.engine)
    with db.read() as s:
        account = accounts.find(s, "Old.Member@example.com")
        assert (account.given_name, account.family_name) == ("Oldgiven", "Oldfamily")
        assert crypto.unseal(accounts.TOTP_PURPOSE, s.get(MemberAccount, account.id).totp_secret_sealed).decode() == TOTP_SECRET
        (message,) = mail.latest(s, to="old.member@example.com")
        assert message.body == "old body"
        program = s.get(Program, uuid.UUID(ids["program"]))
        for ref in ({"email": "old.member@example.com"}, {"phone": "+628111222333"}):
            assert service.resolve_membership(s, program, ref).id == uuid.UUID(ids["membership"])
    db.dispose()
