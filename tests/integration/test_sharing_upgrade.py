"""Migration 0021 on a database holding member_sharing switches: each switch on becomes its
consent purpose granted to every partner the member holds a membership with (once per
partner, however many of its programs), since the switch's time, with a proof row each; a
switch off grants nothing; member_sharing is gone."""
from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timezone

from alembic import command
from sqlalchemy import inspect, select

from hub import migrations
from hub.db import Database
from hub.privacy.sharing_models import SharingConsent, SharingConsentEvent

THEN = "2026-01-02 03:04:05.000000+00:00"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _rows_before_0021(path: str) -> dict[str, uuid.UUID]:
    ids = {name: uuid.uuid4() for name in ("a", "b", "c", "both", "one", "off", "a1", "a2", "b1", "c1")}
    with sqlite3.connect(path) as conn:
        for partner in ("a", "b", "c"):
            conn.execute("INSERT INTO partners (id, code, name, created_at) VALUES (?, ?, ?, ?)",
                         (ids[partner].hex, f"UP{ids[partner].hex[:6]}", partner, THEN))
        for n, (program, partner) in enumerate((("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c"))):
            conn.execute("INSERT INTO programs (id, partner_id, code, name, point_value, earn_currency, earn_rate,"
                         " issuance_account_id, redemption_account_id, clearing_account_id, breakage_account_id,"
                         " created_at) VALUES (?, ?, ?, ?, '1', 'IDR', '1', ?, ?, ?, ?, ?)",
                         (ids[program].hex, ids[partner].hex, f"P{ids[program].hex[:6]}", program,
                          10 * n + 1, 10 * n + 2, 10 * n + 3, 10 * n + 4, THEN))
        holds = {"both": ("a1", "a2", "b1"), "one": ("b1",), "off": ("a1", "c1")}
        account = 100
        for member, programs in holds.items():
            conn.execute("INSERT INTO members (id, created_at) VALUES (?, ?)", (ids[member].hex, THEN))
            for program in programs:
                account += 1
                conn.execute("INSERT INTO memberships (id, member_id, program_id, account_id, created_at)"
                             " VALUES (?, ?, ?, ?, ?)", (uuid.uuid4().hex, ids[member].hex, ids[program].hex,
                                                         account, THEN))
        for member, attributes, programs in (("both", 1, 1), ("one", 0, 1), ("off", 0, 0)):
            conn.execute("INSERT INTO member_sharing (member_id, attributes, programs, updated_at) VALUES (?, ?, ?, ?)",
                         (ids[member].hex, attributes, programs, THEN))
    return ids


def test_the_switches_become_consents_to_each_of_the_members_partners(tmp_path):
    path = tmp_path / "old.sqlite3"
    url = f"sqlite:///{path}"
    migrations.upgrade(url, "0020_request_ids")
    ids = _rows_before_0021(str(path))

    migrations.upgrade(url)
    db = Database(url)
    try:
        assert "member_sharing" not in inspect(db.engine).get_table_names()
        with db.read() as s:
            consents = {(c.member_id, c.partner_id, c.purpose, c.granted_at) for c in s.scalars(select(SharingConsent))}
            events = {(e.member_id, e.partner_id, e.purpose, e.action, e.channel, e.client_id, e.at)
                      for e in s.scalars(select(SharingConsentEvent))}
            assert s.scalar(select(SharingConsentEvent.by).distinct()) == "migration:0021"
    finally:
        db.dispose()
    expected = {
        (ids["both"], ids["a"], "attributes", AT), (ids["both"], ids["b"], "attributes", AT),
        (ids["both"], ids["a"], "programs_held", AT), (ids["both"], ids["b"], "programs_held", AT),
        (ids["one"], ids["b"], "programs_held", AT),
    }
    assert consents == expected
    assert events == {(m, p, purpose, "grant", "migration", None, at) for m, p, purpose, at in expected}

    command.downgrade(migrations.config(url), "0020_request_ids")  # the switches come back empty; the consents stay
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM member_sharing").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sharing_consents").fetchone() == (len(expected),)
