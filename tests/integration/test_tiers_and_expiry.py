"""Tiers and expiry through the HTTP API: up at once on a purchase, down only at a review,
tier.changed events, exclusive and tier-upgrade rewards; the expiry job's breakage, what
members are told, and the ledger still verifying."""
from __future__ import annotations

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import select

from hub import ledger
from hub.db import utcnow
from hub.identity import mail
from hub.identity.account_models import MemberAccount
from hub.ledger.verify import verify
from hub.notify.webhook_models import WebhookEvent
from hub.programs import earning
from hub.programs.models import Membership, Program
from hub.rules import expiry, months, tiers, versions
from hub.rules.standing_models import TierChange
from tests.conftest import assert_problem, statements_run, unique_code
from tests.integration.oidc_support import log_in
from tests.integration.test_concurrency import THREADS, actor_of
from tests.integration.test_cli import run  # noqa: F401  (the fixture: the hub command)
from tests.integration.test_redemptions import in_house, member_api, redeem
from tests.integration.test_webhooks import register

# 1 point per 1,000 IDR (the test partner's program).
TIERS = {
    "basis": "points_earned", "window_months": 12, "review": {"every_months": 12, "anchor": "calendar"},
    "levels": [
        {"code": "SILVER", "name": "Silver", "threshold": 100},
        {"code": "GOLD", "name": "Gold", "threshold": 500, "earn_multiplier": "1.5", "exclusive": True},
    ],
}


def publish(db, partner, document) -> uuid.UUID:
    def work(s):
        program_id = s.scalar(select(Program.id).where(Program.code == partner.program))
        versions.publish(s, program_id, document, created_by="test")
        return program_id
    return db.write(work)


def now_iso() -> str:
    return utcnow().isoformat()


def buy(partner, member, amount) -> dict:
    # occurred_at now: the rules just published are in force from now on.
    response = partner.api.post("/v1/transactions", partner.purchase_body(member, amount, occurred_at=now_iso()))
    assert response.status_code == 201, response.text
    return response.json()


def standing(partner, member) -> dict:
    response = partner.api.get(f"/v1/members/{member}/tier", program=partner.program)
    assert response.status_code == 200, response.text
    return response.json()


def tier_code(partner, member) -> str | None:
    return (standing(partner, member)["tier"] or {}).get("code")


def history(db, member) -> list[tuple]:
    with db.read() as s:
        return [(c.from_tier, c.to_tier, c.reason) for c in s.scalars(
            select(TierChange).join(Membership, Membership.id == TierChange.membership_id)
            .where(Membership.member_id == uuid.UUID(member)).order_by(TierChange.id))]


def events(db, member) -> list[tuple]:
    """tier.changed events of `member`, oldest first (emitted only to a partner with an
    endpoint that listens: see `listening`)."""
    with db.read() as s:
        found = s.scalars(select(WebhookEvent).where(WebhookEvent.type == "tier.changed")
                          .order_by(WebhookEvent.created_at)).all()
    return [(e.data["from"], e.data["to"], e.data["reason"], str(e.partner_id))
            for e in found if e.data.get("member_id") == member]


def listening(partner) -> None:
    """The partner registers a webhook endpoint for tier changes."""
    register(partner.api, event_types=["tier.changed"])


def partner_id(db, partner) -> str:
    with db.read() as s:
        return str(s.scalar(select(Program.partner_id).where(Program.code == partner.program)))


def next_january() -> datetime:
    return months.start((utcnow().year + 1) * 12)


def test_a_purchase_moves_a_member_up_at_once_and_only_a_review_moves_them_down(db, partner):
    listening(partner)
    publish(db, partner, {"tiers": TIERS})
    member = partner.enrol()
    buy(partner, member, "60000")  # 60 points
    first = standing(partner, member)
    assert (first["tier"], first["qualifying"], first["next_level"]["code"], first["missing"], first["next_review_at"]) \
        == (None, "60", "SILVER", "40", None)
    bought = buy(partner, member, "50000")  # 110 points: Silver, at once
    now = standing(partner, member)
    assert (now["tier"]["code"], now["qualifying"], now["next_level"]["code"], now["missing"]) == ("SILVER", "110", "GOLD", "390")
    review = next_january()
    assert now["next_review_at"] == review.isoformat().replace("+00:00", "Z")
    assert events(db, member) == [(None, "SILVER", "qualified", partner_id(db, partner))]

    # A return takes its points out of the qualifying total, never the tier.
    returned = partner.api.post("/v1/returns", {"purchase": {"id": bought["id"]}, "return_id": f"r-{secrets.token_hex(4)}",
                                                "amount": "50000", "currency": "IDR", "occurred_at": now_iso()})
    assert returned.status_code == 201, returned.text
    assert (tier_code(partner, member), standing(partner, member)["qualifying"]) == ("SILVER", "60")

    # Nothing moves before the review date; at it, the member goes to what 60 points qualify for.
    tiers.review_due(db, review - timedelta(days=1))
    assert tier_code(partner, member) == "SILVER"
    tiers.review_due(db, review)
    assert tier_code(partner, member) is None
    assert history(db, member) == [(None, "SILVER", "qualified"), ("SILVER", None, "review")]
    assert events(db, member)[-1][:3] == ("SILVER", None, "review")
    # Reviewing again at the same moment changes nothing.
    assert tiers.review_due(db, review)["changed"] == 0
    assert len(history(db, member)) == 2


def test_a_member_who_still_qualifies_keeps_the_tier_until_the_next_review(db, partner):
    publish(db, partner, {"tiers": TIERS})
    member = partner.enrol()
    buy(partner, member, "600000")  # 600 points: Gold straight away
    assert history(db, member) == [(None, "GOLD", "qualified")]
    review = next_january()
    tiers.review_due(db, review)
    after = standing(partner, member)
    assert after["tier"]["code"] == "GOLD"
    assert after["next_review_at"] == months.start(months.index(review) + 12).isoformat().replace("+00:00", "Z")
    assert len(history(db, member)) == 1


def test_exclusive_rewards_and_a_tier_upgrade_bought_with_points(db, partner):
    listening(partner)
    publish(db, partner, {"tiers": TIERS})
    member = partner.enrol()
    buy(partner, member, "300000")  # 300 points: Silver
    lounge = in_house(partner, kind="experience", name="Lounge", points=100, min_tier="GOLD")
    listed = {r["code"]: r for r in partner.api.get("/v1/rewards", program=partner.program, limit=200).json()["items"]}
    assert listed[lounge]["min_tier"] == "GOLD"
    not_exclusive = partner.api.post("/v1/rewards", {"code": unique_code("R"), "kind": "experience", "name": "x",
                                                     "program": partner.program, "points": 1, "min_tier": "SILVER"})
    assert_problem(not_exclusive, 422, "invalid-reward")
    assert_problem(redeem(partner, member, lounge), 403, "tier-required")

    upgrade = in_house(partner, kind="tier_upgrade", name="Gold for a year", points=50, tier="GOLD")
    assert redeem(partner, member, upgrade).status_code == 201
    assert tier_code(partner, member) == "GOLD"
    assert history(db, member)[-1] == ("SILVER", "GOLD", "reward")
    assert events(db, member)[-1][:3] == ("SILVER", "GOLD", "reward")
    assert redeem(partner, member, lounge).status_code == 201
    assert partner.balance(member)["available"] == 150
    # An upgrade to a tier the member holds is refused, and costs nothing.
    assert_problem(redeem(partner, member, upgrade), 409, "tier-already-held")
    assert partner.balance(member)["available"] == 150
    # The bought tier lasts until the review, where 300 points qualify for Silver again.
    tiers.review_due(db, next_january())
    assert tier_code(partner, member) == "SILVER"


def test_tier_answers_are_the_partners_own(db, partner, other_partner):
    member = partner.enrol()
    assert_problem(partner.api.get(f"/v1/members/{member}/tier", program=partner.program), 404, "no-tiers")
    publish(db, partner, {"tiers": TIERS})
    assert_problem(other_partner.api.get(f"/v1/members/{member}/tier", program=partner.program), 404,
                   "member-not-found")


def _breakage(db, partner) -> int:
    with db.read() as s:
        account = s.scalar(select(Program.breakage_account_id).where(Program.code == partner.program))
        return ledger.balance(s, account).credits_posted


def test_the_expiry_job_moves_expired_points_to_breakage_once(db, partner):
    publish(db, partner, {"expiry": {"policy": "end_of_month"}})
    member = partner.enrol()
    buy(partner, member, "300000")  # 300 points, expiring at the end of this month
    assert redeem(partner, member, in_house(partner, points=100)).status_code == 201  # spends 100 of them
    month_end = months.start(months.index(utcnow()) + 1)
    soon = partner.api.get(f"/v1/members/{member}/expiring", program=partner.program).json()
    assert soon == {"program": partner.program,
                    "items": [{"expires_at": month_end.isoformat().replace("+00:00", "Z"), "points": 200}]}

    expiry.run(db, month_end - timedelta(seconds=1))
    assert partner.balance(member)["available"] == 200
    expiry.run(db, month_end)
    assert partner.balance(member)["available"] == 0
    assert _breakage(db, partner) == 200
    moves = partner.api.get(f"/v1/members/{member}/history").json()["items"]
    assert (moves[0]["code"], moves[0]["points"], moves[0]["ref_type"]) == ("expire", -200, "expiry")
    expiry.run(db, month_end)  # again: nothing more
    assert _breakage(db, partner) == 200
    with db.read() as s:
        assert verify(s).ok


def test_members_are_told_what_expires_soon_once(db, http, partner):
    publish(db, partner, {"tiers": TIERS, "expiry": {"policy": "end_of_month", "notice_days": 40}})
    member = partner.enrol()
    buy(partner, member, "150000")  # 150 points: Silver; they expire at the end of the month
    account_login, _ = log_in(db, member_id=uuid.UUID(member))
    with db.read() as s:
        email = s.scalar(select(MemberAccount.email).where(MemberAccount.id == account_login.account_id))

    expiry.notify(db)
    expiry.notify(db)  # once per expiry date
    with db.read() as s:
        sent = mail.latest(s, to=email)
    month_end = months.start(months.index(utcnow()) + 1)
    assert [m.subject for m in sent] == [f"150 {partner.program} points expire on {month_end:%Y-%m-%d}"]

    me = member_api(http, partner, member, scope="me:read")
    (mine,) = me.get("/v1/me/tiers").json()["items"]
    assert (mine["program"], mine["tier"]["code"], mine["qualifying"]) == (partner.program, "SILVER", "150")
    (expiring,) = me.get("/v1/me/expiring").json()["items"]
    assert expiring["items"] == [{"expires_at": month_end.isoformat().replace("+00:00", "Z"), "points": 150}]


def test_a_purchase_without_tiers_touches_no_tier_table_and_expiry_writes_nothing(db, partner):
    publish(db, partner, {"expiry": {"policy": "end_of_month"}})  # rules, expiry, but no tiers
    member = partner.enrol()
    with statements_run(db) as statements:
        buy(partner, member, "10000")
    # Seen on SQLite: the resolve query, which reads the rules' newest version (on PostgreSQL
    # the earn path's own statements bypass these events: hub.db.run).
    if db.engine.dialect.name == "sqlite":
        assert any("program_rule_versions" in s for s in statements)
    assert not [s for s in statements if any(t in s for t in ("tier_", "expiry_notices", "update memberships"))]


def test_the_jobs_from_the_command_line(db, partner, run):
    publish(db, partner, {"tiers": TIERS, "expiry": {"policy": "end_of_month"}})
    member = partner.enrol()
    buy(partner, member, "120000")  # 120 points: Silver
    month_end = months.start(months.index(utcnow()) + 1).isoformat()
    first = run("expiry", "run", "--now", month_end)
    assert first.exit_code == 0 and "points expired" in first.output
    assert partner.balance(member)["available"] == 0
    assert "0 points expired from 0 accounts" in run("expiry", "run", "--now", month_end).output
    review = run("tiers", "review", "--now", next_january().isoformat())
    assert review.exit_code == 0 and "reviewed" in review.output
    assert tier_code(partner, member) == "SILVER"  # 120 points in the review's window: still Silver
    refused = run("expiry", "run", "--now", "2027-01-01T00:00:00")  # no zone
    assert refused.exit_code == 2 and "time zone" in refused.output


def test_concurrent_purchases_of_one_member_count_every_point_and_move_up_once(db, partner):
    publish(db, partner, {"tiers": TIERS})
    member = partner.enrol()
    actor = actor_of(partner, db)
    bodies = [partner.purchase_body(member, "60000", occurred_at=now_iso()) for _ in range(THREADS)]  # 60 each

    def post(body):
        return db.write(lambda s: earning.earn(s, actor, [(0, body)]))[0].status

    with ThreadPoolExecutor(THREADS) as pool:
        assert list(pool.map(post, bodies)) == ["created"] * THREADS
    # 8 x 60 = 480 points: Silver (100) once, never Gold (500).
    assert standing(partner, member)["qualifying"] == str(60 * THREADS)
    assert history(db, member) == [(None, "SILVER", "qualified")]


def test_a_review_that_keeps_the_tier_does_not_overwrite_a_concurrent_upgrade(db, partner, monkeypatch):
    publish(db, partner, {"tiers": TIERS})
    member = partner.enrol()
    buy(partner, member, "120000")  # 120 points: Silver, reviewed next January
    review = next_january()
    upgraded_review = months.start(months.index(review) + 5)
    read_standings = tiers._standings

    def upgraded_meanwhile(session, where, first, last):
        # Between the review's read of this member and its write, a purchase moves them to
        # Gold with its own review date (as a concurrent transaction committing would).
        found = read_standings(session, where, first, last)
        if [s.member_id for s in found] == [uuid.UUID(member)]:
            session.execute(Membership.__table__.update().where(Membership.id == found[0].membership_id)
                            .values(tier="GOLD", tier_review_at=upgraded_review))
        return found

    monkeypatch.setattr(tiers, "_standings", upgraded_meanwhile)
    tiers.review_due(db, review)
    monkeypatch.undo()
    after = standing(partner, member)
    assert (after["tier"]["code"], after["next_review_at"]) == ("GOLD", upgraded_review.isoformat().replace("+00:00", "Z"))


def test_a_batch_spanning_two_rule_versions_qualifies_everyone_by_the_levels_in_force_now(db, partner):
    start = utcnow()
    def publish_at(document, effective_from):
        def work(s):
            program_id = s.scalar(select(Program.id).where(Program.code == partner.program))
            versions.publish(s, program_id, document, created_by="test", effective_from=effective_from)
        db.write(work)

    publish_at({"tiers": TIERS}, start - timedelta(seconds=50))  # Silver at 100 points
    cheaper = {**TIERS, "levels": [{**TIERS["levels"][0], "threshold": 50}, TIERS["levels"][1]]}
    publish_at({"tiers": cheaper}, start)  # Silver at 50 points from now on
    early, late = partner.enrol(), partner.enrol()
    # 60 points each: the first rated under the old version, the second under the new.
    items = [partner.purchase_body(early, "60000", occurred_at=(start - timedelta(seconds=30)).isoformat()),
             partner.purchase_body(late, "60000", occurred_at=now_iso())]
    response = partner.api.post("/v1/transactions/batch", {"items": items})
    assert response.status_code == 200, response.text
    assert (tier_code(partner, early), tier_code(partner, late)) == ("SILVER", "SILVER")
