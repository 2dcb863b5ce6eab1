"""`hub reconcile`: import a report from a file (one transaction: an interrupt writes nothing,
a re-run is safe), list runs and exceptions, resolve one."""
from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.cli import main
from hub.settlement import reconciliation
from hub.settlement.reconciliation_models import ReconciliationException, ReconciliationLine, ReconciliationRun
from partners.tango.report import HEADER


@pytest.fixture
def hub(settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args))


@pytest.fixture
def report(tmp_path):
    """A Tango report of two orders the hub never placed (on a day with no hub orders)."""
    path = tmp_path / "tango-orders.csv"
    path.write_text("\r\n".join([",".join(HEADER), *(
        f"RA-{n},rdm{uuid.uuid4().hex},2001-01-0{n} 10:00:00,hub-sandbox,U157189,Starbucks,10.00,USD,COMPLETE"
        for n in (1, 2))]) + "\r\n")
    return path


def counts(db) -> tuple[int, int, int]:
    with db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(t))
                     for t in (ReconciliationRun, ReconciliationLine, ReconciliationException))


def test_import_twice_gives_one_run(hub, report, db):
    first = hub("reconcile", "import", "--provider", "tango", str(report))
    assert first.exit_code == 0, first.output
    assert "imported run" in first.output and "missing_in_hub" in first.output
    before = counts(db)
    again = hub("reconcile", "import", "--provider", "tango", str(report))
    assert again.exit_code == 0 and "already imported as run" in again.output
    assert counts(db) == before


def test_an_interrupted_import_writes_nothing_and_runs_again(hub, report, db, monkeypatch):
    before = counts(db)

    def interrupt(**_):  # after the run and its lines are flushed, before the exceptions
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(reconciliation, "ReconciliationException", interrupt)
        assert hub("reconcile", "import", "--provider", "tango", str(report)).exit_code != 0
    assert counts(db) == before
    assert hub("reconcile", "import", "--provider", "tango", str(report)).exit_code == 0
    runs, lines, exceptions = counts(db)
    assert (runs, lines, exceptions) == (before[0] + 1, before[1] + 2, before[2] + 2)


def test_a_malformed_report_is_a_message_naming_line_and_column(hub, report, db):
    report.write_text(report.read_text().replace(",USD,COMPLETE", ",USD,SHIPPED", 1))
    before = counts(db)
    result = hub("reconcile", "import", "--provider", "tango", str(report))
    assert result.exit_code == 1
    assert 'line 2, column "Status": \'SHIPPED\' is not a known status' in result.output
    assert counts(db) == before


def test_list_and_resolve(hub, report, db):
    assert hub("reconcile", "import", "--provider", "tango", str(report)).exit_code == 0
    assert "tango" in hub("reconcile", "runs", "--provider", "tango").output
    listed = hub("reconcile", "exceptions", "--open")
    with db.read() as s:  # the newest open exception is this run's
        (newest,), _ = reconciliation.exceptions(s, "open", limit=1)
    exception_id = str(newest.exception.id)
    assert listed.exit_code == 0
    assert f"{exception_id} tango missing_in_hub [open] {newest.line.reference} (line " in listed.output
    done = hub("reconcile", "resolve", exception_id, "--resolution", "written_off", "--reason", "test order")
    assert done.exit_code == 0 and "resolved: written_off" in done.output
    again = hub("reconcile", "resolve", exception_id, "--resolution", "written_off", "--reason", "again")
    assert again.exit_code == 1 and "already resolved" in again.output
