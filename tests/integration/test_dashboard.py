"""The member's dashboard (/account/) and account linking (/account/link) through Flask's test
client, on the test database (SQLite or PostgreSQL)."""
from __future__ import annotations

import re
import secrets
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.db import utcnow
from hub.identity import consent, linking, mail
from hub.identity.account_models import LinkRequest, MemberAccount
from hub.identity.oidc.models import Consent
from hub.ledger.verify import verify
from hub.programs.models import Membership, Partner as PartnerRow
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
        return s.scalar(select(MemberAccount.member_id).where(MemberAccount.email == email))


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
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
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
                "dash.consents_title", "dash.memberships_title", "dash.convert_note"):
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


# --- consents ----------------------------------------------------------------------------

def test_revoke_a_consent_from_the_dashboard(browser, member, db):
    first = member["first"]
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == first.code))
    db.write(lambda s: consent.grant(s, member["member_id"], str(partner_id), ["openid", "email"], []))
    page = _plain(browser.get("/account/").get_data(as_text=True))
    assert first.code in page and MESSAGES["en"]["oidc.scope.email"] in page
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
        (message,) = mail.latest(s, settings.secret_key, to=to, limit=1)
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
        assert not mail.latest(s, settings.secret_key, to=card["email"], limit=1)
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
