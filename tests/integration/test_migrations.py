"""The schema the migrations build is the one the models declare: a model change without its
migration (or a migration that drifts from its model) fails here, on both dialects. And what a
migration does to rows an older revision wrote (on SQLite: tests/integration/upgrade_support.py)."""
from __future__ import annotations

import dataclasses
import sqlite3
import uuid

from alembic.autogenerate import compare_metadata
import pytest
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

import hub.models  # noqa: F401  (registers every table on Base.metadata)
from hub import migrations
from hub.audit import review_notes
from hub.db import Base, Database
from hub.exchange import saga
from hub.privacy import keyring
from tests.integration.upgrade_support import old_database  # noqa: F401  (fixture)


def test_migrated_schema_matches_the_models(settings):
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


NOW = "2026-01-01 00:00:00.000000+00:00"
LEGACY = ("resolved by {by}: the partner's credit {said} (Jane Doe called LCP support); in review for: "
          "no definitive answer after 4 attempts: unknown: systemError")


def _conversion_before_0026(path, state: str, failure: str) -> uuid.UUID:
    cid = uuid.uuid4()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO conversions (id, quote_id, member_id, from_program_id, to_program_id, points_in,"
                     " points_out, from_value, to_value, fee_bps, fee_units, units_out, state, attempts, failure,"
                     " caused_by, created_at, resolved_at) VALUES (?,?,?,?,?,1000,500,'1','1',0,'0','5',?,1,?,'test',?,?)",
                     (cid.hex, *(uuid.uuid4().hex for _ in range(4)), state, failure, NOW, NOW))
    return cid


def test_0026_leaves_no_legacy_resolution_text_in_failure(settings, old_database):  # noqa: F811
    """Conversions resolved before review notes held who resolved them and why in `failure`,
    which partners read: 0026 moves that into sealed review notes."""
    path, url = old_database("0025_ops_console")
    ops_user = f"ops:{uuid.uuid4()}"
    applied = _conversion_before_0026(path, "completed", LEGACY.format(by="cli", said="applied"))
    refused = _conversion_before_0026(path, "failed", LEGACY.format(by=ops_user, said="not applied"))
    untouched = _conversion_before_0026(path, "failed", "the partner refused the credit")

    migrations.upgrade(url)
    with sqlite3.connect(path) as conn:
        failures = dict(conn.execute("SELECT id, failure FROM conversions"))
        assert "Jane Doe" not in "\n".join(conn.iterdump())  # neither in failure nor in clear in a note
    assert [failures[c.hex] for c in (applied, refused, untouched)] == [
        None, saga.NOT_APPLIED_AFTER_REVIEW, "the partner refused the credit"]

    db = Database(url)
    keyring.install(dataclasses.replace(settings, database_url=url), db.engine)
    with db.read() as s:
        notes = {c: review_notes.about(s, review_notes.CONVERSION, c) for c in (applied, refused, untouched)}
    db.dispose()
    in_review_for = "no definitive answer after 4 attempts: unknown: systemError"
    assert [(n.action, n.actor, n.reason, n.in_review_for) for n in notes[applied]] == [
        ("applied", "cli", "the partner's credit applied (Jane Doe called LCP support)", in_review_for)]
    assert [(n.action, n.actor, n.reason, n.in_review_for) for n in notes[refused]] == [
        ("not_applied", ops_user, "the partner's credit not applied (Jane Doe called LCP support)", in_review_for)]
    assert notes[untouched] == []


def test_a_review_note_holds_only_a_known_action(db):
    def note(action: str):
        return lambda s: review_notes.add(s, review_notes.CONVERSION, uuid.uuid4(), action, reason="why", by="cli",
                                          in_review_for=None)
    db.write(note("applied"))
    with pytest.raises(IntegrityError):
        db.write(note("resolved"))
