"""The member's dashboard (/account/) and account linking (/account/link) through Flask's test
client, on the test database (SQLite or PostgreSQL)."""
from __future__ import annotations

import dataclasses
import html
import re
import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from hub.db import utcnow
from hub.exchange import conversions, rates
from hub.exchange.hosted import HostedUnavailable, MemberCheck
from hub.identity import consent, linking, mail
from hub.identity.account_models import LinkRequest, MemberAccount
from hub.identity.oidc.models import Consent
from hub.ledger.verify import verify
from hub.notify import outbox
from hub.privacy import blind
from hub.programs.models import Membership, Partner as PartnerRow, Program
from hub.web.i18n import MESSAGES
from tests.conftest import unique_code
from tests.integration.test_account_pages import (  # noqa: F401  (fixtures)
    Browser,
    _signed_up_and_verified,
    browser,
    clock,
    flask_app,
    web_state,
)

EN, ID = MESSAGES["en"], MESSAGES["id"]


def _card() -> str:
    return f"{secrets.randbelow(10**12):012d}"


def _member_of(db, email: str) -> uuid.UUID:
    with db.read() as s:
        return s.scalar(select(MemberAccount.member_id).where(MemberAccount.email_index == blind.index("email", email)))


def _give(db, partner_member: str, member_id: uuid.UUID) -> None:
    """Test set-up: the partner's enrolled member's membership now belongs to `member_id`."""
    db.write(lambda s: s.execute(update(Membership).where(
        Membership.member_id == uuid.UUID(partner_member)).values(member_id=member_id)))


def _reward(partner, points: int) -> str:
    code = f"A{secrets.token_hex(4).upper()}"  # sorts before the other tests' rewards
    response = partner.api.post("/v1/rewards", {"code": code, "kind": "free_product", "name": f"Latte {code}",
                                                "program": partner.program, "points": points})
    assert response.status_code == 201, response.text
    return code


@pytest.fixture
def member(flask_app, browser, db, settings, make_partner):
    """A logged-in member with memberships in two programs (point values 10 and 2 units):
    1,200 KOPI-like points and 3,000 of the other."""
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    member_id = _member_of(db, email)
    first, second = make_partner(point_value="10"), make_partner(point_value="2")
    for partner, amount in ((first, "1200000"), (second, "3000000")):
        enrolled = partner.enrol(card_number=_card())
        partner.buy(enrolled, amount)
        _give(db, enrolled, member_id)
    return {"email": email, "member_id": member_id, "first": first, "second": second}


def _available(partner, member) -> int:
    return partner.balance(str(member["member_id"]))["available"]


def _plain(page: str) -> str:
    return re.sub(r"\s+", " ", page)


# --- dashboard ---------------------------------------------------------------------------

def test_dashboard_shows_balances_values_history_and_rewards(browser, member):
    first, second = member["first"], member["second"]
    affordable, too_dear = _reward(first, 1000), _reward(first, 5000)
    response = browser.get("/account/")
    page = _plain(response.get_data(as_text=True))
    assert response.status_code == 200  # (never cached: test_security_headers.py, through ASGI)
    # Balances and values: 1,200 x 10 + 3,000 x 2 = 18,000 units.
    assert f"Program {first.program}" in page and f"Program {second.program}" in page
    assert "1,200" in page and "12,000.00" in page and "3,000" in page and "6,000.00" in page
    assert EN["dash.total_value"].format(units="18,000.00") in page
    # History: both earns, newest first.
    assert page.index(f"Program {second.program}</td>") < page.index(f"Program {first.program}</td>")
    assert page.count(EN["dash.code.earn"]) >= 2
    # Rewards within reach: the affordable one with a redeem form, not the dear one.
    assert affordable in page and too_dear not in page
    assert 'action="/account/redeem"' in page
    # Accessible tables and the links.
    assert page.count("<caption>") >= 3 and 'scope="col"' in page and 'scope="row"' in page
    assert 'href="/account/security"' in page and 'href="/account/link"' in page


def test_dashboard_history_names_a_transfer_between_members(browser, member):
    first = member["first"]
    opened = first.api.http.put(f"/v1/programs/{first.program}/transfer-policy", headers=first.api.headers,
                                json={"max_points": 500, "daily_limit": 500})
    assert opened.status_code == 200
    given = first.api.post("/v1/member-transfers", {"program": first.program, "points": 200,
                                                    "to": {"member_id": first.enrol()},
                                                    "from": {"member_id": str(member["member_id"])}})
    assert given.status_code == 201, given.text
    page = _plain(browser.get("/account/").get_data(as_text=True))
    assert EN["dash.code.transfer"] in page and "\u2212200" in page  # a minus sign, not a hyphen


def test_dashboard_history_pages_with_a_more_link(browser, member):
    first = member["first"]
    for _ in range(11):
        first.buy(str(member["member_id"]), "1000")
    page = browser.get("/account/").get_data(as_text=True)
    more = re.search(r'href="(/account/history\?cursor=[^"]+)"', page).group(1)
    older = browser.get(more.replace("&amp;", "&"))
    assert older.status_code == 200 and EN["dash.history_page_title"] in older.get_data(as_text=True)
    assert browser.get("/account/history?cursor=bogus").status_code == 302


def test_dashboard_needs_a_login(flask_app):
    response = Browser(flask_app).get("/account/")
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]


def test_login_lands_on_the_dashboard(flask_app, db, settings):
    browser = Browser(flask_app)
    email = _signed_up_and_verified(browser, db, settings)
    response = browser.submit("/account/login", "/account/login", email=email, password="correct horse battery")
    assert response.status_code == 302 and response.headers["Location"] == "/account/"


def test_both_languages_render(browser, member):
    english = _plain(browser.get("/account/", headers={"Accept-Language": "en"}).get_data(as_text=True))
    assert EN["dash.balances_title"] in english and '<html lang="en">' in english
    indonesian = _plain(browser.get("/account/?ui_locales=id").get_data(as_text=True))
    assert '<html lang="id">' in indonesian
    for key in ("dash.title", "dash.balances_title", "dash.history_title", "dash.rewards_title",
                "dash.consents_title", "dash.memberships_title", "dash.convert_title", "dash.no_conversions"):
        assert ID[key] in indonesian, key
    # Numbers as Indonesian writes them.
    assert "1.200" in indonesian and "12.000,00" in indonesian
    assert ID["link.title"] in browser.get("/account/link?ui_locales=id").get_data(as_text=True)


# --- redeem ------------------------------------------------------------------------------

def _redeem_form(page: str, reward: str) -> dict:
    form = re.search(r'<form method="post" action="/account/redeem">(.*?)</form>', page.split(reward, 1)[1], re.S)
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(1)))


def test_redeem_an_in_house_reward_from_the_dashboard(browser, member, db):
    first = member["first"]
    code = _reward(first, 1000)
    fields = _redeem_form(browser.get("/account/").get_data(as_text=True), code)
    done = browser.post("/account/redeem", fields, csrf=False)
    page = done.get_data(as_text=True)
    assert done.status_code == 201, page
    assert EN["redeem.done_title"] in page
    assert re.search(r'<code class="secret voucher">[0-9A-F]{4}(-[0-9A-F]{4}){3}</code>', page)
    # The balance went down by the price; a second press replays instead of spending again.
    assert "200" in _plain(browser.get("/account/").get_data(as_text=True))
    assert _available(first, member) == 200
    again = browser.post("/account/redeem", fields, csrf=False)
    assert again.status_code == 200 and EN["redeem.replayed_title"] in again.get_data(as_text=True)
    assert _available(first, member) == 200
    with db.read() as s:
        assert verify(s).ok


def test_redeem_refusals_spend_nothing(browser, member):
    first = member["first"]
    code = _reward(first, 1000)
    fields = _redeem_form(browser.get("/account/").get_data(as_text=True), code)
    # Another program's points cannot pay a program's reward.
    refused = browser.post("/account/redeem", {**fields, "program": member["second"].program, "key": "k2"},
                           csrf=False)
    assert refused.status_code == 409 and EN["redeem.error.other"] in refused.get_data(as_text=True)
    # More than the balance.
    dear = _reward(first, 5000)
    refused = browser.post("/account/redeem", {**fields, "reward": dear, "key": "k3"}, csrf=False)
    assert refused.status_code == 409 and EN["redeem.error.insufficient"] in refused.get_data(as_text=True)
    assert _available(first, member) == 1200


def test_redeem_refuses_a_form_without_its_csrf_token(browser, member):
    first = member["first"]
    code = _reward(first, 1000)
    fields = _redeem_form(browser.get("/account/").get_data(as_text=True), code)
    fields.pop("csrf_token")
    refused = browser.post("/account/redeem", fields, csrf=False)
    assert refused.status_code == 400 and EN["form_expired_text"] in refused.get_data(as_text=True)
    forged = browser.post("/account/redeem", {**fields, "csrf_token": "0" * 64}, csrf=False)
    assert forged.status_code == 400
    assert _available(first, member) == 1200


# --- convert -----------------------------------------------------------------------------

def _open_pair(db, source: str, target: str, open: bool = True, **terms) -> None:
    db.write(lambda s: rates.set_pair(s, source, target, open=open, updated_by="test", **terms))


@pytest.fixture
def convertible(member, db):
    """The member, with first -> second open: 1% fee, at least 100 points in steps of 100.
    (first's point is worth 10 units, second's 2: 100 first points buy 495 second points.)"""
    _open_pair(db, member["first"].program, member["second"].program, fee_bps=100, min_points=100, increment=100)
    return member


def _section(page: str, title_id: str) -> str:
    return page.split(f'id="{title_id}"', 1)[1].split("</section>", 1)[0]


def _quote(browser, pair: str, points: str):
    browser.get("/account/")
    return browser.post("/account/convert/quote", {"pair": pair, "points": points})


def _confirm_form(page: str) -> dict:
    form = re.search(r'<form method="post" action="/account/convert">(.*?)</form>', page, re.S)
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(1)))


def _balances(member) -> tuple[int, int]:
    return _available(member["first"], member), _available(member["second"], member)


def test_the_convert_form_offers_only_pairs_the_member_can_use(browser, convertible, db, make_partner):
    first, second = convertible["first"], convertible["second"]
    third = make_partner(point_value="5")  # the member has no membership in it
    _open_pair(db, first.program, third.program)
    _open_pair(db, third.program, first.program)
    _open_pair(db, second.program, first.program, open=False)
    page = _plain(browser.get("/account/").get_data(as_text=True))
    section = _section(page, "convert-title")
    assert 'action="/account/convert/quote"' in section
    assert re.findall(r'<option value="([^"]+)"', section) == [f"{first.program}:{second.program}"]
    assert third.program not in section
    # The published rate: what one step buys after the fee, the fee, the minimum and the step.
    assert EN["dash.rate_value"].format(points="100", source=first.program, receive="495",
                                        target=second.program) in section
    assert "<td class=\"num\">1%</td>" in section and section.count('<td class="num">100</td>') == 2
    # Accessible: a label for each field, the hint tied to its field, a caption, scoped headers.
    assert '<label for="convert-pair">' in section and '<label for="convert-points">' in section
    assert 'aria-describedby="convert-points-hint"' in section and "<caption>" in section
    assert 'scope="row"' in section
    # In Indonesian too.
    indonesian = _plain(browser.get("/account/?ui_locales=id").get_data(as_text=True))
    assert ID["dash.convert_title"] in indonesian and ID["dash.rate_value"].format(
        points="100", source=first.program, receive="495", target=second.program) in indonesian


def test_without_a_usable_pair_the_section_says_so(browser, member, db):
    _open_pair(db, member["second"].program, member["first"].program, open=False)
    section = _section(_plain(browser.get("/account/").get_data(as_text=True)), "convert-title")
    assert EN["dash.no_conversions"] in section and "<form" not in section


def test_the_quote_page_shows_what_the_member_gives_and_gets(browser, convertible):
    first, second = convertible["first"], convertible["second"]
    response = _quote(browser, f"{first.program}:{second.program}", "1,000")
    page = _plain(response.get_data(as_text=True))
    assert response.status_code == 200, page
    # 1,000 x 10 units = 10,000 units, less 1% (100 units) = 9,900 units: 4,950 second points.
    assert EN["convert.points_of"].format(points="1,000", code=first.program, program=f"Program {first.program}") in page
    assert EN["convert.points_of"].format(points="4,950", code=second.program, program=f"Program {second.program}") in page
    assert EN["convert.fee_value"].format(units="100", percent="1") in page
    assert re.search(r'<time datetime="[^"]+">\d\d:\d\d UTC</time>', page)
    fields = _confirm_form(page)
    assert set(fields) == {"csrf_token", "quote", "key"} and fields["quote"] and fields["key"]
    assert 'href="/account/#convert-title"' in page  # Cancel
    # Nothing moved yet.
    assert _balances(convertible) == (1200, 3000)
    indonesian = _plain(browser.post("/account/convert/quote?ui_locales=id",
                                     {"pair": f"{first.program}:{second.program}", "points": "1.000"})
                        .get_data(as_text=True))
    assert ID["convert.points_of"].format(points="4.950", code=second.program,
                                    program=f"Program {second.program}") in indonesian


def test_confirming_converts_once_and_both_legs_read_as_one_conversion(browser, convertible, db):
    first, second = convertible["first"], convertible["second"]
    fields = _confirm_form(_quote(browser, f"{first.program}:{second.program}", "500").get_data(as_text=True))
    done = browser.post("/account/convert", fields, csrf=False)
    page = _plain(done.get_data(as_text=True))
    assert done.status_code == 201, page
    assert EN["convert.done_title"] in page and EN["convert.done_text"].format(
        points="500", source=first.program, receive="2,475", target=second.program) in page
    assert _balances(convertible) == (700, 5475)
    # A reload or a second press replays; the same quote under another key is a used quote
    # (the member still holds enough points: the quote is what refuses).
    for _ in range(2):
        again = browser.post("/account/convert", fields, csrf=False)
        assert again.status_code == 200 and EN["convert.replayed_title"] in again.get_data(as_text=True)
    used = browser.post("/account/convert", {**fields, "key": "another"}, csrf=False)
    assert used.status_code == 409 and EN["convert.error.quote-used"] in used.get_data(as_text=True)
    assert _balances(convertible) == (700, 5475)
    with db.read() as s:
        assert verify(s).ok
    # The activity: both legs, each named as the one conversion first -> second.
    home = _plain(browser.get("/account/").get_data(as_text=True))
    label = EN["dash.code.conversion_between"].format(source=f"Program {first.program}",
                                                      target=f"Program {second.program}")
    assert home.count(html.escape(label)) == 2 and "−500" in home and "+2,475" in home
    assert "700" in _section(home, "balances-title") and "5,475" in _section(home, "balances-title")
    history = _plain(browser.get("/account/history").get_data(as_text=True))
    assert history.count(html.escape(label)) == 2


QUOTE_REFUSALS = [
    # (pair, points typed, status, slug)
    ("first:second", "50", 422, "below-minimum"),
    ("first:second", "150", 422, "off-increment"),
    ("first:second", "1300", 409, "insufficient-points"),
    ("first:second", "10000000000000000", 400, "invalid-points"),
    ("first:second", "abc", 400, "invalid-points"),
    ("first:second", "1.5", 400, "invalid-points"),
    ("first:second", "0", 400, "invalid-points"),
    ("second:first", "1000", 422, "conversion-closed"),
    ("first:first", "1000", 422, "same-program"),
    ("first:third", "1000", 422, "not-a-member"),
    ("", "1000", 400, "no-pair"),
    ("first:NOSUCH", "1000", 404, "other"),
]


@pytest.mark.parametrize("pair, points, status, slug", QUOTE_REFUSALS, ids=[r[3] + "-" + r[1] for r in QUOTE_REFUSALS])
def test_a_refused_quote_says_why_and_moves_nothing(browser, convertible, db, make_partner, pair, points, status,
                                                     slug):
    third = make_partner(point_value="5")
    _open_pair(db, convertible["first"].program, third.program)
    codes = {"first": convertible["first"].program, "second": convertible["second"].program, "third": third.program}
    pair = ":".join(codes.get(side, side) for side in pair.split(":")) if pair else ""
    refused = _quote(browser, pair, points)
    page = refused.get_data(as_text=True)
    assert refused.status_code == status and EN[f"convert.error.{slug}"] in page, page
    assert EN["convert.failed_title"] in page and 'role="alert"' in page
    assert 'action="/account/convert"' not in page
    assert _balances(convertible) == (1200, 3000)


def test_a_refused_conversion_says_why_and_moves_nothing(browser, convertible, db, settings):
    first, second = convertible["first"], convertible["second"]
    pair = f"{first.program}:{second.program}"
    fields = _confirm_form(_quote(browser, pair, "1000").get_data(as_text=True))
    quote = conversions.Quote.read(settings.secret_key, fields["quote"])

    def refused(signed: str, status: int, slug: str) -> str:
        response = browser.post("/account/convert", {**fields, "quote": signed, "key": secrets.token_hex(8)},
                                csrf=False)
        page = response.get_data(as_text=True)
        assert response.status_code == status and EN[f"convert.error.{slug}"] in page, page
        return page

    # Expired: the message links back to the form for a new quote.
    expired = dataclasses.replace(quote, expires_at=utcnow() - timedelta(seconds=1)).sign(settings.secret_key)
    page = refused(expired, 409, "quote-expired")
    assert f'<a href="/account/#convert-title">{EN["convert.new_quote"]}</a>' in page
    # Tampered with (more points out), or not a quote at all.
    tampered = dataclasses.replace(quote, points_out=quote.points_out + 1).sign("not the hub's key")
    refused(tampered, 422, "invalid-quote")
    refused("ünïcode.quote", 422, "invalid-quote")
    refused("", 422, "invalid-quote")
    # Another member's quote.
    theirs = dataclasses.replace(quote, member_id=uuid.uuid4()).sign(settings.secret_key)
    refused(theirs, 422, "invalid-quote")
    # The rate moved since the quote.
    db.write(lambda s: rates.set_rate(s, second.program, Decimal("2.5"), "test"))
    assert f'href="/account/#convert-title"' in refused(fields["quote"], 409, "quote-stale")
    db.write(lambda s: rates.set_rate(s, second.program, Decimal("2"), "test"))
    # The points were spent between the quote and the confirmation.
    one, two = (_confirm_form(_quote(browser, pair, "1000").get_data(as_text=True)) for _ in range(2))
    assert browser.post("/account/convert", one, csrf=False).status_code == 201
    response = browser.post("/account/convert", two, csrf=False)
    assert response.status_code == 409 and EN["convert.error.insufficient-points"] in response.get_data(as_text=True)
    # The pair closed.
    three = _confirm_form(_quote(browser, pair, "100").get_data(as_text=True))
    _open_pair(db, first.program, second.program, open=False)
    response = browser.post("/account/convert", three, csrf=False)
    assert response.status_code == 422 and EN["convert.error.conversion-closed"] in response.get_data(as_text=True)
    assert _balances(convertible) == (200, 7950)  # only the one conversion
    with db.read() as s:
        assert verify(s).ok


def test_convert_forms_need_a_csrf_token_and_a_login(browser, convertible, flask_app):
    pair = f"{convertible['first'].program}:{convertible['second'].program}"
    browser.get("/account/")
    assert browser.post("/account/convert/quote", {"pair": pair, "points": "1000"}, csrf=False).status_code == 400
    fields = _confirm_form(_quote(browser, pair, "1000").get_data(as_text=True))
    assert browser.post("/account/convert", {**fields, "csrf_token": "0" * 64}, csrf=False).status_code == 400
    stranger = Browser(flask_app)
    assert stranger.client.post("/account/convert", data=fields).status_code in (302, 400)
    assert _balances(convertible) == (1200, 3000)


class FakePartner:
    """A partner-hosted program's connector that only answers member checks."""

    def __init__(self, balance: int | None = None, down: bool = False):
        self.balance, self.down, self.checks = balance, down, 0

    def validate(self, member_id: str) -> MemberCheck:
        self.checks += 1
        if self.down:
            raise HostedUnavailable("no answer")
        return MemberCheck(valid=True, balance=self.balance)


@pytest.fixture
def hosted(convertible, db, make_partner, web_state, monkeypatch):
    """A third program, hosted by its partner ("Partner <code>"), and the member's membership
    in it (with the external_id the partner knows them by)."""
    partner = make_partner(point_value="5")
    connector = f"dash{secrets.token_hex(4)}"
    db.write(lambda s: s.execute(update(Program).where(Program.code == partner.program).values(hosted_by=connector)))
    _give(db, partner.enrol(), convertible["member_id"])
    fake = FakePartner(balance=5000)
    monkeypatch.setitem(web_state.hub.hosted, connector, fake)
    return {**convertible, "hosted": partner, "fake": fake}


def _drop_remote_leg(db) -> None:
    """The pending conversion's remote leg is the saga's (hub/exchange/saga.py, tested in
    test_conversion_saga.py); these tests check the pages only, so its outbox message is
    closed: no other test's dispatcher (test_signout's publishes every due row) picks up a
    leg whose fake connector exists only here."""
    with db.read() as s:
        keys = s.scalars(select(outbox.OutboxMessage.key).where(
            outbox.OutboxMessage.topic == conversions.REMOTE_TOPIC, outbox.OutboxMessage.done_at.is_(None))).all()
    for key in keys:
        db.write(lambda s, key=key: outbox.complete(s, conversions.REMOTE_TOPIC, key))


def test_a_hosted_membership_shows_who_holds_its_points_without_asking_them(browser, hosted):
    partner, fake = hosted["hosted"], hosted["fake"]
    page = _plain(browser.get("/account/").get_data(as_text=True))
    row = re.search(rf"<tr> <th scope=\"row\">Program {partner.program} .*?</tr>", page).group(0)
    assert EN["dash.held_by"].format(partner=f"Partner {partner.code}") in row and 'class="num"' not in row
    assert EN["dash.hosted_note"] in page
    assert EN["dash.total_value"].format(units="18,000.00") in page  # only the hub's balances
    assert fake.checks == 0
    indonesian = browser.get("/account/?ui_locales=id").get_data(as_text=True)
    assert ID["dash.held_by"].format(partner=f"Partner {partner.code}") in indonesian


def test_converting_into_a_hosted_program_is_pending_with_the_points_reserved(browser, hosted, db):
    first, partner = hosted["first"], hosted["hosted"]
    _open_pair(db, first.program, partner.program, min_points=100, increment=100)
    quote = _plain(_quote(browser, f"{first.program}:{partner.program}", "1000").get_data(as_text=True))
    assert EN["convert.to_hosted_note"].format(partner=f"Partner {partner.code}", source=first.program,
                                               target=partner.program) in quote
    done = browser.post("/account/convert", _confirm_form(quote), csrf=False)
    page = _plain(done.get_data(as_text=True))
    _drop_remote_leg(db)
    assert done.status_code == 202, page
    # 1,000 x 10 units / 5 = 2,000 points at the partner.
    assert EN["convert.pending_title"] in page and EN["convert.pending_to_text"].format(
        points="1,000", source=first.program, receive="2,000", target=partner.program,
        partner=f"Partner {partner.code}") in page
    # Reserved, not spent: available drops, the reservation shows, the history says in progress.
    assert _available(first, hosted) == 200
    home = _plain(browser.get("/account/").get_data(as_text=True))
    row = re.search(rf"<tr> <th scope=\"row\">Program {first.program} .*?</tr>", home).group(0)
    assert re.findall(r'<td class="num">([^<]+)</td>', row)[:2] == ["200", "1,000"]
    assert EN["dash.state.pending"] in _section(home, "history-title")
    with db.read() as s:
        assert verify(s).ok


def test_converting_out_of_a_hosted_program_asks_the_partner_first(browser, hosted, db):
    first, partner, fake = hosted["first"], hosted["hosted"], hosted["fake"]
    _open_pair(db, partner.program, first.program, min_points=100, increment=100)
    pair = f"{partner.program}:{first.program}"
    # The partner does not answer, or the member holds too few points there.
    fake.down = True
    refused = _quote(browser, pair, "1000")
    assert refused.status_code == 503 and EN["convert.error.partner-unavailable"] in refused.get_data(as_text=True)
    fake.down, fake.balance = False, 500
    refused = _quote(browser, pair, "1000")
    assert refused.status_code == 409 and EN["convert.error.insufficient-points"] in refused.get_data(as_text=True)
    fake.balance = 5000
    quote = _plain(_quote(browser, pair, "1000").get_data(as_text=True))
    assert EN["convert.from_hosted_note"].format(partner=f"Partner {partner.code}", source=partner.program,
                                                 target=first.program) in quote
    done = browser.post("/account/convert", _confirm_form(quote), csrf=False)
    page = _plain(done.get_data(as_text=True))
    _drop_remote_leg(db)
    assert done.status_code == 202 and EN["convert.pending_from_text"].format(
        points="1,000", source=partner.program, receive="500", target=first.program,
        partner=f"Partner {partner.code}") in page
    assert _available(first, hosted) == 1200  # the credit waits for the partner
    with db.read() as s:
        assert verify(s).ok


# --- consents ----------------------------------------------------------------------------

def test_revoke_a_consent_from_the_dashboard(browser, member, db):
    first = member["first"]
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == first.code))
    db.write(lambda s: consent.grant(s, member["member_id"], str(partner_id), ["openid", "email"], []))
    page = _plain(browser.get("/account/").get_data(as_text=True))
    assert first.code in page and MESSAGES["en"]["oidc.scope.email"] in page
    # A claim shared one by one (a `claims` request) is listed too, not only the scopes.
    db.write(lambda s: consent.grant(s, member["member_id"], str(partner_id), [], ["given_name"]))
    assert MESSAGES["en"]["oidc.claim.given_name"] in _plain(browser.get("/account/").get_data(as_text=True))
    # Without the token: refused, nothing changed.
    assert browser.post("/account/consents/revoke", {"partner": first.code}, csrf=False).status_code == 400
    browser.get("/account/")
    done = browser.post("/account/consents/revoke", {"partner": first.code})
    assert done.status_code == 303 and done.headers["Location"].endswith("/account/?done=consent-revoked")
    with db.read() as s:
        assert s.get(Consent, (member["member_id"], str(partner_id))) is None
    assert EN["notice.consent-revoked"] in browser.get(done.headers["Location"]).get_data(as_text=True)
    again = browser.post("/account/consents/revoke", {"partner": first.code})
    assert again.status_code == 404


# --- account linking ---------------------------------------------------------------------

@pytest.fixture
def card(make_partner):
    """A membership from before the coalition: a card with an email on file and 700 points."""
    partner = make_partner(point_value="10")
    number = _card()
    email = f"card-{secrets.token_hex(4)}@example.com"
    enrolled = partner.enrol(card_number=number, email=email)
    partner.buy(enrolled, "700000")
    return {"partner": partner, "number": number, "email": email, "member_id": enrolled}


def _logged_in(flask_app, db, settings) -> tuple[Browser, str]:
    browser = Browser(flask_app)
    email = _signed_up_and_verified(browser, db, settings)
    browser.login(email)
    return browser, email


def _start(browser, program: str, identifier: str):
    browser.get("/account/link")
    return browser.post("/account/link", {"program": program, "identifier": identifier})


def _code_in_mail(db, settings, to: str) -> str:
    with db.read() as s:
        (message,) = mail.latest(s, to=to, limit=1)
    return re.search(r"\b(\d{6})\b", message.body).group(1)


def _request_id(page: str) -> str:
    return re.search(r'name="request" value="([^"]+)"', page).group(1)


def test_link_a_membership_with_the_code_mailed_to_its_email(flask_app, db, settings, card, clock):
    browser, email = _logged_in(flask_app, db, settings)
    started = _start(browser, card["partner"].program, f" {card['number']} ")
    assert started.status_code == 200
    code = _code_in_mail(db, settings, card["email"])
    done = browser.post("/account/link/code", {"request": _request_id(browser.text()), "code": code})
    assert done.status_code == 303 and done.headers["Location"].endswith("/account/?done=linked")
    page = _plain(browser.get(done.headers["Location"]).get_data(as_text=True))
    assert EN["notice.linked"] in page and "700" in page and "7,000.00" in page
    assert "•••• " + card["number"][-4:] in page and card["number"] not in page
    with db.read() as s:
        assert s.scalar(select(Membership.member_id).join(LinkRequest, LinkRequest.membership_id == Membership.id)
                        .where(LinkRequest.id == uuid.UUID(_request_id(started.get_data(as_text=True))))) \
            == _member_of(db, email)
        assert verify(s).ok
    # The partner still knows its card; the points moved nowhere.
    assert card["partner"].balance(str(_member_of(db, email)))["available"] == 700
    # The code is single use.
    again = browser.post("/account/link/code", {"request": _request_id(started.get_data(as_text=True)),
                                                "code": code})
    assert again.status_code == 400 and EN["link.error.code-expired"] in again.get_data(as_text=True)


def test_an_unknown_card_gets_the_same_answer_and_no_mail(flask_app, db, settings, card, clock):
    browser, _ = _logged_in(flask_app, db, settings)
    known = _plain(_start(browser, card["partner"].program, card["number"]).get_data(as_text=True))
    unknown = _plain(_start(browser, card["partner"].program, "999999999999999").get_data(as_text=True))
    strip = lambda page: re.sub(r'value="[^"]*"', "", page)
    assert strip(known) == strip(unknown)
    # A code for an unknown card never works (every guess is wrong).
    wrong = browser.post("/account/link/code", {"request": _request_id(unknown), "code": "123456"})
    assert wrong.status_code == 400


def test_link_wrong_code_then_too_many_attempts(flask_app, db, settings, card, clock):
    browser, _ = _logged_in(flask_app, db, settings)
    _start(browser, card["partner"].program, card["number"])
    request_id = _request_id(browser.text())
    code = _code_in_mail(db, settings, card["email"])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    first = browser.post("/account/link/code", {"request": request_id, "code": wrong})
    assert first.status_code == 400 and EN["link.wrong_code"].format(left=4) in first.get_data(as_text=True)
    for _ in range(3):
        browser.post("/account/link/code", {"request": request_id, "code": wrong})
    last = browser.post("/account/link/code", {"request": request_id, "code": wrong})
    assert last.status_code == 400 and EN["link.error.too-many-attempts"] in last.get_data(as_text=True)
    # Now even the right code is refused, and the per-account limit holds further guesses.
    dead = browser.post("/account/link/code", {"request": request_id, "code": code})
    assert dead.status_code == 429
    clock.now += 15 * 60
    dead = browser.post("/account/link/code", {"request": request_id, "code": code})
    assert dead.status_code == 400 and EN["link.error.too-many-attempts"] in dead.get_data(as_text=True)
    with db.read() as s:
        assert s.scalar(select(Membership.member_id).where(
            Membership.member_id == uuid.UUID(card["member_id"]))) is not None  # not moved


def test_link_expired_code(flask_app, db, settings, card, clock):
    browser, _ = _logged_in(flask_app, db, settings)
    _start(browser, card["partner"].program, card["number"])
    request_id = _request_id(browser.text())
    code = _code_in_mail(db, settings, card["email"])
    db.write(lambda s: s.execute(update(LinkRequest).where(LinkRequest.id == uuid.UUID(request_id))
                                 .values(expires_at=utcnow() - timedelta(seconds=1))))
    expired = browser.post("/account/link/code", {"request": request_id, "code": code})
    assert expired.status_code == 400 and EN["link.error.code-expired"] in expired.get_data(as_text=True)


def test_link_refused_when_the_account_already_has_that_program(flask_app, db, settings, card, clock):
    browser, email = _logged_in(flask_app, db, settings)
    other = card["partner"].enrol(card_number=_card())
    _give(db, other, _member_of(db, email))
    refused = _start(browser, card["partner"].program, card["number"])
    assert refused.status_code == 409 and EN["error.link-already-member"] in refused.get_data(as_text=True)
    with db.read() as s:
        assert s.scalar(select(Membership.member_id).where(
            Membership.member_id == uuid.UUID(card["member_id"]))) is not None


def test_link_refused_if_the_program_was_joined_while_the_code_was_out(flask_app, db, settings, card, clock):
    browser, email = _logged_in(flask_app, db, settings)
    _start(browser, card["partner"].program, card["number"])
    request_id = _request_id(browser.text())
    code = _code_in_mail(db, settings, card["email"])
    _give(db, card["partner"].enrol(card_number=_card()), _member_of(db, email))
    refused = browser.post("/account/link/code", {"request": request_id, "code": code})
    assert refused.status_code == 409 and "already has a membership" in refused.get_data(as_text=True)


def test_link_forms_refuse_a_missing_csrf_token_and_a_logged_out_browser(flask_app, db, settings, card, clock):
    browser, _ = _logged_in(flask_app, db, settings)
    browser.get("/account/link")
    refused = browser.post("/account/link", {"program": card["partner"].program, "identifier": card["number"]},
                           csrf=False)
    assert refused.status_code == 400
    with db.read() as s:
        assert not mail.latest(s, to=card["email"], limit=1)
    assert Browser(flask_app).get("/account/link").status_code == 302


def test_link_requests_are_rate_limited_per_card(flask_app, db, settings, card, clock):
    for _ in range(3):
        browser, _ = _logged_in(flask_app, db, settings)
        assert _start(browser, card["partner"].program, card["number"]).status_code == 200
    browser, _ = _logged_in(flask_app, db, settings)
    assert _start(browser, card["partner"].program, card["number"]).status_code == 429


def test_the_per_card_limit_counts_every_spelling_of_the_card(flask_app, db, settings, card, clock):
    number = card["number"]
    spaced = " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    spellings = [number, spaced, spaced.replace(" ", "-"), f" {number[:6]} {number[6:]} "]
    for spelling in spellings[:3]:
        browser, _ = _logged_in(flask_app, db, settings)
        assert _start(browser, card["partner"].program, spelling).status_code == 200
    browser, _ = _logged_in(flask_app, db, settings)
    assert _start(browser, card["partner"].program, spellings[3]).status_code == 429


def test_a_membership_of_another_coalition_account_is_not_taken(db, settings, card):
    """Domain level: the right code does not move a membership another account holds."""
    def setup(s):
        from hub.programs.models import Member
        owner, taker = Member(id=uuid.uuid4()), Member(id=uuid.uuid4())
        s.add_all([owner, taker])
        s.flush()
        accounts = [MemberAccount(id=uuid.uuid4(), member_id=m.id, email=f"{m.id.hex}@example.com",
                                  password_hash="x") for m in (owner, taker)]
        s.add_all(accounts)
        s.execute(update(Membership).where(Membership.member_id == uuid.UUID(card["member_id"]))
                  .values(member_id=owner.id))
        s.flush()
        return accounts[1].id

    taker_id = db.write(setup)
    def run(s):
        taker = s.get(MemberAccount, taker_id)
        started = linking.start(s, settings.secret_key, taker, card["partner"].program, card["number"])
        return linking.confirm(s, settings.secret_key, taker, started.request_id, started.code)
    assert db.write(run).status == linking.LINKED_ELSEWHERE
