"""The dashboard's progress panel (hub/web/templates/_progress.html)."""
from __future__ import annotations

from tests.integration.test_account_pages import (  # noqa: F401  (fixtures)
    Browser,
    _signed_up_and_verified,
    browser,
    clock,
    flask_app,
    web_state,
)
from tests.integration.test_dashboard import EN, _plain, member  # noqa: F401  (fixtures)
from tests.integration.test_frequency import REFERRAL, buy, publish, referral_code


def test_the_dashboard_shows_stamp_cards_streaks_and_the_referral_code(browser, member, db):
    first, member_id = member["first"], str(member["member_id"])
    publish(db, first, {"referral": REFERRAL,
                        "stamp_cards": [{"id": "coffee", "name": "Coffee card", "stamps": 5, "reward": {"bonus_points": 10}}],
                        "streaks": [{"id": "weekly", "period": "week", "length": 4, "bonus_points": 100}]})
    buy(first, member_id, "10000")
    buy(first, member_id, "10000")
    code = referral_code(first, member_id)
    page = _plain(browser.get("/account/").get_data(as_text=True))
    assert EN["progress.title"] in page
    assert EN["progress.stamps"].format(name="Coffee card", stamps=2, of=5) in page
    assert '<progress id="card-' in page and 'max="5" value="2"' in page
    assert EN["progress.streak"].format(run=1, length=4, period="week") in page
    assert EN["progress.referral_code"].format(code=code) in page
    # The second program runs none of these: no heading for it.
    assert f"<h3>Program {member['second'].program}" not in page


def test_no_progress_panel_without_frequency_rules(browser, member):
    assert EN["progress.title"] not in browser.get("/account/").get_data(as_text=True)
