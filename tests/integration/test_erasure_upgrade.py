"""Migration 0019 on a database that holds member-transfer notes in the ledger's metadata: the
notes move, sealed, to member_transfers.note, where erasure can clear them; the ledger keeps
no note, and metadata that is not a note stays."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid

from hub import migrations
from hub.db import Database
from hub.exchange.models import MemberTransfer
from hub.ledger.models import Transfer
from hub.privacy import keyring
from tests.integration.upgrade_support import old_database  # noqa: F401  (fixture)

NOW = "2026-01-01 00:00:00.000000+00:00"
NOTE = "for Budi Santoso, get well soon"


def _rows_before_0019(path: str) -> uuid.UUID:
    transfer_id, program = uuid.uuid4(), uuid.uuid4().hex
    with sqlite3.connect(path) as conn:
        for ledger_id, code, meta in ((1, "transfer", {"note": NOTE}), (2, "expiry", {"expired_through": NOW})):
            conn.execute("INSERT INTO ledger_transfers (id, ledger, debit_account_id, credit_account_id, amount, code,"
                         " phase, caused_by, metadata, created_at) VALUES (?, ?, 1, 2, 5, ?, 'posted', 'test', ?, ?)",
                         (ledger_id, program, code, json.dumps(meta), NOW))
        conn.execute("INSERT INTO member_transfers (id, program_id, from_member_id, to_member_id, points, transfer_id,"
                     " caused_by, created_at) VALUES (?, ?, ?, ?, 5, 1, 'test', ?)",
                     (transfer_id.hex, program, uuid.uuid4().hex, uuid.uuid4().hex, NOW))
    return transfer_id


def test_transfer_notes_leave_the_ledger_for_the_transfer_sealed(settings, old_database):
    path, url = old_database("0018_export_erasure_retention")
    transfer_id = _rows_before_0019(str(path))

    migrations.upgrade(url)
    with sqlite3.connect(path) as conn:
        assert "get well" not in "\n".join(conn.iterdump())  # neither in the ledger nor in clear

    db = Database(url)
    keyring.install(dataclasses.replace(settings, database_url=url), db.engine)
    with db.read() as s:
        assert s.get(MemberTransfer, transfer_id).note == NOTE
        assert s.get(Transfer, 1).meta is None
        assert s.get(Transfer, 2).meta == {"expired_through": NOW}
    db.dispose()
