"""Stamp cards, streaks, welcome and referral bonuses, engagement events and members'
progress, through the HTTP API (issue 6, points 3-5)."""
from __future__ import annotations

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.db import utcnow
from hub.errors import Invalid
from hub.ledger.verify import verify
from hub.programs import earning
from hub import ledger
from hub.ledger.models import Transfer
from hub.programs.models import Membership, Program
from hub.rules import versions
from hub.rules.frequency_models import Referral
from hub.rules.models import Award, RuleVersion
from tests.conftest import Api, assert_problem, statements_run
from tests.integration.oidc_support import Browser, RelyingParty, log_in
from tests.integration.test_oidc import register, sign_in
from tests.integration.test_concurrency import actor_of

REFERRAL = {"referrer_points": 300, "referee_points": 100, "qualifying": {"min_amount": "50000"},
            "max_per_referrer": {"count": 5, "per": "month"}}


def program_id(db, partner) -> uuid.UUID:
    with db.read() as s:
        return s.scalar(select(Program.id).where(Program.code == partner.program))


def publish(db, partner, document: dict, since: timedelta | None = None) -> None:
    """Rules in force from now, or (`since`) from that long ago: a test's stand-in for rules
    published in the past (publish itself refuses to backdate)."""
    pid = program_id(db, partner)
    if since is None:
        db.write(lambda s: versions.publish(s, pid, document, created_by="test"))
        return

    def backdated(s):
        latest = versions.latest_version(s, pid) or 0
        s.add(RuleVersion(program_id=pid, version=latest + 1, effective_from=utcnow() - since,
                          document=document, created_by="test"))
    db.write(backdated)


def now_iso(ago: timedelta = timedelta(0)) -> str:
    return (utcnow() - ago).isoformat().replace("+00:00", "Z")


def buy(partner, member: str, amount: str, at: str | None = None, **extra) -> dict:
    body = partner.purchase_body(member, amount, occurred_at=at or now_iso(), **extra)
    response = partner.api.post("/v1/transactions", body)
    assert response.status_code == 201, response.text
    return response.json()


def progress(partner, member: str) -> dict:
    response = partner.api.get(f"/v1/members/{member}/progress", program=partner.program)
    assert response.status_code == 200, response.text
    return response.json()


def awards(db, partner, kind: str) -> list[tuple[int, str]]:
    with db.read() as s:
        return sorted((a.points, a.reason) for a in s.scalars(select(Award).where(
            Award.program_id == program_id(db, partner), Award.kind == kind)))


def ledger_ok(db) -> None:
    with db.read() as s:
        assert verify(s).ok


# --- stamp cards --------------------------------------------------------------------------

def test_the_nth_qualifying_purchase_completes_the_card_and_starts_a_new_one(db, partner):
    publish(db, partner, {"stamp_cards": [{"id": "coffee", "name": "4th coffee on us", "stamps": 3,
                                           "when": {"categories": ["coffee"]}, "reward": {"bonus_points": 50}}]})
    member = partner.enrol()
    coffee = {"items": [{"category": "coffee", "amount": "10000"}]}
    buy(partner, member, "10000", **coffee)
    buy(partner, member, "10000", items=[{"category": "cake", "amount": "10000"}])  # does not qualify
    buy(partner, member, "10000", **coffee)
    assert progress(partner, member)["stamp_cards"] == [
        {"id": "coffee", "name": "4th coffee on us", "stamps": 2, "of": 3, "completed": 0}]
    buy(partner, member, "10000", **coffee)
    assert progress(partner, member)["stamp_cards"][0] | {"name": None} == {
        "id": "coffee", "name": None, "stamps": 0, "of": 3, "completed": 1}
    assert partner.balance(member)["posted"] == 4 * 10 + 50
    for _ in range(3):
        buy(partner, member, "10000", **coffee)
    assert progress(partner, member)["stamp_cards"][0]["completed"] == 2
    assert partner.balance(member)["posted"] == 7 * 10 + 100
    assert awards(db, partner, "stamp") == [(50, "Stamp card completed: 4th coffee on us")] * 2
    ledger_ok(db)


def test_a_card_that_does_not_repeat_completes_once(db, partner):
    publish(db, partner, {"stamp_cards": [{"id": "once", "name": "Starter", "stamps": 2, "repeat": False,
                                           "when": {"min_amount": "5000"}, "reward": {"bonus_points": 20}}]})
    member = partner.enrol()
    buy(partner, member, "4000")  # below min_amount
    for _ in range(5):
        buy(partner, member, "5000")
    assert progress(partner, member)["stamp_cards"][0] | {"name": None} == {
        "id": "once", "name": None, "stamps": 0, "of": 2, "completed": 1}
    assert partner.balance(member)["posted"] == 4 + 5 * 5 + 20


def test_a_card_can_issue_a_free_in_house_reward_as_a_voucher(db, partner):
    reward = f"R{secrets.token_hex(3).upper()}"
    made = partner.api.post("/v1/rewards", {"code": reward, "kind": "free_product", "name": "Free latte",
                                            "program": partner.program, "points": 400})
    assert made.status_code == 201, made.text
    publish(db, partner, {"stamp_cards": [{"id": "latte", "name": "Latte card", "stamps": 2,
                                           "reward": {"reward_code": reward}}]})
    member = partner.enrol()
    buy(partner, member, "10000")
    buy(partner, member, "10000")
    (voucher,) = progress(partner, member)["vouchers"]
    assert voucher["reward"] == reward and voucher["reward_name"] == "Free latte"
    assert len(voucher["code"]) == 14 and not set(voucher["code"]) & set("01OIL")
    # Free: the member spent nothing, and the award that issued it says what it was.
    assert partner.balance(member)["posted"] == 20
    assert awards(db, partner, "stamp") == [(0, "Stamp card completed: Latte card: free Free latte")]


def test_concurrent_purchases_of_one_member_complete_a_card_exactly_once(db, partner):
    publish(db, partner, {"stamp_cards": [{"id": "race", "name": "Race", "stamps": 5,
                                           "reward": {"bonus_points": 1000}}]})
    member = partner.enrol()
    actor = actor_of(partner, db)
    bodies = [partner.purchase_body(member, "1000", occurred_at=now_iso()) for _ in range(12)]

    def post(body):
        return db.write(lambda s: earning.earn(s, actor, [(0, body)]))[0].status

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(post, bodies)) == ["created"] * 12
    # 12 stamps on a 5-stamp card: 2 completions, 2 stamps on the third card.
    assert progress(partner, member)["stamp_cards"][0]["stamps"] == 2
    assert progress(partner, member)["stamp_cards"][0]["completed"] == 2
    assert partner.balance(member)["posted"] == 12 + 2000
    ledger_ok(db)


# --- streaks ------------------------------------------------------------------------------

def test_a_streak_of_consecutive_days_earns_its_bonus_once_per_run(db, partner):
    publish(db, partner, {"streaks": [{"id": "daily", "period": "day", "length": 3, "bonus_points": 70}]},
            since=timedelta(days=30))
    member = partner.enrol()
    day = timedelta(days=1)
    buy(partner, member, "1000", at=now_iso(10 * day))
    buy(partner, member, "1000", at=now_iso(8 * day))  # a gap: a new run starts
    buy(partner, member, "1000", at=now_iso(7 * day))
    buy(partner, member, "1000", at=now_iso(7 * day - timedelta(minutes=1)))  # same day: no change
    assert awards(db, partner, "streak") == []
    buy(partner, member, "1000", at=now_iso(6 * day))
    assert awards(db, partner, "streak") == [(70, "Streak: 3 days in a row")]
    buy(partner, member, "1000", at=now_iso(5 * day))
    buy(partner, member, "1000", at=now_iso(4 * day))
    buy(partner, member, "1000", at=now_iso(3 * day))  # 6 in a row: the second bonus
    assert awards(db, partner, "streak") == [(70, "Streak: 3 days in a row")] * 2
    # The run ended 3 days ago: it shows broken.
    assert progress(partner, member)["streaks"] == [
        {"id": "daily", "period": "day", "run": 0, "length": 3, "completed": False}]
    buy(partner, member, "1000", at=now_iso())
    assert progress(partner, member)["streaks"][0]["run"] == 1
    ledger_ok(db)


# --- welcome ------------------------------------------------------------------------------

def test_the_welcome_bonus_is_paid_once_per_membership(db, partner):
    publish(db, partner, {"welcome": {"points": 250}})
    body = {"program": partner.program, "external_id": f"w-{secrets.token_hex(4)}"}
    first = partner.api.post("/v1/members", body, key="welcome-1")
    again = partner.api.post("/v1/members", body, key="welcome-1")
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    member = first.json()["id"]
    assert_problem(partner.api.post("/v1/members", {**body, "member_id": member, "external_id": "x2"}),
                   409, "already-enrolled")
    assert partner.balance(member)["posted"] == 250
    assert awards(db, partner, "welcome") == [(250, f"Welcome to Program {partner.program}")]
    ledger_ok(db)


def test_no_welcome_bonus_without_the_section(db, partner):
    member = partner.enrol()
    assert partner.balance(member)["posted"] == 0


# --- referrals ----------------------------------------------------------------------------

def referral_code(partner, member: str) -> str:
    response = partner.api.get(f"/v1/members/{member}/referral-code", program=partner.program)
    assert response.status_code == 200, response.text
    return response.json()["code"]


def enrol_referred(partner, code: str, **identifiers) -> str:
    identifiers = identifiers or {"external_id": f"r-{secrets.token_hex(4)}"}
    response = partner.api.post("/v1/members", {"program": partner.program, "referral_code": code, **identifiers})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_both_sides_are_paid_once_on_the_referees_first_qualifying_purchase(db, partner):
    publish(db, partner, {"referral": REFERRAL})
    referrer = partner.enrol()
    code = referral_code(partner, referrer)
    assert referral_code(partner, referrer) == code and len(code) == 8
    referee = enrol_referred(partner, code.lower())  # codes are read case-insensitively
    assert progress(partner, referee)["referral"]["referred_by"] == {"state": "pending", "reason": None}
    buy(partner, referee, "20000")  # below the qualifying amount: the referral waits
    assert partner.balance(referrer)["posted"] == 0
    buy(partner, referee, "50000")
    buy(partner, referee, "90000")
    assert partner.balance(referee)["posted"] == 20 + 50 + 90 + 100
    assert partner.balance(referrer)["posted"] == 300
    mine = progress(partner, referrer)["referral"]
    assert mine["code"] == code and mine["offered"] is True
    assert mine["referred"] == {"pending": 0, "paid": 1, "refused": 0, "expired": 0, "reversed": 0}
    ledger_ok(db)


def test_an_unknown_referral_code_enrols_nobody(db, partner):
    publish(db, partner, {"referral": REFERRAL})
    external_id = f"u-{secrets.token_hex(4)}"
    response = partner.api.post("/v1/members", {"program": partner.program, "referral_code": "ZZZZZZZZ",
                                                "external_id": external_id})
    assert_problem(response, 422, "referral-code-unknown")
    assert partner.api.get("/v1/members", external_id=external_id).json()["items"] == []


def second_program(ops, partner) -> str:
    """Another program of the same partner (where the same person may be known already)."""
    code = f"G{secrets.token_hex(4).upper()}"
    assert ops.post("/v1/programs", {"partner": partner.code, "code": code, "name": "Second", "point_value": "1",
                                     "earn_rule": {"currency": "IDR", "points_per_unit": "0.001"}}).status_code == 201
    return code


def test_a_referee_sharing_the_referrers_email_is_refused_and_the_reason_kept(db, ops, partner):
    publish(db, partner, {"referral": REFERRAL})
    second = second_program(ops, partner)
    email = f"same-{secrets.token_hex(3)}@example.com"
    made = partner.api.post("/v1/members", {"program": second, "email": email})
    referrer = made.json()["id"]
    assert partner.api.post("/v1/members", {"program": partner.program, "member_id": referrer,
                                            "external_id": f"e-{secrets.token_hex(3)}"}).status_code == 201
    referee = enrol_referred(partner, referral_code(partner, referrer), email=email.upper())
    buy(partner, referee, "60000")
    assert progress(partner, referee)["referral"]["referred_by"] == {
        "state": "refused", "reason": "self-referral: the referee's email is the referrer's"}
    held = partner.api.get(f"/v1/members/{referrer}/balances").json()["items"]
    assert [b["posted"] for b in held] == [0, 0] and partner.balance(referee)["posted"] == 60


def test_an_existing_member_enrolling_by_id_is_compared_by_the_identifiers_of_all_their_programs(db, ops, partner):
    publish(db, partner, {"referral": REFERRAL})
    second = second_program(ops, partner)
    phone = f"+6281{secrets.randbelow(10**8):08d}"
    referrer = partner.api.post("/v1/members", {"program": partner.program, "phone": phone}).json()["id"]
    # The same person, known under the same phone in the second program, enrols by member id
    # with an identifier the referrer does not have.
    referee = partner.api.post("/v1/members", {"program": second, "phone": phone}).json()["id"]
    enrolled = partner.api.post("/v1/members", {"program": partner.program, "member_id": referee,
                                                "referral_code": referral_code(partner, referrer),
                                                "external_id": f"x-{secrets.token_hex(3)}"})
    assert enrolled.status_code == 201, enrolled.text
    buy(partner, referee, "60000")
    assert progress(partner, referee)["referral"]["referred_by"] == {
        "state": "refused", "reason": "self-referral: the referee's phone is the referrer's"}
    assert partner.balance(referrer)["posted"] == 0


def test_a_batch_looks_up_its_pending_referrals_in_one_query(db, partner):
    publish(db, partner, {"referral": REFERRAL})
    referrer = partner.enrol()
    code = referral_code(partner, referrer)
    referees = [enrol_referred(partner, code) for _ in range(3)]
    others = [partner.enrol() for _ in range(3)]
    items = [partner.purchase_body(m, "60000", occurred_at=now_iso()) for m in referees + others + referees]
    with statements_run(db) as seen:
        response = partner.api.post("/v1/transactions/batch", {"items": items})
    assert response.status_code == 200, response.text
    lookups = [s for s in seen if s.lstrip().startswith("select") and "from referrals" in s
               and "referrals.referee_membership_id" in s]
    assert len(lookups) == 1  # not one per purchase
    # Each referee's first purchase paid once, the second one nothing more.
    assert [partner.balance(m)["posted"] for m in referees] == [60 + 60 + 100] * 3
    assert partner.balance(referrer)["posted"] == 3 * 300
    ledger_ok(db)


def give_back(partner, purchase: dict, amount: str) -> dict:
    response = partner.api.post("/v1/returns", {"purchase": {"id": purchase["id"]}, "return_id": f"r-{secrets.token_hex(4)}",
                                                "amount": amount, "currency": partner.currency, "occurred_at": now_iso()})
    assert response.status_code == 201, response.text
    return response.json()


def reversals(db, member: str) -> list[int]:
    """The bonus_reversal transfers out of the member's accounts."""
    with db.read() as s:
        return [t.amount for t in s.scalars(
            select(Transfer).join(Membership, Membership.account_id == Transfer.debit_account_id)
            .where(Membership.member_id == uuid.UUID(member), Transfer.code == "bonus_reversal"))]


def test_a_fully_returned_first_purchase_takes_both_referral_bonuses_back_once(db, partner):
    publish(db, partner, {"referral": REFERRAL})
    referrer = partner.enrol()
    referee = enrol_referred(partner, referral_code(partner, referrer))
    paying = buy(partner, referee, "60000")  # 60 points, and the bonuses: 100 to the referee, 300 to the referrer
    other = buy(partner, referee, "40000")  # 40 more points
    assert (partner.balance(referee)["posted"], partner.balance(referrer)["posted"]) == (200, 300)
    give_back(partner, paying, "30000")  # a part: the bonuses stay
    assert (partner.balance(referee)["posted"], partner.balance(referrer)["posted"]) == (170, 300)
    assert progress(partner, referee)["referral"]["referred_by"]["state"] == "paid"
    give_back(partner, paying, "30000")  # the rest: fully returned
    assert (partner.balance(referee)["posted"], partner.balance(referrer)["posted"]) == (40, 0)
    assert progress(partner, referee)["referral"]["referred_by"] == {
        "state": "reversed",
        "reason": "the qualifying purchase was fully returned: bonus points taken back: referee 100 of 100, referrer 300 of 300"}
    assert progress(partner, referrer)["referral"]["referred"]["reversed"] == 1
    give_back(partner, other, "40000")  # another return: nothing more is taken back
    assert (reversals(db, referee), reversals(db, referrer)) == ([100], [300])
    ledger_ok(db)


def test_a_referral_bonus_already_spent_is_taken_back_as_far_as_held(db, partner):
    publish(db, partner, {"referral": REFERRAL})
    referrer = partner.enrol()
    referee = enrol_referred(partner, referral_code(partner, referrer))
    paying = buy(partner, referee, "60000")
    # The referrer spends 250 of their 300 bonus points (a transfer out stands in for a redemption).
    pid = program_id(db, partner)
    with db.read() as s:
        account = s.scalar(select(Membership.account_id).where(Membership.member_id == uuid.UUID(referrer),
                                                               Membership.program_id == pid))
        issuance = s.scalar(select(Program.issuance_account_id).where(Program.id == pid))
    db.write(lambda s: ledger.post(s, [ledger.TransferSpec(debit=account, credit=issuance, amount=250, code="test",
                                                           ledger=pid, caused_by="test")]))
    give_back(partner, paying, "60000")
    assert (partner.balance(referee)["posted"], partner.balance(referrer)["posted"]) == (0, 0)
    assert progress(partner, referee)["referral"]["referred_by"]["reason"] == (
        "the qualifying purchase was fully returned: bonus points taken back: referee 100 of 100, "
        "referrer 50 of 300 (the rest was already spent)")
    ledger_ok(db)


def test_a_return_in_a_program_without_referrals_touches_no_referral_table(db, partner):
    publish(db, partner, {"welcome": {"points": 10}})
    member = partner.enrol()
    bought = buy(partner, member, "10000")
    with statements_run(db) as seen:
        give_back(partner, bought, "10000")
    assert any("point_transactions" in s for s in seen)
    assert not [s for s in seen if "referral" in s or "point_awards" in s]


def test_a_referrer_is_paid_up_to_the_cap_and_the_rest_is_refused(db, partner):
    publish(db, partner, {"referral": {**REFERRAL, "max_per_referrer": {"count": 1, "per": "lifetime"}}})
    referrer = partner.enrol()
    code = referral_code(partner, referrer)
    first, second = enrol_referred(partner, code), enrol_referred(partner, code)
    buy(partner, first, "50000")
    buy(partner, second, "50000")
    assert partner.balance(referrer)["posted"] == 300
    assert partner.balance(second)["posted"] == 50
    assert progress(partner, second)["referral"]["referred_by"] == {
        "state": "refused", "reason": "the referrer reached the cap of 1 paid referrals in all"}
    assert progress(partner, referrer)["referral"]["referred"] == {"pending": 0, "paid": 1, "refused": 1, "expired": 0, "reversed": 0}


def test_a_first_purchase_after_the_window_expires_the_referral(db, partner):
    publish(db, partner, {"referral": {**REFERRAL, "window_days": 7}})
    referrer = partner.enrol()
    referee = enrol_referred(partner, referral_code(partner, referrer))
    db.write(lambda s: s.execute(update(Referral).where(Referral.code == referral_code(partner, referrer))
                                 .values(enrolled_at=utcnow() - timedelta(days=8))))
    buy(partner, referee, "50000")
    assert progress(partner, referee)["referral"]["referred_by"]["state"] == "expired"
    assert partner.balance(referrer)["posted"] == 0


def test_referral_codes_need_a_referral_program(partner):
    member = partner.enrol()
    assert_problem(partner.api.get(f"/v1/members/{member}/referral-code", program=partner.program),
                   422, "referrals-not-offered")


# --- engagement ---------------------------------------------------------------------------

ENGAGEMENT = {"engagement": {"review": {"points": 40, "daily_cap": 2}, "app_download": {"points": 500, "once": True}}}


def event(partner, member: str, kind: str, event_id: str | None = None, at: str | None = None):
    return partner.api.post("/v1/engagement-events", {
        "program": partner.program, "member": {"member_id": member}, "kind": kind,
        "event_id": event_id or f"e-{secrets.token_hex(6)}", "occurred_at": at or now_iso()})


def test_engagement_events_are_deduplicated_by_the_partners_id(db, partner):
    publish(db, partner, ENGAGEMENT)
    member = partner.enrol()
    at = now_iso()
    first = event(partner, member, "review", "rev-1", at)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["points"], body["capped"], body["reason"]) == (40, False, "Points for a review")
    again = event(partner, member, "review", "rev-1", at)
    assert again.status_code == 200 and again.json() == body
    assert_problem(event(partner, member, "survey", "rev-1", at), 409, "duplicate-event")
    assert partner.balance(member)["posted"] == 40


def test_a_daily_cap_and_a_once_only_kind_record_events_with_no_points(db, partner):
    publish(db, partner, ENGAGEMENT)
    member = partner.enrol()
    points = [event(partner, member, "review").json() for _ in range(3)]
    assert [(e["points"], e["capped"]) for e in points] == [(40, False), (40, False), (0, True)]
    assert points[2]["reason"] == "daily cap reached: 2 review event(s) rewarded per day"
    installs = [event(partner, member, "app_download") for _ in range(2)]
    assert [r.status_code for r in installs] == [201, 201]
    assert [(r.json()["points"], r.json()["capped"]) for r in installs] == [(500, False), (0, True)]
    assert partner.balance(member)["posted"] == 80 + 500
    ledger_ok(db)


def test_an_engagement_kind_the_program_does_not_offer_is_refused(db, partner, other_partner):
    publish(db, partner, ENGAGEMENT)
    member = partner.enrol()
    assert_problem(event(partner, member, "survey"), 422, "engagement-kind-not-offered")
    # Another partner cannot post for this partner's program or see its member's progress.
    stranger = other_partner.api.post("/v1/engagement-events", {
        "program": partner.program, "member": {"member_id": member}, "kind": "review",
        "event_id": "x", "occurred_at": now_iso()})
    assert_problem(stranger, 404, "program-not-found")
    assert_problem(other_partner.api.get(f"/v1/members/{member}/progress", program=partner.program),
                   404, "program-not-found")
    assert_problem(other_partner.api.get(f"/v1/members/{member}/referral-code", program=partner.program),
                   404, "program-not-found")


# --- linting ------------------------------------------------------------------------------

def test_publishing_refuses_what_the_linters_find_with_their_paths(db, partner):
    pid = program_id(db, partner)
    with pytest.raises(Invalid) as raised:
        db.write(lambda s: versions.publish(s, pid, {"referral": {"referrer_points": 1, "referee_points": 1}},
                                            created_by="test"))
    assert raised.value.extra["errors"] == [{"path": "/referral/max_per_referrer",
                                             "message": 'a referral bonus with no cap per referrer needs "allow_unbounded": true'}]


# --- the member's own view ----------------------------------------------------------------

def test_a_member_sees_their_own_progress_and_referral_code(app, db, ops, partner):
    publish(db, partner, {"referral": REFERRAL,
                          "stamp_cards": [{"id": "c", "name": "Card", "stamps": 4, "reward": {"bonus_points": 5}}]})
    member = partner.enrol()
    buy(partner, member, "1000")
    brand = register(ops, partner.code, scopes=["openid", "me:read"])
    rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb",
                      scope="openid me:read")
    me = Api(partner.api.http, sign_in(Browser(app, log_in(db, member_id=uuid.UUID(member))[1]), rp)["access_token"])
    made = me.get("/v1/me/referral-code", program=partner.program)
    assert made.status_code == 200, made.text
    assert made.json() == {"program": partner.program, "code": referral_code(partner, member)}
    (mine,) = me.get("/v1/me/progress").json()["items"]
    assert mine["member_id"] is None and mine["referral"]["code"] == made.json()["code"]
    assert mine["stamp_cards"] == [{"id": "c", "name": "Card", "stamps": 1, "of": 4, "completed": 0}]
    assert_problem(me.get("/v1/me/referral-code", program="NOPE"), 404, "membership-not-found")
    # A partner's token is not a member's.
    assert partner.api.get("/v1/me/progress").status_code in (401, 403)


# --- cost on the earn path ----------------------------------------------------------------

def test_a_purchase_in_a_program_without_these_features_touches_none_of_their_tables(db, partner):
    publish(db, partner, {"welcome": {"points": 10}})  # rules, but nothing that follows a purchase
    member = partner.enrol()
    with statements_run(db) as seen:
        buy(partner, member, "10000")
    # Seen on SQLite: the resolve query, which reads the rules' newest version (on PostgreSQL
    # the earn path's own statements bypass these events: hub.db.run).
    if db.engine.dialect.name == "sqlite":
        assert any("program_rule_versions" in s for s in seen)
    assert not [s for s in seen if any(t in s for t in ("stamp_progress", "streak_progress", "referral"))]
