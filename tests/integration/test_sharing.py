"""Consent-gated sharing (hub/privacy/sharing.py, docs/consent.md): every partner-facing read,
with and without the member's consent per purpose; granting and withdrawing through the API
and the dashboard; proof, export and erasure; what a read costs."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from hub.db import utcnow

from hub.privacy import sharing
from hub.privacy.sharing_models import SharingConsent, SharingConsentEvent
from hub.programs.models import Partner as PartnerRow
from hub.rules.challenges import Challenge
from tests.conftest import Api, assert_problem, statements_run
from tests.integration.engage_support import buy
from tests.integration.oidc_support import Browser, RelyingParty
from tests.integration.sharing_support import (
    ALWAYS,
    MEMBER_READS,
    READS,
    World,
    member_reads,
    partner_facing_reads,
    shows_elsewhere,
)
from tests.integration.test_challenges import challenge_body, create
from tests.integration.test_oidc import register, sign_in

SCOPE = "openid me:read me:write"
GRANTS = [(), *((purpose,) for purpose in sharing.PURPOSES), sharing.PURPOSES]


@pytest.fixture(scope="module")
def world(ops, http, db):
    return World(ops, http, db)


@pytest.fixture(autouse=True)
def nothing_shared(world):
    world.share_nothing()
    yield
    world.share_nothing()


def member_api(app, http, ops, world, partner: str | None) -> Api:
    """The member signed in on an app: a brand of `partner`, or the hub's own (no partner)."""
    body = {"name": "shop app", "redirect_uris": ["https://app.example/cb"], "scopes": SCOPE.split()}
    client = ops.post("/v1/clients", {**body, **({"partner": partner} if partner else {})}).json()
    rp = RelyingParty(app, client["client_id"], client["client_secret"], "https://app.example/cb", scope=SCOPE)
    api = Api(http, sign_in(Browser(app, world.cookie), rp)["access_token"])
    api.client_id = client["client_id"]
    return api


# --- every partner-facing read -----------------------------------------------------------

def test_every_partner_facing_read_is_in_the_matrix():
    """A new partner read must say here what it shows with consent, or this fails."""
    assert {read.label for read in READS} == partner_facing_reads()


@pytest.mark.parametrize("granted", GRANTS, ids=lambda g: "+".join(g) or "nothing")
@pytest.mark.parametrize("read", READS, ids=lambda r: r.id)
def test_a_read_with_and_without_consent(world, read, granted):
    path = read.path(world)
    without = world.a.api.http.get(path, headers=world.a.api.headers)
    assert without.status_code == read.status, without.text
    assert world.visible(without) == frozenset()

    world.share(*granted)
    shared = world.a.api.http.get(path, headers=world.a.api.headers)
    expected = read.shows & set(granted)
    assert world.visible(shared) == expected
    if not expected:
        assert (shared.status_code, shared.json()) == (without.status_code, without.json())

    # Withdrawn: the very next read is as before.
    world.share_nothing()
    assert world.a.api.http.get(path, headers=world.a.api.headers).json() == without.json()


def test_the_sharing_reads_show_what_the_purpose_names(world):
    world.share(*sharing.PURPOSES)
    member = world.a.api.get(f"/v1/members/{world.member}").json()
    assert member["profile"] == {"given_name": "Siti", "family_name": "Rahayu", "email": world.email}
    assert [m["program"] for m in member["memberships"]] == [world.a.program]  # still only A's

    balances = world.a.api.get(f"/v1/members/{world.member}/balances", scope="coalition").json()
    assert [b["program"] for b in balances["items"]] == [world.a.program]
    assert [(b["partner"], b["program"], b["available"]) for b in balances["shared"]] == [
        (world.b.code, world.b.program, 689)]  # 700 earned, 1 redeemed, 10 given

    history = world.a.api.get(f"/v1/members/{world.member}/history", scope="coalition").json()["items"]
    assert {(m["program"], m["ref_id"]) for m in history} == {
        (world.a.program, world.a_purchase), (world.b.program, world.b_purchase), (world.b.program, world.b_redemption),
        (world.b.program, world.b_transfer)}
    # Another partner's program, by name, only with consent.
    world.share_nothing()
    refused = world.a.api.get(f"/v1/members/{world.member}/history", scope="coalition", program=world.b.program)
    assert_problem(refused, 404, "membership-not-found")


def test_consent_to_another_partner_shows_this_one_nothing(world):
    world.share(*sharing.PURPOSES, partner=world.b)
    for read in READS:
        assert world.visible(world.a.api.http.get(read.path(world), headers=world.a.api.headers)) == frozenset()


def test_ops_see_what_they_see_today(world, ops):
    paths = [f"/v1/redemptions?member_id={world.member}", f"/v1/conversions?member_id={world.member}",
             f"/v1/member-transfers?member_id={world.member}"]
    before = [ops.http.get(p, headers=ops.headers).json() for p in paths]
    world.share(*sharing.PURPOSES)
    assert [ops.http.get(p, headers=ops.headers).json() for p in paths] == before


# --- the member's own reads through a partner's brand app ----------------------------------

@pytest.fixture(scope="module")
def brand(app, http, ops, world) -> Api:
    """The member signed in on A's brand app (its default `me:read` and more)."""
    return member_api(app, http, ops, world, world.a.code)


@pytest.fixture(scope="module")
def own_app(app, http, ops, world) -> Api:
    return member_api(app, http, ops, world, None)


def test_every_member_read_is_in_the_matrix():
    """A new read a member's token can call must say here what a brand sees of it, or this fails."""
    assert {read.label for read in MEMBER_READS} == member_reads()


@pytest.mark.parametrize("granted", GRANTS, ids=lambda g: "+".join(g) or "nothing")
@pytest.mark.parametrize("read", MEMBER_READS, ids=lambda r: r.id)
def test_a_brand_sees_of_the_member_what_its_partner_may(world, brand, own_app, read, granted):
    """A brand's app sees the member's data at other partners only as far as the consent page's
    `me:read` says (balances and memberships) or the member shares a purpose with its partner."""
    path = read.path(world)
    assert shows_elsewhere(world, own_app.http.get(path, headers=own_app.headers)) == read.elsewhere
    world.share(*granted)
    answer = brand.http.get(path, headers=brand.headers)
    may = read.shows == ALWAYS or read.shows in granted
    assert shows_elsewhere(world, answer) == (read.elsewhere and may)
    assert answer.status_code == (200 if may or read.status == 200 else read.status), answer.text


def test_a_brand_never_downloads_the_archive(world, brand, own_app):
    world.share(*sharing.PURPOSES)
    assert_problem(brand.http.get("/v1/me/export", headers=brand.headers), 403, "export-refused")
    assert own_app.http.get("/v1/me/export", headers=own_app.headers).status_code == 200


def test_a_brand_withdraws_the_attributes_switches_but_never_turns_them_on_or_reads_the_values(
        world, db, brand, own_app):
    """The switches of /v1/me/attributes grant a targeting purpose to every partner: a brand
    cannot turn one on (nothing is written, not even the attributes), sees it as it stands for
    its own partner, and turning it off withdraws it from its own partner only."""
    body = {"attributes": {"city": "Bandung"}, "share": {"attributes": True}}
    assert_problem(brand.http.put("/v1/me/attributes", headers=brand.headers, json=body), 403,
                   "sharing-grant-refused")
    assert own_app.get("/v1/me/attributes").json() == {"attributes": {}, "share": {"attributes": False,
                                                                                   "programs": False}}
    assert _count(db, world) == 0

    world.share(sharing.ATTRIBUTES)  # with A (the brand's partner) only, on the dashboard
    assert own_app.get("/v1/me/attributes").json()["share"]["attributes"] is False  # not with every partner
    assert brand.get("/v1/me/attributes").json() == {"attributes": {}, "share": {"attributes": True,
                                                                                 "programs": False}}
    written = brand.http.put("/v1/me/attributes", headers=brand.headers, json=body)  # already on: no change
    assert written.status_code == 200, written.text
    assert written.json() == {"attributes": {}, "share": {"attributes": True, "programs": False}}
    assert own_app.get("/v1/me/attributes").json()["attributes"] == {"city": "bandung"}

    world.share(sharing.ATTRIBUTES, partner=world.b)
    off = brand.http.put("/v1/me/attributes", headers=brand.headers, json={"share": {"attributes": False}})
    assert off.json()["share"]["attributes"] is False
    with db.read() as s:
        assert set(s.scalars(select(SharingConsent.partner_id).where(
            SharingConsent.member_id == world.member_id))) == {_partner_id(s, world.b)}  # B's stays


def _partner_id(s, partner):
    return s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))


def test_a_brand_sees_challenge_progress_only_with_purchase_history(world, db, brand, own_app, ops):
    """Progress counts purchases at other partners: a brand sees the challenge (as its partner
    would), its progress only with consent."""
    body = challenge_body([world.a.program, world.b.program], world.a.program, target=5)
    create(ops, body)
    buy(world.a, world.member)
    buy(world.b, world.member)

    def progress(api) -> list:
        return [c["progress"] for c in api.get("/v1/me/challenges").json()["in_progress"]
                if c["challenge"]["code"] == body["code"]]

    try:
        assert progress(own_app) == [2]  # a purchase at A and one at B
        assert progress(brand) == [None]
        world.share(sharing.PURCHASE_HISTORY)
        assert progress(brand) == [2]
    finally:  # closed, so the matrix's answers stay free of B's program code
        db.write(lambda s: s.execute(update(Challenge).where(Challenge.code == body["code"])
                                     .values(ends_at=utcnow() - timedelta(seconds=1))))


# --- granting and withdrawing -------------------------------------------------------------

def test_the_member_grants_and_withdraws_with_proof(app, http, ops, db, world):
    own = member_api(app, http, ops, world, None)
    listed = own.get("/v1/me/sharing").json()["items"]
    assert {(c["partner"], c["purpose"], c["shared"]) for c in listed} == {
        (p.code, purpose, False) for p in (world.a, world.b) for purpose in sharing.PURPOSES}

    url = f"/v1/me/sharing/{world.a.code}/{sharing.PROFILE}"
    first = own.http.put(url, headers=own.headers)
    assert first.status_code == 200, first.text
    assert first.json()["shared"] is True and first.json()["partner_name"] == f"Partner {world.a.code}"
    assert own.http.put(url, headers=own.headers).json() == first.json()  # again: nothing changes
    assert "profile" in world.a.api.get(f"/v1/members/{world.member}").json()

    gone = own.http.delete(url, headers=own.headers)
    assert gone.status_code == 200 and gone.json()["shared"] is False
    assert "profile" not in world.a.api.get(f"/v1/members/{world.member}").json()  # at once
    assert own.http.delete(url, headers=own.headers).status_code == 200  # nothing to withdraw: fine

    with db.read() as s:
        rows = [r for r in sharing.export_rows(s, world.member_id) if r.get("client_id") == own.client_id]
    assert [(r["kind"], r["action"], r["channel"], r["by"]) for r in rows] == [
        ("sharing_consent_event", "grant", "api", f"member:{world.member}"),
        ("sharing_consent_event", "revoke", "api", f"member:{world.member}")]
    assert {(r["partner"], r["purpose"]) for r in rows} == {(world.a.code, sharing.PROFILE)}

    assert_problem(own.http.put(f"/v1/me/sharing/NOSUCH/{sharing.PROFILE}", headers=own.headers), 404,
                   "sharing-partner-not-found")
    assert own.http.put(f"/v1/me/sharing/{world.a.code}/everything", headers=own.headers).status_code == 400


def test_a_partner_cannot_grant_consent_for_the_member(app, http, ops, db, world):
    brand = member_api(app, http, ops, world, world.a.code)  # signing in on A's site shares nothing
    assert _count(db, world) == 0
    for partner in (world.a, world.b):
        refused = brand.http.put(f"/v1/me/sharing/{partner.code}/{sharing.PROFILE}", headers=brand.headers)
        assert_problem(refused, 403, "sharing-grant-refused")
    # Its own client-credentials token has no member scope at all.
    refused = world.a.api.http.put(f"/v1/me/sharing/{world.a.code}/{sharing.PROFILE}", headers=world.a.api.headers)
    assert refused.status_code in (401, 403)
    assert _count(db, world) == 0

    # It sees and may withdraw only what is shared with its own partner.
    world.share(sharing.PROFILE)
    world.share(sharing.PROFILE, partner=world.b)
    listed = brand.get("/v1/me/sharing").json()["items"]
    assert {(c["partner"], c["shared"]) for c in listed} == {(world.a.code, True), (world.a.code, False)}
    assert_problem(brand.http.delete(f"/v1/me/sharing/{world.b.code}/{sharing.PROFILE}", headers=brand.headers),
                   404, "sharing-partner-not-found")
    withdrawn = brand.http.delete(f"/v1/me/sharing/{world.a.code}/{sharing.PROFILE}", headers=brand.headers)
    assert withdrawn.status_code == 200 and withdrawn.json()["shared"] is False
    assert _count(db, world) == 1  # B's stays


def _count(db, world) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(SharingConsent)
                        .where(SharingConsent.member_id == world.member_id))


def test_the_dashboard_page_grants_and_withdraws(app, db, world):
    browser = Browser(app, world.cookie)
    page = browser.get("/account/sharing/")
    assert page.status_code == 200
    assert f"Partner {world.a.code}" in page.text and f"Partner {world.b.code}" in page.text
    assert page.text.count(">Share</button>") == 2 * len(sharing.PURPOSES)
    assert "Stop sharing</button>" not in page.text  # none pre-ticked
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"partner": world.a.code, "purpose": sharing.BALANCES, "action": "grant"}

    assert browser.post("/account/sharing/", form).status_code == 400  # no CSRF token: refused
    assert _count(db, world) == 0
    done = browser.post("/account/sharing/", {**form, "csrf_token": token})
    assert done.status_code == 303
    page = browser.get(done.headers["location"])
    assert page.text.count("Stop sharing</button>") == 1 and "Shared." in page.text
    assert world.visible(world.a.api.get(f"/v1/members/{world.member}/balances", scope="coalition")) == {
        sharing.BALANCES}

    assert browser.post("/account/sharing/", {**form, "action": "revoke", "csrf_token": token}).status_code == 303
    assert _count(db, world) == 0
    refused = browser.post("/account/sharing/", {**form, "partner": "NOSUCH", "csrf_token": token})
    assert refused.status_code == 404 and _count(db, world) == 0


def test_erasure_ends_every_consent_and_keeps_the_proof(db, world):
    world.share(*sharing.PURPOSES)
    with db.read() as s:
        exported = [(r["partner"], r["purpose"]) for r in sharing.export_rows(s, world.member_id)
                    if r["kind"] == "sharing_consent"]
    assert sorted(exported) == sorted((world.a.code, p) for p in sharing.PURPOSES)
    db.write(lambda s: sharing.forget(s, world.member_id))
    assert _count(db, world) == 0
    with db.read() as s:
        rows = sharing.export_rows(s, world.member_id)
        actions = s.execute(select(SharingConsentEvent.action, SharingConsentEvent.channel)
                            .where(SharingConsentEvent.member_id == world.member_id,
                                   SharingConsentEvent.channel == sharing.ERASURE)).all()
    assert sorted(actions) == [("revoke", "erasure")] * len(sharing.PURPOSES)
    assert all(r["kind"] == "sharing_consent_event" for r in rows)
    assert world.visible(world.a.api.get(f"/v1/members/{world.member}")) == frozenset()


# --- what it costs ------------------------------------------------------------------------

def test_a_read_checks_consent_in_one_query_and_earning_never(db, world):
    world.share(*sharing.PURPOSES)
    for path in (f"/v1/members/{world.member}", f"/v1/members/{world.member}/balances?scope=coalition",
                 f"/v1/members/{world.member}/history?scope=coalition"):
        with statements_run(db) as seen:
            assert world.a.api.http.get(path, headers=world.a.api.headers).status_code == 200
        assert sum("sharing_consents" in s for s in seen) == 1, path
    for path in (f"/v1/members/{world.member}/balances", f"/v1/members/{world.member}/history"):
        with statements_run(db) as seen:
            world.a.api.http.get(path, headers=world.a.api.headers)
        assert not any("sharing_consents" in s for s in seen), path
    with statements_run(db) as seen:
        world.a.buy(world.member, "100000")
    assert not any("sharing" in s for s in seen)
