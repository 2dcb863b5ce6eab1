"""Every list of the ops console is paged: a page of queries.PAGE rows and a link to the next,
which shows the rest with no row twice and none missing, keeps the filters, and refuses a
cursor the console did not issue with a 400 page. PAGE is made small here, so a few rows
make several pages. The database is shared by the session's tests, so a list is compared with
what the database holds, as far as the first few pages go."""
from __future__ import annotations

import base64
import html
import re
import uuid

import pytest
from sqlalchemy import select, update

from hub.audit import review_notes
from hub.audit.models import AuditEntry
from hub.db import utcnow
from hub.identity import roles
from hub.notify import webhook_endpoints, webhooks
from hub.notify.webhook_models import WebhookDelivery, WebhookEndpoint
from hub.pagination import encode
from hub.programs.models import Partner, Program
from hub.rewards.models import Redemption
from hub.settlement import reconciliation
from hub.settlement.models import SettlementPeriod, Statement
from hub.settlement.periods import Period
from hub.web.ops import queries
from tests.integration.settlement_support import SEEDED_PERIOD
from tests.integration.test_account_pages import flask_app  # noqa: F401  (fixture)
from tests.integration.test_ops_console import _in_review, log_in, make_user, two_partners  # noqa: F401
from tests.integration.test_reconciliation import one_of_each, provider, reporting  # noqa: F401  (fixtures)

PAGE = 2
BAD_CURSORS = ["not-a-cursor", encode([1, 2]), encode(["yesterday", "no id"]), encode(2**70), encode({"a": 1}),
               # JSON nested past the parser's depth; text with NUL (PostgreSQL refuses it); too long
               base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode(), encode("A\x00"),
               encode(["2026-11", "A\x00"]), encode("P" * 200)]


@pytest.fixture(autouse=True)
def small_pages(monkeypatch):
    monkeypatch.setattr(queries, "PAGE", PAGE)


def _next(page: str, param: str) -> str | None:
    """The href of the "Next page" link of the list whose cursor is `param`, if it has one."""
    (pager,) = re.findall(rf'<p class="pager" id="pager-{param}">.*?</p>', page, re.S)
    found = re.search(r'<a href="([^"]+)" rel="next">', pager)
    return html.unescape(found.group(1)) if found else None


def walk(browser, path: str, param: str, rows: str, most: int = 4) -> tuple[list[list[str]], bool]:
    """The first pages (`most` at most) of one list from `path` on, as the rows the pattern
    `rows` finds there, and whether the last of them is the list's last."""
    pages = []
    while path is not None and len(pages) < most:
        response = browser.get(path)
        assert response.status_code == 200, (path, browser.text())
        page = response.get_data(as_text=True)
        pages.append(re.findall(rows, page, re.S))
        path = _next(page, param)
    return pages, path is None


def assert_paged(walked: tuple[list[list[str]], bool], expected: list[str]) -> None:
    """More than one page, full but the last, each row once and none skipped, in the order
    expected (all of it if the walk reached the end)."""
    pages, ended = walked
    assert len(pages) > 1 and all(len(p) == PAGE for p in pages[:-1]) and 0 < len(pages[-1]) <= PAGE, pages
    shown = [row for p in pages for row in p]
    assert shown == (expected if ended else expected[:len(shown)])


def assert_bad_cursors_refused(browser, path: str, param: str = "cursor") -> None:
    join = "&" if "?" in path else "?"
    for cursor in BAD_CURSORS:
        response = browser.get(f"{path}{join}{param}={cursor}")
        assert response.status_code == 400 and "not a page of this list" in browser.text(), (path, param, cursor)


def _partner_id(s, code: str) -> uuid.UUID:
    return s.scalar(select(Partner.id).where(Partner.code == code))


# --- webhook deliveries ---------------------------------------------------------------------

@pytest.fixture
def many_deliveries(two_partners, db):
    """Five more deliveries of the first partner, all of one instant (the id orders them), three
    of them failed; the second partner keeps its one."""
    partner, other = two_partners

    def emit(s):
        partner_id = _partner_id(s, partner.code)
        for n in range(5):
            webhooks.emit(s, partner_id, "tier.changed", {"n": n})
        ids = s.scalars(select(WebhookDelivery.id).join(WebhookEndpoint)
                        .where(WebhookEndpoint.partner_id == partner_id)).all()
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(created_at=utcnow()))
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(sorted(ids)[:3])).values(status="failed"))
    db.write(emit)
    return partner, other


def _deliveries(db, code: str | None = None, status: str | None = None) -> list[str]:
    """Delivery ids as the page orders them: newest first, then the greater id."""
    with db.read() as s:
        q = select(WebhookDelivery.id).join(WebhookEndpoint).join(Partner)
        if code:
            q = q.where(Partner.code == code)
        if status:
            q = q.where(WebhookDelivery.status == status)
        rows = s.execute(q.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())).scalars()
        return [str(r) for r in rows]


DELIVERY_ROW = r"<tr><td><code>([0-9a-f-]{36})</code></td>"


def test_deliveries_are_paged_with_their_status_filter(flask_app, make_user, many_deliveries, db):
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    assert_paged(walk(browser, "/ops/webhooks", "cursor", DELIVERY_ROW), _deliveries(db))
    failed = walk(browser, "/ops/webhooks?status=failed", "cursor", DELIVERY_ROW)
    assert_paged(failed, _deliveries(db, status="failed"))
    assert_bad_cursors_refused(browser, "/ops/webhooks?status=failed")


def test_a_partner_admin_pages_through_its_own_deliveries_only(flask_app, make_user, many_deliveries, db):
    partner, _ = many_deliveries
    browser = log_in(flask_app, make_user(roles.PARTNER_ADMIN, partner.code))
    walked = walk(browser, "/ops/webhooks", "cursor", DELIVERY_ROW)
    assert walked[1] and len(walked[0]) == 3  # all six of its deliveries, none of the other's
    assert_paged(walked, _deliveries(db, partner.code))


# --- partners and a partner's lists ---------------------------------------------------------

def test_partners_are_paged_by_code(flask_app, make_user, partner, other_partner, make_partner, db):
    make_partner()
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    with db.read() as s:
        codes = s.scalars(select(Partner.code).order_by(Partner.code)).all()
    assert_paged(walk(browser, "/ops/partners", "cursor", r'<a href="/ops/partners/([^"]+)">'), codes)
    assert_bad_cursors_refused(browser, "/ops/partners")


def test_page_links_keep_only_the_querys_own_names(flask_app, make_user, partner, other_partner, make_partner):
    """A query name spelled like a route variable or one of url_for's options (endpoint,
    _external, _anchor) is not carried into the page links: it was a 500, or an absolute link
    built from the Host header."""
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    make_partner()
    for path in ("/ops/partners?endpoint=x&_external=1&_anchor=a",
                 f"/ops/partners/{partner.code}?code=x&_external=1"):
        response = browser.get(path)
        assert response.status_code == 200, (path, browser.text())
        links = re.findall(r'<p class="pager".*?</p>', response.get_data(as_text=True), re.S)
        assert links and not any("http" in link or "#" in link or "_external" in link for link in links)


def test_a_partners_endpoints_are_paged_and_its_other_lists_stay(flask_app, make_user, two_partners, db):
    partner, _ = two_partners
    now = utcnow()

    def add(s):
        partner_id = _partner_id(s, partner.code)
        for n in range(4):
            s.add(WebhookEndpoint(partner_id=partner_id, url=f"https://more-{n}.example/hook", created_by="test",
                                  created_at=now, secret_sealed=webhook_endpoints.seal(webhooks.new_secret())))
    db.write(add)
    with db.read() as s:
        urls = s.scalars(select(WebhookEndpoint.url).where(WebhookEndpoint.partner_id == _partner_id(s, partner.code))
                         .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)).all()
    browser = log_in(flask_app, make_user(roles.PARTNER_ADMIN, partner.code))
    path = f"/ops/partners/{partner.code}"
    assert_paged(walk(browser, path, "endpoints_cursor", r"<tr><td>(https://[^<]+)</td>"), urls)
    last = browser.text()  # the last page of endpoints still shows the programs and the API client
    assert partner.program in last and partner.client_id in last
    for param in ("programs_cursor", "clients_cursor", "endpoints_cursor"):
        assert_bad_cursors_refused(browser, path, param)
    with db.read() as s:
        programs = s.scalars(select(Program.code).where(Program.partner_id == _partner_id(s, partner.code))).all()
    (first,), ended = walk(browser, path, "programs_cursor", r"<tr><td>([^<]+)</td><td>", most=1)
    assert first[:len(programs)] == sorted(programs) and ended


# --- redemptions in review and the review notes ---------------------------------------------

REVIEW_ROW = r"<tr>\s*<td><code>([0-9a-f-]{36})</code></td>"
NOTE_ROW = r"<td>redemption <code>([0-9a-f-]{36})</code></td>"


def test_redemptions_in_review_are_paged_oldest_first(flask_app, make_user, partner, provider, db):
    for _ in range(PAGE + 1):
        _in_review(partner, provider, db)
    with db.read() as s:
        orders = [str(r) for r in s.scalars(select(Redemption.id).where(Redemption.state == "needs_review")
                                            .order_by(Redemption.created_at, Redemption.id))]
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    assert_paged(walk(browser, "/ops/redemptions", "cursor", REVIEW_ROW), orders)
    assert_bad_cursors_refused(browser, "/ops/redemptions")


def test_review_notes_are_paged_newest_first(flask_app, make_user, db):
    subjects, now = [uuid.uuid4() for _ in range(2 * PAGE + 1)], utcnow()

    def note(s):
        for subject in subjects:
            review_notes.add(s, review_notes.REDEMPTION, subject, "refund", reason="asked", by="test",
                             in_review_for=None)
        s.execute(update(review_notes.ReviewNote).where(review_notes.ReviewNote.subject_id.in_(subjects))
                  .values(created_at=now))  # of one instant: the id orders them
    db.write(note)
    note = review_notes.ReviewNote
    with db.read() as s:
        expected = [str(r) for r in s.scalars(select(note.subject_id).where(note.subject_kind == "redemption")
                                              .order_by(note.created_at.desc(), note.id.desc()))]
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    assert_paged(walk(browser, "/ops/redemptions", "notes_cursor", NOTE_ROW), expected)
    assert_bad_cursors_refused(browser, "/ops/redemptions", "notes_cursor")


def test_a_retry_with_a_reason_is_noted_and_shown(flask_app, make_user, partner, provider, db, monkeypatch):
    monkeypatch.setattr(queries, "PAGE", 1000)  # the order and its note on the first pages
    order, _ = _in_review(partner, provider, db)
    browser = log_in(flask_app, make_user(roles.OPS_ADMIN))
    page = browser.get("/ops/redemptions").get_data(as_text=True)
    (form,) = [form for form in re.findall(r'<form method="post" action="/ops/redemptions/retry".*?</form>', page, re.S)
               if order in form]
    assert 'name="reason"' in form and "required" not in form and 'name="csrf_token"' in form
    assert browser.post("/ops/redemptions/retry", {"redemption_id": order, "reason": "provider asked us to"}
                        ).status_code == 302
    with db.read() as s:
        (note,) = review_notes.about(s, review_notes.REDEMPTION, uuid.UUID(order))
    assert (note.action, note.reason) == ("requeue", "provider asked us to")
    page = browser.get("/ops/redemptions").get_data(as_text=True)
    (row,) = re.findall(rf"<code>{order}</code>.*?</tr>", page, re.S)
    assert "requeue" in row and "provider asked us to" in row and note.actor in row


# --- reconciliation, statements, audit ------------------------------------------------------

EXCEPTION_ROW = r"<td><code>([^<]+)</code></td>"


def test_reconciliation_exceptions_and_runs_are_paged_with_the_status(flask_app, make_user, one_of_each, db):
    run, _, _ = one_of_each
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    with db.read() as s:
        views, _ = reconciliation.exceptions(s, status="open", limit=1000)
    expected = [v.line.reference for v in views]
    assert len(expected) > PAGE
    assert_paged(walk(browser, "/ops/reconciliation?status=open", "cursor", EXCEPTION_ROW), expected)
    assert_bad_cursors_refused(browser, "/ops/reconciliation?status=open")
    assert_bad_cursors_refused(browser, "/ops/reconciliation", "runs_cursor")


@pytest.fixture
def many_statements(partner, other_partner, db):
    """Three statements of each partner, in one period."""
    def store(s):
        period = Period.parse(SEEDED_PERIOD)
        if s.get(SettlementPeriod, period.name) is None:
            s.add(SettlementPeriod(period=period.name, starts_at=period.starts_at, ends_at=period.ends_at,
                                   through_id=0, closed_by="test"))
        for p in (partner, other_partner):
            partner_id = _partner_id(s, p.code)
            for currency in ("IDR", "SGD", "USD"):
                s.add(Statement(period=period.name, party_kind="partner", party=str(partner_id), partner_id=partner_id,
                                currency=currency, net_due_minor=0, digest="0" * 64))
    db.write(store)
    return partner, other_partner


def _statement_ids(db, code: str | None = None) -> list[str]:
    with db.read() as s:
        q = select(Statement.id).where(Statement.period == SEEDED_PERIOD)
        if code:
            q = q.where(Statement.partner_id == _partner_id(s, code))
        return [str(r) for r in s.scalars(q.order_by(Statement.period.desc(), Statement.id))]


STATEMENT_ROW = r'<a href="/ops/statements/([0-9a-f-]{36})">'


def test_statements_are_paged_within_the_period_and_the_reach(flask_app, make_user, many_statements, db):
    partner, other = many_statements
    path = f"/ops/statements?period={SEEDED_PERIOD}"
    admin = log_in(flask_app, make_user(roles.OPS_ANALYST))
    assert_paged(walk(admin, path, "cursor", STATEMENT_ROW), _statement_ids(db))
    assert_bad_cursors_refused(admin, path)
    theirs = log_in(flask_app, make_user(roles.PARTNER_ADMIN, partner.code))
    assert_paged(walk(theirs, path, "cursor", STATEMENT_ROW), _statement_ids(db, partner.code))


def test_the_audit_trail_is_paged(flask_app, make_user, db):
    browser = log_in(flask_app, make_user(roles.OPS_ANALYST))
    (first, second), _ = walk(browser, "/ops/audit", "cursor", r'<tr><td class="num">(\d+)</td>', most=2)
    with db.read() as s:
        newest = s.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(2 * PAGE)).all()
    assert [int(seq) for seq in first + second] == newest
    assert_bad_cursors_refused(browser, "/ops/audit")
