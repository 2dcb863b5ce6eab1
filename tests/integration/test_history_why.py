"""Members see why they got their points: a purchase's rating lines (or the base rate), a
bonus's reason; in the API history and on the dashboard, for a page at a constant cost."""
from __future__ import annotations

import uuid
from unittest.mock import ANY

from sqlalchemy import update

from hub.db import utcnow
from hub.programs import service
from hub.programs.models import PointTransaction
from tests.conftest import statements_run
from tests.integration.test_account_pages import browser, clock, flask_app, web_state  # noqa: F401  (fixtures)
from tests.integration.test_dashboard import EN, ID, _plain, member  # noqa: F401  (member: a fixture)
from tests.integration.test_surprises import surprise

RATING = {"version": 1, "points": 30, "lines": [
    {"rule": "base", "kind": "base", "points": "10.5", "detail": "1 point per 1,000 IDR"},
    {"rule": "pastry-mornings", "kind": "multiplier", "points": "20", "detail": "Double points on pastries before 11:00"},
    {"rule": "rounding", "kind": "rounding", "points": "-0.5", "detail": "rounded down"},
]}


DOUBLE_PASTRIES = {"earning": {"rules": [
    {"id": "pastries", "kind": "multiplier", "multiplier": "2", "description": "Double points on pastries",
     "when": {"categories": ["pastry"]}, "cap": {"per_transaction": 100}}]}}


def rate(db, txn_id: str, rating: dict) -> None:
    """What the earn path stores for a purchase rated by rules (hub/programs/earning.py)."""
    db.write(lambda s: s.execute(update(PointTransaction).where(PointTransaction.id == uuid.UUID(txn_id))
                                 .values(rule_version=rating["version"], rating=rating)))


def history(partner, member: str) -> list[dict]:
    response = partner.api.get(f"/v1/members/{member}/history")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_history_says_why_for_purchases_and_bonuses(ops, partner, db):
    member = partner.enrol()
    rated = partner.buy(member, "30000")
    rate(db, rated["id"], RATING)
    partner.buy(member, "5000")
    assert surprise(ops, partner.program, {"member_id": member}, points=50, reason="Thanks for your patience",
                    surprise_id="why-1").status_code == 201

    bonus, base, purchase = history(partner, member)
    assert bonus["code"] == "bonus" and bonus["why"] == {"rule_version": None, "lines": [
        {"rule": None, "kind": "surprise", "points": "50", "detail": "Thanks for your patience"}]}
    assert base["why"] == {"rule_version": None, "lines": [
        {"rule": "base", "kind": "base", "points": "5", "detail": "base rate"}]}
    assert purchase["hub_transaction_id"] == rated["id"]
    assert purchase["why"] == {"rule_version": 1, "lines": RATING["lines"]}


def test_a_purchase_rated_by_published_rules_says_which_rules(partner):
    assert partner.api.http.put(f"/v1/programs/{partner.program}/rules", headers=partner.api.headers,
                                json={"document": DOUBLE_PASTRIES}).status_code == 201
    member = partner.enrol()
    bought = partner.api.post("/v1/transactions", partner.purchase_body(
        member, "30000", occurred_at=utcnow().isoformat(), items=[{"category": "pastry", "amount": "20000"}]))
    assert bought.status_code == 201, bought.text
    assert bought.json()["points"] == 50  # 30 at the base rate, and the pastries' 20 again
    (earned,) = history(partner, member)
    assert earned["why"] == {"rule_version": 1, "lines": [
        {"rule": "base", "kind": "base", "points": "30", "detail": ANY},
        {"rule": "pastries", "kind": "multiplier", "points": "20", "detail": "Double points on pastries"}]}


def test_movements_without_a_why_say_none(partner):
    member = partner.enrol()
    bought = partner.buy(member, "10000")
    returned = partner.api.post("/v1/returns", {
        "purchase": {"id": bought["id"]}, "return_id": "r-why", "amount": "10000", "currency": "IDR",
        "occurred_at": "2026-11-02T10:00:00Z"})
    assert returned.status_code == 201, returned.text
    reversal, earned = history(partner, member)
    assert reversal["code"] == "reversal" and reversal["why"] is None
    assert earned["why"]["lines"][0]["rule"] == "base"


def test_a_page_costs_the_same_queries_however_many_rows(ops, partner, db):
    def cost(member: str) -> int:
        with db.read() as s, statements_run(db) as statements:
            items, _ = service.own_history(s, uuid.UUID(member), None, 50)
            assert all(m.why for m in items)
        return sum(1 for statement in statements if statement.lstrip().upper().startswith("SELECT"))

    few, many = partner.enrol(), partner.enrol()
    partner.buy(few, "1000")
    for i in range(6):
        rate(db, partner.buy(many, "2000")["id"], RATING)
        surprise(ops, partner.program, {"member_id": many}, points=1, reason="r", surprise_id=f"many-{i}")
    surprise(ops, partner.program, {"member_id": few}, points=1, reason="r", surprise_id="few")
    assert cost(few) == cost(many) == 3  # memberships, transfers, their purchases and awards


def test_the_dashboard_shows_the_why(browser, member, db, ops):
    first, member_id = member["first"], str(member["member_id"])
    rate(db, first.buy(member_id, "30000")["id"], RATING)
    surprise(ops, first.program, {"member_id": member_id}, points=50, reason="Thanks for your patience",
             surprise_id="dash-why")
    english = _plain(browser.get("/account/history", headers={"Accept-Language": "en"}).get_data(as_text=True))
    assert "Double points on pastries before 11:00: +20" in english
    assert "Thanks for your patience" in english
    assert f"{EN['dash.why.base']}: +10.5" in english and "rounded down: −0.5" in english
    assert f"{EN['dash.why.base']}: +1,200" in english  # the purchase the base rate alone rated
    home = _plain(browser.get("/account/?ui_locales=id").get_data(as_text=True))
    assert f"{ID['dash.why.base']}: +1.200" in home and f"{ID['dash.why.base']}: +10,5" in home
