"""Segments through the HTTP API and their evaluation in SQL: each condition and their
combination (table-driven over one small world), tenancy (a partner sees and counts only its
own members), attributes and other partners' programs only with the member's consent to that
very partner (purposes `attributes` and `programs_held`), and segments_of (what targeted
promotions read) returning the refreshed codes."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub.cli import main
from hub.db import utcnow
from hub.privacy import sharing
from hub.privacy.sharing_models import SharingConsentEvent
from hub.programs.models import Membership, Partner as PartnerRow, Program
from hub.rules import attributes, segments, versions
from hub.rules.models import Segment
from hub.web.common import web_actor
from tests.conftest import Partner, assert_problem
from tests.integration.engage_support import brand, buy, join, me  # noqa: F401  (fixtures)
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)


def _partner_id(db, partner) -> uuid.UUID:
    with db.read() as s:
        return s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))


def _tier(db, partner, member_id: str, tier: str) -> None:
    db.write(lambda s: s.execute(update(Membership).where(
        Membership.member_id == uuid.UUID(member_id),
        Membership.program_id == select(Program.id).where(Program.code == partner.program).scalar_subquery(),
    ).values(tier=tier)))


def _tell(db, member_id: str, attrs: dict) -> None:
    db.write(lambda s: attributes.put(s, uuid.UUID(member_id), attrs))


def _consent(db, member_id: str, partner, *purposes: str) -> None:
    """The member shares `purposes` with the partner, on the dashboard."""
    db.write(lambda s: [sharing.grant(s, web_actor(uuid.UUID(member_id)), partner.code, p, sharing.DASHBOARD)
                        for p in purposes])


def _hold(db, member_id: str, partner) -> None:
    """Give the member a membership in the partner's program too."""
    db.write(lambda s: s.execute(update(Membership).where(Membership.member_id == uuid.UUID(partner.enrol()))
                                 .values(member_id=uuid.UUID(member_id))))


@pytest.fixture(scope="module")
def world(ops, http, db):
    """One partner's members, each with one distinguishing fact, and another partner's."""
    shop, other = Partner(ops, http), Partner(ops, http)
    m = {name: shop.enrol() for name in ("big", "small", "lapsed", "gold", "jakarta", "quiet", "both", "other_fan")}
    m["outsider"] = other.enrol()
    buy(shop, m["big"], "500000")
    buy(shop, m["small"], "50000")
    buy(shop, m["lapsed"], "500000", hours_ago=24 * 40)
    _tier(db, shop, m["gold"], "GOLD")
    _tell(db, m["jakarta"], {"city": "Jakarta ", "interests": ["Coffee", "books"], "birth_month": 11})
    for name in ("quiet", "outsider", "other_fan"):
        _tell(db, m[name], {"city": "Jakarta"})
    _consent(db, m["jakarta"], shop, sharing.ATTRIBUTES)  # "quiet" told, but did not share
    _consent(db, m["outsider"], other, sharing.ATTRIBUTES)  # shares, but is not the shop's member
    # "both" holds the other partner's program and shares which programs they hold with the shop.
    _hold(db, m["both"], other)
    _consent(db, m["both"], shop, sharing.PROGRAMS_HELD)
    m["both_hidden"] = shop.enrol()  # holds the other program too, but shares nothing
    _hold(db, m["both_hidden"], other)
    # "other_fan" holds both and shares everything for targeting, but with the other partner only.
    _hold(db, m["other_fan"], other)
    _consent(db, m["other_fan"], other, sharing.ATTRIBUTES, sharing.PROGRAMS_HELD)
    return shop, other, m


# 2026 purchases: 500,000.00 IDR = 50,000,000 minor units.
CASES = [
    ({}, {"big", "small", "lapsed", "gold", "jakarta", "quiet", "both", "both_hidden", "other_fan"}),
    ({"spend": {"days": 30, "currency": "IDR", "min": 20000000}}, {"big"}),
    ({"spend": {"days": 60, "currency": "IDR", "min": 20000000}}, {"big", "lapsed"}),
    ({"spend": {"days": 30, "currency": "IDR", "min": 1, "max": 10000000}}, {"small"}),
    ({"spend": {"days": 30, "currency": "SGD", "min": 1}}, set()),
    ({"recency": {"days": 7}}, {"big", "small"}),
    ({"tier": {"in": ["GOLD", "SILVER"]}}, {"gold"}),
    ({"attributes": {"city": ["jakarta"]}}, {"jakarta"}),
    ({"attributes": {"city": ["JAKARTA"], "interests": ["coffee", "tea"], "birth_month": [11]}}, {"jakarta"}),
    ({"attributes": {"interests": ["tea"]}}, set()),
    ({"recency": {"days": 7}, "spend": {"days": 7, "currency": "IDR", "min": 20000000}}, {"big"}),
    ({"recency": {"days": 7}, "tier": {"in": ["GOLD"]}}, set()),
]


@pytest.mark.parametrize("conditions, expected", CASES)
def test_conditions_select_the_partners_members_who_meet_all_of_them(world, db, conditions, expected):
    shop, _, m = world
    names = {v: k for k, v in m.items()}
    with db.read() as s:
        q = segments.members_query(_partner_id(db, shop), segments.check(s, _partner_id(db, shop), conditions), utcnow())
        found = {names[str(member_id)] for member_id in s.scalars(q)}
    assert found == expected


def _ids(db, partner, conditions) -> set[str]:
    with db.read() as s:
        return {str(i) for i in s.scalars(segments.members_query(_partner_id(db, partner), conditions, utcnow()))}


def test_other_partners_programs_count_only_for_members_who_share_them(world, db):
    shop, other, m = world
    assert _ids(db, shop, {"programs_held": {"all": [other.program]}}) == {m["both"]}
    assert m["both_hidden"] in _ids(db, shop, {"programs_held": {"all": [shop.program]}})


def test_consent_to_one_partner_lets_no_other_target_the_member(world, db):
    """other_fan shares attributes and programs held with the other partner, not the shop: the
    other partner's segments match them, the shop's do not (and vice versa for "both")."""
    shop, other, m = world
    jakarta = {"attributes": {"city": ["jakarta"]}}
    assert _ids(db, other, jakarta) == {m["outsider"], m["other_fan"]}
    assert _ids(db, shop, jakarta) == {m["jakarta"]}
    assert _ids(db, other, {"programs_held": {"all": [shop.program]}}) == {m["other_fan"]}
    assert _ids(db, shop, {"programs_held": {"all": [other.program]}}) == {m["both"]}


def test_refresh_materialises_and_a_partner_sees_only_its_own(world, db, ops, make_partner):
    shop, other, m = world
    response = shop.api.http.put("/v1/segments/BIGSPEND", headers=shop.api.headers, json={
        "name": "Big spenders", "conditions": {"spend": {"days": 30, "currency": "IDR", "min": 20000000}}})
    assert response.status_code == 201, response.text
    assert response.json()["member_count"] == 0 and response.json()["refreshed_at"] is None
    refreshed = shop.api.post("/v1/segments/BIGSPEND/refresh")
    assert refreshed.status_code == 200 and refreshed.json()["member_count"] == 1 and refreshed.json()["refreshed_at"]
    # What targeted promotions read at earn time.
    with db.read() as s:
        assert segments.segments_of(s, _partner_id(db, shop), [uuid.UUID(v) for v in m.values()]) == {
            uuid.UUID(m["big"]): {"BIGSPEND"}}
    # Widen it: a refresh adds who now meets it and keeps who stayed (since unchanged).
    with db.read() as s:
        since = s.scalar(select(segments.SegmentMember.since).where(segments.SegmentMember.member_id == uuid.UUID(m["big"])))
    assert shop.api.http.put("/v1/segments/BIGSPEND", headers=shop.api.headers, json={
        "name": "Spenders", "conditions": {"spend": {"days": 60, "currency": "IDR", "min": 20000000}}}).status_code == 200
    assert shop.api.post("/v1/segments/BIGSPEND/refresh").json()["member_count"] == 2
    with db.read() as s:
        assert s.scalar(select(segments.SegmentMember.since).where(
            segments.SegmentMember.member_id == uuid.UUID(m["big"]))) == since
    # Who they are, a page at a time.
    first = shop.api.get("/v1/segments/BIGSPEND/members", limit=1).json()
    second = shop.api.get("/v1/segments/BIGSPEND/members", limit=1, cursor=first["next_cursor"]).json()
    assert second["next_cursor"] is None
    assert {i["member_id"] for i in first["items"] + second["items"]} == {m["big"], m["lapsed"]}
    assert_problem(shop.api.get("/v1/segments/BIGSPEND/members", cursor="bm90LWEtdXVpZA"), 422, "invalid-cursor")
    # Another partner: not found, not listed; its own segment of "everyone" holds only its member.
    assert_problem(other.api.get("/v1/segments/BIGSPEND"), 404, "segment-not-found")
    assert_problem(other.api.get("/v1/segments/BIGSPEND/members"), 404, "segment-not-found")
    assert "BIGSPEND" not in [i["code"] for i in other.api.get("/v1/segments").json()["items"]]
    other.api.http.put("/v1/segments/ALL", headers=other.api.headers, json={"name": "All"})
    # Its outsider, and both, both_hidden and other_fan, who hold its program too.
    assert other.api.post("/v1/segments/ALL/refresh").json()["member_count"] == 4
    listed = shop.api.get("/v1/segments").json()["items"]
    assert [(i["code"], i["member_count"]) for i in listed] == [("BIGSPEND", 2)]


def test_ops_act_for_a_named_partner(world, ops):
    shop, other, _ = world
    body = {"name": "Recent", "conditions": {"recency": {"days": 7}}}
    assert_problem(ops.http.put("/v1/segments/RECENT", headers=ops.headers, json=body), 422, "partner-required")
    response = ops.http.put(f"/v1/segments/RECENT?partner={shop.code}", headers=ops.headers, json=body)
    assert response.status_code == 201, response.text
    assert ops.post(f"/v1/segments/RECENT/refresh?partner={shop.code}").json()["member_count"] == 2
    assert shop.api.get("/v1/segments/RECENT").json()["member_count"] == 2
    # A partner cannot act for another.
    assert_problem(other.api.get(f"/v1/segments/RECENT?partner={shop.code}"), 404, "partner-not-found")


@pytest.mark.parametrize("conditions, status, slug", [
    ({"spend": {"days": 30, "currency": "IDR", "min": 10, "max": 5}}, 422, "invalid-segment"),
    ({"spend": {"days": 30, "currency": "XYZ"}}, 422, "unknown-currency"),
    ({"programs_held": {"all": ["NOSUCH"]}}, 422, "invalid-segment"),
    ({"attributes": {"shoe_size": ["42"]}}, 400, "invalid-request"),
    ({"recency": {"days": 0}}, 400, "invalid-request"),
])
def test_bad_definitions_are_refused_with_nothing_written(world, db, conditions, status, slug):
    shop, _, _ = world
    response = shop.api.http.put("/v1/segments/BAD", headers=shop.api.headers, json={"name": "Bad", "conditions": conditions})
    assert_problem(response, status, slug)
    with db.read() as s:
        assert s.scalar(select(Segment.id).where(Segment.code == "BAD")) is None


def test_a_tier_condition_names_only_the_partners_own_program(world):
    shop, other, _ = world
    response = shop.api.http.put("/v1/segments/GOLDS", headers=shop.api.headers, json={
        "name": "Gold", "conditions": {"tier": {"in": ["GOLD"], "program": other.program}}})
    assert_problem(response, 404, "program-not-found")


def _shared(mine) -> set[tuple[str, str]]:
    return {(c["partner"], c["purpose"]) for c in mine.get("/v1/me/sharing").json()["items"] if c["shared"]}


def test_a_member_shares_attributes_through_the_api_and_segments_follow(db, me, partner, ops, http):
    """`share.attributes` grants the purpose to each of the member's partners (with proof);
    withdrawing it from one partner on /v1/me/sharing takes the member out of that partner's
    segments at once, and the switch then reads false; `false` withdraws it from every one."""
    member_id, mine = me
    second = Partner(ops, http)
    join(db, partner, member_id)
    join(db, second, member_id)
    body = {"attributes": {"city": "Bandung", "interests": ["Running"], "preferred_language": "id"},
            "share": {"attributes": True}}
    response = mine.http.put("/v1/me/attributes", headers=mine.headers, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"attributes": {"city": "bandung", "interests": ["running"], "preferred_language": "id"},
                               "share": {"attributes": True, "programs": False}}
    assert mine.get("/v1/me/attributes").json() == response.json()
    assert _shared(mine) == {(partner.code, "attributes"), (second.code, "attributes")}
    with db.read() as s:
        proof = s.execute(select(SharingConsentEvent.action, SharingConsentEvent.channel)
                          .where(SharingConsentEvent.member_id == member_id)).all()
    assert sorted(proof) == [("grant", "api"), ("grant", "api")]
    for p in (partner, second):
        p.api.http.put("/v1/segments/BDG", headers=p.api.headers, json={
            "name": "Bandung runners", "conditions": {"attributes": {"city": ["Bandung"], "interests": ["running"]}}})
        assert p.api.post("/v1/segments/BDG/refresh").json()["member_count"] == 1
    # Leaving `share` out changes no consent (the attributes are still replaced).
    assert mine.http.put("/v1/me/attributes", headers=mine.headers, json={"attributes": body["attributes"]}).json()[
        "share"] == {"attributes": True, "programs": False}
    # Withdrawn from one partner: out of its segment at once, still in the other's.
    assert mine.http.delete(f"/v1/me/sharing/{second.code}/attributes", headers=mine.headers).status_code == 200
    assert second.api.get("/v1/segments/BDG").json()["member_count"] == 0
    assert second.api.post("/v1/segments/BDG/refresh").json()["member_count"] == 0
    assert partner.api.post("/v1/segments/BDG/refresh").json()["member_count"] == 1
    assert mine.get("/v1/me/attributes").json()["share"] == {"attributes": False, "programs": False}
    # Withdrawn everywhere: out at once (no refresh needed), and a refresh does not put them back.
    body["share"] = {"attributes": False}
    assert mine.http.put("/v1/me/attributes", headers=mine.headers, json=body).status_code == 200
    assert partner.api.get("/v1/segments/BDG").json()["member_count"] == 0
    assert partner.api.post("/v1/segments/BDG/refresh").json()["member_count"] == 0
    assert _shared(mine) == set()
    # Only the fixed list of attributes exists, and a partner cannot read them.
    bad = mine.http.put("/v1/me/attributes", headers=mine.headers, json={"attributes": {"income": "high"}})
    assert_problem(bad, 400, "invalid-request")
    assert_problem(partner.api.get("/v1/me/attributes"), 403, "insufficient-scope")


def test_changed_attributes_take_the_member_out_of_attribute_segments_at_once(world, db):
    shop, _, m = world
    shop.api.http.put("/v1/segments/JKT", headers=shop.api.headers, json={
        "name": "Jakarta", "conditions": {"attributes": {"city": ["jakarta"]}}})
    assert shop.api.post("/v1/segments/JKT/refresh").json()["member_count"] == 1
    _tell(db, m["jakarta"], {"city": "Jakarta ", "interests": ["Coffee", "books"], "birth_month": 11})
    assert shop.api.get("/v1/segments/JKT").json()["member_count"] == 0
    assert shop.api.post("/v1/segments/JKT/refresh").json()["member_count"] == 1  # still matches


def test_the_refresh_command_refreshes_a_partners_segments(world, settings, monkeypatch):
    shop, _, _ = world
    shop.api.http.put("/v1/segments/GOLDEN", headers=shop.api.headers, json={
        "name": "Gold", "conditions": {"tier": {"in": ["GOLD"]}}})
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    result = CliRunner().invoke(main, ["segments", "refresh", "--partner", shop.code], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert shop.api.get("/v1/segments/GOLDEN").json()["member_count"] == 1
    missing = CliRunner().invoke(main, ["segments", "refresh", "--partner", "NOSUCH"])
    assert missing.exit_code == 1 and "no partner" in missing.output


def test_a_promotion_aimed_at_a_segment_pays_its_refreshed_members_only(ops, http, db):
    """The rating engine reads segments_of at earn time: the members the last refresh put in
    the segment get the promotion's bonus, the others do not."""
    shop = Partner(ops, http)
    regular, newcomer = shop.enrol(), shop.enrol()
    buy(shop, regular)
    now = utcnow()

    def publish(s):
        program_id = s.scalar(select(Program.id).where(Program.code == shop.program))
        versions.publish(s, program_id, {"promotions": [{
            "id": "REGULARS", "name": "Thanks for coming back", "bonus": 50, "budget_points": 1000,
            "starts_at": (now - timedelta(days=1)).isoformat(), "ends_at": (now + timedelta(days=1)).isoformat(),
            "target": {"segments": ["REGULAR"]}}]}, created_by="test")

    db.write(publish)
    shop.api.http.put("/v1/segments/REGULAR", headers=shop.api.headers, json={
        "name": "Regulars", "conditions": {"recency": {"days": 7}}})
    assert shop.api.post("/v1/segments/REGULAR/refresh").json()["member_count"] == 1
    # (Bought now: rated by the rules in force now, which took effect when published.)
    assert buy(shop, regular, hours_ago=0)["points"] == 100 + 50
    assert buy(shop, newcomer, hours_ago=0)["points"] == 100  # in it only from the next refresh
