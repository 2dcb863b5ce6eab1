"""Statements in the ops console. Closing a period is global (it closes every earlier open
month, and a later close supersedes earlier ones), so these tests do not close one. The
drill-down test stands in for hub/settlement/statements.py's readers (tested with real periods
in test_settlement.py) and checks what the pages add: each read goes through the user's Actor,
a statement the service does not find is a 404, and the lines link to the transfers behind
them. The others read statements stored as a close stores them (settlement_support) through
the real service: a partner_admin sees its partner's only, and out-of-range ids are refused."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from hub.errors import NotFound
from hub.identity import roles
from hub.programs.models import Partner
from hub.settlement import statements
from tests.integration.settlement_support import SEEDED_PERIOD, seed_statement
from tests.integration.test_account_pages import flask_app  # noqa: F401  (fixture)
from tests.integration.test_ops_console import log_in, make_user  # noqa: F401  (fixture)

MINE, THEIRS = uuid.uuid4(), uuid.uuid4()
AT = datetime(2031, 4, 1, tzinfo=timezone.utc)


@pytest.fixture
def service(monkeypatch, partner, other_partner, db):
    """Two partners' statements of 2031-03; `seen` collects the Actor of every read."""
    with db.read() as s:
        ids = {p.code: s.scalar(select(Partner.id).where(Partner.code == p.code)) for p in (partner, other_partner)}
    rows = {MINE: SimpleNamespace(id=MINE, period="2031-03", party=partner.code, party_kind="partner",
                                  partner_id=ids[partner.code], currency="IDR", net_due_minor=1256, digest="d" * 64),
            THEIRS: SimpleNamespace(id=THEIRS, period="2031-03", party=other_partner.code, party_kind="partner",
                                    partner_id=ids[other_partner.code], currency="IDR", net_due_minor=99, digest="e" * 64)}
    seen = []

    def visible(actor):
        seen.append(actor)
        return [r for r in rows.values() if actor.partner_id in (None, r.partner_id)]

    def statement(session, actor, statement_id):
        found = [r for r in visible(actor) if r.id == statement_id]
        if not found:
            raise NotFound(f"no statement {statement_id}")
        return found[0]

    def line_transfers(session, actor, statement_id, line_id, after_id=None, limit=100):
        statement(session, actor, statement_id)
        if line_id != 7:
            raise NotFound(f"no line {line_id}")
        return [SimpleNamespace(id=41, created_at=AT, phase="posted", code="earn", debit_account_id=1,
                                credit_account_id=2, amount=123, ref_type="purchase", ref_id="t-1")], None

    line = SimpleNamespace(id=7, position=1, category="issued", points=123, count=1, amount_minor=1230)
    monkeypatch.setattr(statements, "statements_for",
                        lambda s, actor, period=None, cursor=None, limit=50: (visible(actor), None))
    monkeypatch.setattr(statements, "periods", lambda s: [SimpleNamespace(period="2031-03", closed_at=AT)])
    monkeypatch.setattr(statements, "statement", statement)
    monkeypatch.setattr(statements, "lines", lambda s, statement_id: [line])
    monkeypatch.setattr(statements, "traceable", lambda line: True)
    monkeypatch.setattr(statements, "line_transfers", line_transfers)
    return SimpleNamespace(seen=seen)


def test_an_admin_drills_from_the_period_to_the_transfers_of_a_line(flask_app, make_user, service):
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    page = browser.get("/ops/statements?period=2031-03").get_data(as_text=True)
    assert f"/ops/statements/{MINE}" in page and f"/ops/statements/{THEIRS}" in page
    page = browser.get(f"/ops/statements/{MINE}").get_data(as_text=True)
    assert "1,256" in page and f'href="/ops/statements/{MINE}/lines/7"' in page
    transfers = browser.get(f"/ops/statements/{MINE}/lines/7")
    assert transfers.status_code == 200 and "t-1" in browser.text()
    assert browser.get(f"/ops/statements/{MINE}/lines/8").status_code == 404
    assert {actor.partner_id for actor in service.seen} == {None}


@pytest.fixture
def stored(partner, other_partner, db):
    """Statements stored as a close stores them, one per partner, read by the real service."""
    return SimpleNamespace(partner=partner, mine=seed_statement(db, partner), theirs=seed_statement(db, other_partner))


def test_a_partner_admin_reads_only_its_own_stored_statement(flask_app, make_user, stored):
    (mine, mine_line), (theirs, their_line) = stored.mine, stored.theirs
    browser = log_in(flask_app, make_user(roles.PARTNER_ADMIN, stored.partner.code))
    page = browser.get(f"/ops/statements?period={SEEDED_PERIOD}").get_data(as_text=True)
    assert mine in page and theirs not in page
    assert browser.get(f"/ops/statements/{mine}").status_code == 200
    assert browser.get(f"/ops/statements/{mine}/lines/{mine_line}").status_code == 200
    assert browser.get(f"/ops/statements/{theirs}").status_code == 404
    assert browser.get(f"/ops/statements/{theirs}/lines/{their_line}").status_code == 404


def test_ids_beyond_a_bigint_are_refused_before_the_query(flask_app, make_user, stored):
    (mine, line) = stored.mine
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    for other in (0, -7, 2**63, 2**64):  # 2**64 overflows SQLite's INTEGER
        assert browser.get(f"/ops/statements/{mine}/lines/{other}").status_code == 404
    for after in ("0", "-1", "abc", str(2**63), str(2**64), "9" * 5000):
        assert browser.get(f"/ops/statements/{mine}/lines/{line}?after={after}").status_code == 400, after
    assert browser.get(f"/ops/statements/{mine}/lines/{line}?after={2**63 - 1}").status_code == 200
