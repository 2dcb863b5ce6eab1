"""The audit trail's chain (hub/audit/trail.py) on a database of its own: an untouched trail
verifies; an edited, removed, forged, swapped or truncated entry is named, by `verify` and by
`hub audit verify`; appends from concurrent threads stay gapless (on PostgreSQL, with
HUB_TEST_DATABASE_URL, through the head's row lock; on SQLite, its one writer at a time)."""
from __future__ import annotations

import os
import threading
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from hub import migrations
from hub.audit import trail
from hub.audit.models import AuditEntry
from hub.cli import main
from hub.privacy import keyring

ENTRIES = 5


@pytest.fixture(scope="module")
def private_url(tmp_path_factory):
    base = os.environ.get("HUB_TEST_DATABASE_URL")
    if not base:
        url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.sqlite3'}"
        migrations.upgrade(url)
        yield url
        return
    name = f"hub_audit_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        migrations.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(private_url, app):  # app: the keyring (whose blind key keys the chain) is installed
    engine = create_engine(private_url)
    with engine.begin() as conn:
        # The tamperer owns the tables: the append-only triggers are no obstacle to them.
        for statement in DROP_TRIGGERS[engine.dialect.name]:
            conn.execute(text(statement))
        conn.execute(text("DELETE FROM audit_entries"))
        conn.execute(text("DELETE FROM audit_head"))
    yield engine
    engine.dispose()


DROP_TRIGGERS = {"postgresql": ["ALTER TABLE audit_entries DISABLE TRIGGER USER"],
                 "sqlite": ["DROP TRIGGER IF EXISTS audit_entries_no_update",
                            "DROP TRIGGER IF EXISTS audit_entries_no_delete"]}


def append(engine, n: int = ENTRIES, actor: str = "ops:test") -> None:
    for i in range(n):
        with Session(engine) as s, s.begin():
            trail.record(s, actor=actor, action="partner.create", target=f"partner:P{i}",
                         before=None, after={"code": f"P{i}", "n": i})


def verdict(engine) -> trail.Verdict:
    with Session(engine) as s:
        return trail.verify(s)


def sql(engine, statement: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.fixture
def run(private_url, settings, monkeypatch):
    """`hub` on the private database; the keyring it installs is put back afterwards."""
    monkeypatch.setattr(keyring, "_installed", keyring.current())
    monkeypatch.setenv("HUB_DATABASE_URL", private_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_an_untouched_trail_verifies_and_names_its_head(engine, run):
    assert verdict(engine) == trail.Verdict(0, None)  # an empty trail is whole
    append(engine)
    found = verdict(engine)
    with Session(engine) as s:
        assert found.ok and found.entries == ENTRIES and (ENTRIES, found.head_hash) == trail.head(s)
    result = run("audit", "verify")
    assert result.exit_code == 0 and f"{ENTRIES} entries, head {ENTRIES}:{found.head_hash}" in result.output


# Each tampering: what it does to entries 1..5, and the first problem verify must name.
TAMPERING = {
    "edited": ("UPDATE audit_entries SET target = 'partner:EVIL' WHERE seq = 3", "entry 3 was altered"),
    "edited json": ("UPDATE audit_entries SET after = '{\"code\": \"P2\", \"n\": 7}' WHERE seq = 3",
                    "entry 3 was altered"),
    "deleted in the middle": ("DELETE FROM audit_entries WHERE seq = 3", "entry 3 is missing (found 4 next)"),
    "deleted at the end": ("DELETE FROM audit_entries WHERE seq = 5",
                           "the trail ends at entry 4 but its head names entry 5 (entries deleted from the end)"),
    "renumbered to close the gap": (
        "DELETE FROM audit_entries WHERE seq = 3; UPDATE audit_entries SET seq = seq - 1 WHERE seq > 3",
        "entry 3 does not follow entry 2"),
    "forged at the end, head moved": (
        "INSERT INTO audit_entries (seq, at, actor, action, target, before, after, prev_hash, hash) "
        "SELECT 6, at, 'ops:mallory', 'partner.create', 'partner:EVIL', NULL, NULL, hash, "
        "'" + "ab" * 32 + "' FROM audit_entries WHERE seq = 5; "
        "UPDATE audit_head SET seq = 6, hash = '" + "ab" * 32 + "'",
        "entry 6 was altered"),
    "swapped": (
        "UPDATE audit_entries SET seq = 100 WHERE seq = 2; UPDATE audit_entries SET seq = 2 WHERE seq = 3; "
        "UPDATE audit_entries SET seq = 3 WHERE seq = 100",
        "entry 2 does not follow entry 1"),
    "head rewound": ("UPDATE audit_head SET hash = (SELECT prev_hash FROM audit_entries WHERE seq = 5)",
                     "entry 5 is not the one the head names"),
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_tampering_is_named(engine, run, tampering):
    statements, problem = TAMPERING[tampering]
    append(engine)
    assert verdict(engine).ok
    for statement in statements.split("; "):
        sql(engine, statement)
    found = verdict(engine)
    assert found.problem == problem and not found.ok
    result = run("audit", "verify")
    assert result.exit_code == 1 and problem in result.output


def test_appends_after_a_deletion_do_not_hide_it(engine):
    append(engine)
    sql(engine, "DELETE FROM audit_entries WHERE seq = 2")
    append(engine, 2)
    assert verdict(engine).problem == "entry 2 is missing (found 3 next)"


def test_entries_are_pages_newest_first_with_filters(engine, run):
    append(engine, 3, actor="ops:a")
    with Session(engine) as s, s.begin():
        trail.record(s, actor="ops:b", action="rules.publish", target="program:KOPI1", after={"version": 2})
    with Session(engine) as s:
        first, cursor = trail.entries(s, limit=2)
        rest, end = trail.entries(s, cursor=cursor, limit=2)
        assert [e.seq for e in first + rest] == [4, 3, 2, 1] and end is None
        assert [e.seq for e in trail.entries(s, action="rules.publish")[0]] == [4]
        assert [e.seq for e in trail.entries(s, actor="ops:a")[0]] == [3, 2, 1]
        assert [e.seq for e in trail.entries(s, target="partner:")[0]] == [3, 2, 1]
        assert [e.seq for e in trail.entries(s, target="partner:P1")[0]] == [2]
        assert trail.entries(s, target="partner_")[0] == []  # a prefix, not a LIKE pattern
    listed = run("audit", "list", "--action", "rules.publish", "--json")
    assert listed.exit_code == 0 and '"target": "program:KOPI1"' in listed.output and "partner:P" not in listed.output


def test_floats_and_other_non_json_values_are_refused(engine):
    with Session(engine) as s, s.begin():
        for value in ({"rate": 1.5}, {"id": uuid.uuid4()}):
            with pytest.raises(TypeError):
                trail.record(s, actor="ops:test", action="rate.set", target="program:X", after=value)


def test_concurrent_appends_stay_gapless_and_verify(engine):
    threads, each = 8, 10
    start = threading.Barrier(threads)
    errors = []

    def appender(n):
        try:
            start.wait()
            append(engine, each, actor=f"ops:thread-{n}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert verdict(engine) == trail.Verdict(threads * each, None, verdict(engine).head_hash)
    with Session(engine) as s:
        assert s.query(AuditEntry).count() == threads * each


def test_a_rewound_head_is_named_against_the_head_kept_outside(engine, run):
    """Deleting the newest entries and pointing the head at the last one kept needs no key:
    only a head recorded earlier, outside the database, shows it."""
    append(engine)
    kept = run("audit", "verify").output.split("head ")[1].strip()
    sql(engine, "DELETE FROM audit_entries WHERE seq > 3")
    sql(engine, "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_entries WHERE seq = 3)")
    assert verdict(engine).ok  # the chain alone is whole
    result = run("audit", "verify", "--expect", kept)
    assert result.exit_code == 1
    assert "the trail ends at entry 3 but the expected head is entry 5" in result.output
    assert run("audit", "verify", "--expect", "5:nothex").exit_code == 2


def test_an_anchor_still_in_the_chain_verifies(engine, run):
    append(engine)
    kept = run("audit", "verify").output.split("head ")[1].strip()
    append(engine, 2)
    assert run("audit", "verify", "--expect", kept).exit_code == 0
    seq, digest = kept.split(":")
    forged = f"{seq}:{'0' * 64}"
    result = run("audit", "verify", "--expect", forged)
    assert result.exit_code == 1 and f"entry {seq} is not the one the expected head names" in result.output


@pytest.mark.parametrize("statement", ["UPDATE audit_entries SET actor = 'mallory'", "DELETE FROM audit_entries"])
def test_the_database_refuses_to_change_an_entry(db, statement):
    """On the hub's own database the triggers stand: an entry can only be appended."""
    db.write(lambda s: trail.record(s, actor="cli", action="test.append_only", target="test:1"))
    with pytest.raises(Exception, match="append-only"):
        db.write(lambda s: s.execute(text(statement)))
