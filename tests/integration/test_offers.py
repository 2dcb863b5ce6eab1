"""Personalised offers through the HTTP API: candidates from rewards, promotions aimed at the
member's tier or segments (read from the rules in force), and open challenges, ranked by the
documented score; a partner sees only its own programs' offers."""
from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.programs.models import Membership, Program
from hub.rules import counters, versions
from tests.conftest import assert_problem
from tests.integration.engage_support import brand, buy, iso, join, me  # noqa: F401  (fixtures)
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)
from tests.integration.test_challenges import challenge_body, create


def _reward(partner, code: str, points: int) -> str:
    response = partner.api.post("/v1/rewards", {"code": code, "kind": "free_product", "name": f"Gift {code}",
                                                "program": partner.program, "points": points})
    assert response.status_code == 201, response.text
    return code


def _promotions(db, partner, promotions: list) -> uuid.UUID:
    """The program's rules now name these promotions (published as the rating engine reads
    them); returns the program's id."""
    def work(s):
        program_id = s.scalar(select(Program.id).where(Program.code == partner.program))
        versions.publish(s, program_id, {"promotions": promotions}, created_by="test")
        return program_id
    return db.write(work)


def _promotion(id_: str, name: str, ends_in: timedelta = timedelta(days=30), **extra) -> dict:
    award = {} if "multiplier" in extra else {"bonus": 10}
    return {"id": id_, "name": name, "starts_at": iso(-timedelta(days=1)), "ends_at": iso(ends_in),
            "budget_points": 10000, **award, **extra}


@pytest.fixture
def scene(db, ops, me, partner, make_partner):
    member_id, mine = me
    shop, other, stranger = partner, make_partner(), make_partner()
    for p in (shop, other):
        join(db, p, member_id)
        buy(p, member_id, "1000000")  # 1,000 points in each
    db.write(lambda s: s.execute(update(Membership).where(
        Membership.member_id == member_id,
        Membership.program_id == select(Program.id).where(Program.code == shop.program).scalar_subquery(),
    ).values(tier="GOLD")))
    tag = secrets.token_hex(3).upper()
    codes = {
        "cheap": _reward(shop, f"A{tag}", 800), "near": _reward(shop, f"B{tag}", 1600),
        "far": _reward(shop, f"C{tag}", 3000), "theirs": _reward(other, f"D{tag}", 500),
    }
    program_id = _promotions(db, shop, [
        _promotion(f"SEG{tag}", "VIP week", timedelta(days=10), target={"segments": ["VIP"]}),
        _promotion(f"TIER{tag}", "Gold bonus", target={"tiers": ["GOLD"]}),
        _promotion(f"ALL{tag}", "Double weekend", timedelta(days=1), multiplier="2"),
        _promotion(f"PLAT{tag}", "Platinum only", target={"tiers": ["PLATINUM"]}),
        _promotion(f"SPENT{tag}", "Sold out"),
    ])
    # The budget of one is used up: offering it would promise points nobody gets.
    db.write(lambda s: counters.take(s, {}, {(program_id, f"SPENT{tag}"): (10000, 10000, 0)}))
    codes.update(seg=f"SEG{tag}", tier=f"TIER{tag}", all=f"ALL{tag}", plat=f"PLAT{tag}", spent=f"SPENT{tag}")
    shop.api.http.put("/v1/segments/VIP", headers=shop.api.headers, json={"name": "VIP", "conditions": {"recency": {"days": 7}}})
    assert shop.api.post("/v1/segments/VIP/refresh").json()["member_count"] == 1
    codes["challenge"] = create(ops, challenge_body([shop.program, other.program], shop.program,
                                                    kind="purchases", target=4, points=300))["code"]
    return member_id, mine, shop, other, stranger, codes


def _ours(items: list, codes: dict) -> list[tuple[str, str, int]]:
    """Our offers in the order given (other tests' open challenges may be listed too)."""
    names = {v: k for k, v in codes.items()}
    return [(names[i["code"]], i["reason"], i["score"]) for i in items if i["code"] in names]


def test_a_members_offers_are_ranked_by_the_documented_score(scene):
    _, mine, _, _, _, codes = scene
    response = mine.get("/v1/me/offers")
    assert response.status_code == 200, response.text
    assert _ours(response.json()["items"], codes) == [
        ("cheap", "affordable", 800),
        ("theirs", "affordable", 800),
        ("seg", "segment", 700),
        ("tier", "tier", 650),
        ("all", "everyone", 600),  # 500, +100: ends within three days
        ("challenge", "challenge", 550),  # 300 + 500 x 2/4
        ("near", "almost_affordable", 500),  # 400 + 400 x (1000 - 800) / 800
    ]
    by_code = {i["code"]: i for i in response.json()["items"]}
    assert (by_code[codes["near"]]["points"], by_code[codes["near"]]["progress"]) == (1600, 1000)
    assert (by_code[codes["challenge"]]["progress"], by_code[codes["challenge"]]["target"]) == (2, 4)
    assert mine.get("/v1/me/offers") .json() == response.json()  # the same order every time


def test_a_partner_sees_only_its_programs_offers_and_no_progress_at_others(scene):
    member_id, _, shop, other, stranger, codes = scene
    response = shop.api.get(f"/v1/members/{member_id}/offers")
    assert response.status_code == 200, response.text
    assert _ours(response.json()["items"], codes) == [
        ("cheap", "affordable", 800), ("seg", "segment", 700), ("tier", "tier", 650), ("all", "everyone", 600),
        ("near", "almost_affordable", 500), ("challenge", "challenge", 300)]
    (challenge,) = [i for i in response.json()["items"] if i["code"] == codes["challenge"]]
    assert challenge["progress"] is None
    theirs = _ours(other.api.get(f"/v1/members/{member_id}/offers").json()["items"], codes)
    assert [name for name, _, _ in theirs] == ["theirs", "challenge"]
    assert_problem(stranger.api.get(f"/v1/members/{member_id}/offers"), 404, "member-not-found")
    assert_problem(shop.api.get(f"/v1/members/{uuid.uuid4()}/offers"), 404, "member-not-found")


def test_a_completed_challenge_is_no_longer_offered(scene):
    member_id, mine, shop, other, _, codes = scene
    buy(shop, member_id)
    buy(other, member_id)
    assert codes["challenge"] not in [i["code"] for i in mine.get("/v1/me/offers").json()["items"]]
    # A partner still sees it, as before: its absence would say the member shopped elsewhere.
    for seen_by in (shop, other):
        (listed,) = [i for i in seen_by.api.get(f"/v1/members/{member_id}/offers").json()["items"]
                     if i["code"] == codes["challenge"]]
        assert (listed["reason"], listed["score"], listed["progress"]) == ("challenge", 300, None)


def test_offers_aimed_at_attributes_follow_the_members_consent_to_each_partner(db, me, partner, make_partner):
    """A promotion aimed at a segment matching on the member's attributes is offered by a
    partner only while the member shares `attributes` with that very partner."""
    member_id, mine = me
    shop, other = partner, make_partner()
    tag = secrets.token_hex(3).upper()
    for p in (shop, other):
        join(db, p, member_id)
        _promotions(db, p, [_promotion(f"FAN{p.code}{tag}", "For Bandung", target={"segments": ["BDG"]})])
        p.api.http.put("/v1/segments/BDG", headers=p.api.headers, json={
            "name": "Bandung", "conditions": {"attributes": {"city": ["bandung"]}}})
    assert mine.http.put("/v1/me/attributes", headers=mine.headers, json={"attributes": {"city": "Bandung"}}).json()[
        "share"] == {"attributes": False, "programs": False}

    def offered() -> set[str]:
        for p in (shop, other):
            p.api.post("/v1/segments/BDG/refresh")
        items = mine.get("/v1/me/offers").json()["items"]
        return {p.code for p in (shop, other) for i in items if i["code"] == f"FAN{p.code}{tag}"}

    assert offered() == set()
    assert mine.http.put(f"/v1/me/sharing/{other.code}/attributes", headers=mine.headers).status_code == 200
    assert offered() == {other.code}  # consent to the other partner lets the shop target nobody
    assert mine.http.put(f"/v1/me/sharing/{shop.code}/attributes", headers=mine.headers).status_code == 200
    assert offered() == {shop.code, other.code}
    assert mine.http.delete(f"/v1/me/sharing/{shop.code}/attributes", headers=mine.headers).status_code == 200
    items = mine.get("/v1/me/offers").json()["items"]  # at once, before any refresh
    assert f"FAN{shop.code}{tag}" not in {i["code"] for i in items}
    assert offered() == {other.code}
