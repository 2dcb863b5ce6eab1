"""The dashboard's offers, challenges and badges (hub/web/offers_panel.py), in both languages."""
from __future__ import annotations

from hub.web import offers_panel  # noqa: F401  (adds its texts to the catalogue)
from hub.web.i18n import MESSAGES
from tests.integration.engage_support import buy
from tests.integration.test_account_pages import (  # noqa: F401  (fixtures)
    browser,
    clock,
    flask_app,
    web_state,
)
from tests.integration.test_challenges import challenge_body, create
from tests.integration.test_dashboard import _plain, _reward, member  # noqa: F401  (fixtures)

EN, ID = MESSAGES["en"], MESSAGES["id"]


def test_the_dashboard_shows_offers_challenges_and_badges(browser, member, ops):
    first, second = member["first"], member["second"]
    cheap = _reward(first, 1000)
    running = create(ops, challenge_body([first.program, second.program], first.program, kind="purchases",
                                         target=5, points=250))
    done = create(ops, challenge_body([second.program], second.program, kind="purchases", target=1, points=40))
    buy(second, member["member_id"], "10000")  # counts toward both
    page = _plain(browser.get("/account/", headers={"Accept-Language": "en"}).get_data(as_text=True))
    assert EN["offers.title"] in page
    # The reward, and why it is offered.
    assert f"Latte {cheap}" in page
    assert EN["offers.reason.affordable"].format(points="1,000", program=first.program) in page
    # The running challenge with its progress, the completed one's badge.
    assert EN["offers.challenge_progress"].format(name=running["name"], progress="1", target="5") in page
    assert EN["offers.badge"].format(badge="Explorer", challenge=done["name"]) in page
    assert EN["offers.no_badges"] not in page
    page = _plain(browser.get("/account/?ui_locales=id").get_data(as_text=True))
    assert ID["offers.title"] in page and ID["offers.badges_title"] in page
    assert ID["offers.challenge_progress"].format(name=running["name"], progress="1", target="5") in page


def test_without_badges_the_section_says_so(browser, member):
    page = _plain(browser.get("/account/", headers={"Accept-Language": "en"}).get_data(as_text=True))
    assert EN["offers.no_badges"] in page
