"""Member-to-member transfers inside one program (family sharing) through the API: the ledger
move, the program's limits and every refusal, idempotency, tenancy, visibility, the member's own
token, and concurrent transfers of one sender against the daily limit (PostgreSQL)."""
from __future__ import annotations

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from hub.actor import Actor
from hub.db import utcnow
from hub.errors import Conflict
from hub.exchange import transfers
from hub.exchange.models import MemberTransfer
from hub.ledger.verify import verify
from hub.programs import service
from hub.programs.models import Partner as PartnerRow
from tests.conftest import Api, assert_problem, unique_code
from tests.integration.oidc_support import Browser, RelyingParty, log_in
from tests.integration.oidc_support import SCOPE as MEMBER_SCOPE
from tests.integration.test_oidc import register, sign_in


def set_policy(api: Api, program: str, max_points, daily_limit):
    return api.http.put(f"/v1/programs/{program}/transfer-policy", headers=api.headers,
                        json={"max_points": max_points, "daily_limit": daily_limit})


def give(api: Api, program: str, to: dict, points: int, sender: str | None = None, key: str | None = None,
         **extra):
    """POST a transfer; `sender`: the member id a partner names in `from`."""
    body = {"program": program, "to": to, "points": points, **extra}
    if sender:
        body["from"] = {"member_id": sender}
    return api.post("/v1/member-transfers", body, key=key)


def ledger_ok(db) -> bool:
    with db.read() as s:
        return verify(s).ok


@pytest.fixture
def family(partner):
    """A program open to transfers (at most 500 a transfer, 1,000 a day per sender) and three
    members: Ana with 1,000 points, Budi (known by phone) and Citra with none."""
    assert set_policy(partner.api, partner.program, 500, 1000).status_code == 200
    ana, budi, citra = partner.enrol(), partner.enrol(phone=f"+62811{secrets.randbelow(10**7):07d}"), partner.enrol()
    partner.buy(ana, "1000000")  # 1 point per 1,000 IDR
    return partner, ana, budi, citra


def available(partner, *members) -> list[int]:
    return [partner.balance(m)["available"] for m in members]


def test_a_transfer_moves_points_between_members_and_shows_in_both_histories(family, db):
    partner, ana, budi, _ = family
    phone = partner.api.get(f"/v1/members/{budi}").json()["memberships"][0]["identifiers"]["phone"]
    done = give(partner.api, partner.program, {"phone": phone}, 300, key="gift-1",
                sender=ana, note="for your birthday")
    assert done.status_code == 201, done.text
    body = done.json()
    assert {k: body[k] for k in ("program", "from_member_id", "to_member_id", "points", "note")} == {
        "program": partner.program, "from_member_id": ana, "to_member_id": budi, "points": 300,
        "note": "for your birthday"}
    assert available(partner, ana, budi) == [700, 300]
    for member, points in ((ana, -300), (budi, 300)):
        (latest, *_) = partner.api.get(f"/v1/members/{member}/history").json()["items"]
        assert (latest["code"], latest["points"], latest["ref_type"], latest["ref_id"]) == (
            "transfer", points, "member_transfer", body["id"])
    assert partner.api.get(f"/v1/member-transfers/{body['id']}").json() == body

    # The same key and body: the first answer again, and nothing moves twice.
    again = give(partner.api, partner.program, {"phone": phone}, 300, key="gift-1",
                 sender=ana, note="for your birthday")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert_problem(give(partner.api, partner.program, {"phone": phone}, 301, key="gift-1",
                        sender=ana), 422, "idempotency-key-reused")
    assert available(partner, ana, budi) == [700, 300]
    assert ledger_ok(db)


def test_every_refusal_moves_nothing(family, make_partner, db):
    partner, ana, budi, citra = family
    outsider = make_partner().enrol()  # a member of another partner's program only
    refusals = [
        ({"member_id": ana}, 10, ana, 422, "same-member"),
        ({"external_id": "nobody-has-this"}, 10, ana, 404, "member-not-found"),
        ({"member_id": str(uuid.uuid4())}, 10, ana, 404, "member-not-found"),
        ({"member_id": outsider}, 10, ana, 404, "member-not-found"),
        ({"member_id": budi}, 501, ana, 422, "transfer-too-large"),
        ({"member_id": budi}, 10, None, 422, "member-required"),  # a partner names the sender
        ({"member_id": budi}, 10, citra, 409, "insufficient-points"),  # Citra holds nothing
    ]
    for to, points, sender, status, slug in refusals:
        assert_problem(give(partner.api, partner.program, to, points, sender=sender), status, slug)
    # Closed: both caps lifted is no transfers at all.
    assert set_policy(partner.api, partner.program, None, None).json()["open"] is False
    assert_problem(give(partner.api, partner.program, {"member_id": budi}, 10, sender=ana), 422, "transfers-closed")
    assert available(partner, ana, budi, citra) == [1000, 0, 0]
    assert partner.api.get("/v1/member-transfers", member_id=ana).json()["items"] == []
    assert ledger_ok(db)


def test_partner_hosted_programs_offer_no_transfers(partner, db):
    code = unique_code("H")
    db.write(lambda s: service.create_program(s, partner_code=partner.code, code=code, name="Hosted", hosted_by="x",
                                              point_value=Decimal("1"), earn_currency="IDR", earn_rate=Decimal("0"), by="test"))
    members = [partner.api.post("/v1/members", {"program": code, "external_id": f"h-{i}"}).json()["id"]
               for i in range(2)]
    assert_problem(set_policy(partner.api, code, 10, 10), 422, "program-hosted")
    assert_problem(give(partner.api, code, {"member_id": members[1]}, 1, sender=members[0]),
                   422, "program-hosted")


def test_the_daily_limit_counts_a_senders_transfers_of_the_last_24_hours(family, db):
    partner, ana, budi, citra = family
    partner.buy(ana, "1000000")  # 2,000 points: the limit, not the balance, is what refuses
    for to in (budi, citra):
        assert give(partner.api, partner.program, {"member_id": to}, 400, sender=ana).status_code == 201
    # 800 of 1,000 given: 300 more would pass the limit; the problem says what is left.
    over = assert_problem(give(partner.api, partner.program, {"member_id": budi}, 300, sender=ana), 409,
                          "daily-limit-reached")
    assert (over["daily_limit"], over["remaining"]) == (1000, 200)
    assert available(partner, ana, budi, citra) == [1200, 400, 400]
    assert give(partner.api, partner.program, {"member_id": budi}, 200, sender=ana).status_code == 201
    assert_problem(give(partner.api, partner.program, {"member_id": citra}, 1, sender=ana), 409, "daily-limit-reached")
    # The limit is each sender's own: Budi gives on his.
    assert give(partner.api, partner.program, {"member_id": ana}, 500,
                sender=budi).status_code == 201
    # A day later Ana's transfers no longer count (rolling 24 hours).
    db.write(lambda s: s.execute(update(MemberTransfer).where(MemberTransfer.from_member_id == uuid.UUID(ana))
                                 .values(created_at=utcnow() - timedelta(hours=24, seconds=1))))
    assert give(partner.api, partner.program, {"member_id": citra}, 500, sender=ana).status_code == 201
    assert available(partner, ana, budi, citra) == [1000, 100, 900]
    assert ledger_ok(db)


def test_transfer_policy_by_the_owner_or_ops(partner, other_partner, ops):
    answer = set_policy(partner.api, partner.program, None, 250)
    assert answer.status_code == 200, answer.text
    policy = {"program": partner.program, "open": True, "max_points": None, "daily_limit": 250}
    assert answer.json() == policy
    (program,) = partner.api.get("/v1/programs").json()["items"]
    assert program["transfer_policy"] == policy
    # Ops set any program's; a partner only its own.
    assert set_policy(ops, partner.program, 100, None).json()["max_points"] == 100
    assert_problem(set_policy(other_partner.api, partner.program, 1, 1), 404, "program-not-found")
    assert_problem(set_policy(ops, "NOSUCHPROGRAM", 1, 1), 404, "program-not-found")
    assert_problem(set_policy(partner.api, partner.program, 300, 200), 422, "invalid-transfer-policy")
    assert_problem(set_policy(partner.api, partner.program, 0, 200), 400, "invalid-request")
    bad = partner.api.http.put(f"/v1/programs/{partner.program}/transfer-policy", headers=partner.api.headers,
                               json={"max_points": 10})
    assert_problem(bad, 400, "invalid-request")  # both caps, always: a forgotten one must not close it
    assert partner.api.get("/v1/programs").json()["items"][0]["transfer_policy"]["max_points"] == 100


def test_another_partners_program_and_transfers_are_not_found(family, other_partner):
    partner, ana, budi, _ = family
    done = give(partner.api, partner.program, {"member_id": budi}, 10, sender=ana).json()
    b = other_partner.api
    assert_problem(give(b, partner.program, {"member_id": budi}, 10, sender=ana), 404,
                   "program-not-found")
    # Naming A's members in B's own program finds nobody.
    assert set_policy(b, other_partner.program, 10, 10).status_code == 200
    assert_problem(give(b, other_partner.program, {"member_id": budi}, 10, sender=ana), 404,
                   "member-not-found")
    assert_problem(b.get(f"/v1/member-transfers/{done['id']}"), 404, "member-transfer-not-found")
    assert b.get("/v1/member-transfers").json()["items"] == []
    assert b.get("/v1/member-transfers", member_id=ana).json()["items"] == []


def test_lists_page_newest_first_for_the_partner_and_ops(family, make_partner, ops):
    partner, ana, budi, citra = family
    made = [give(partner.api, partner.program, {"member_id": to}, 10, sender=ana).json() for to in (budi, citra, budi)]
    made.append(give(partner.api, partner.program, {"member_id": citra}, 5, sender=budi).json())
    # Another partner's transfer, which only ops see besides it.
    other = make_partner()
    x, y = other.enrol(), other.enrol()
    other.buy(x, "100000")
    set_policy(other.api, other.program, 50, 50)
    theirs = give(other.api, other.program, {"member_id": y}, 7, sender=x).json()

    first = partner.api.get("/v1/member-transfers", limit=3).json()
    rest = partner.api.get("/v1/member-transfers", limit=3, cursor=first["next_cursor"]).json()
    assert [t["id"] for t in first["items"] + rest["items"]] == [t["id"] for t in made[::-1]]
    assert rest["next_cursor"] is None
    # Sent or received: Budi received two and gave one.
    budis = partner.api.get("/v1/member-transfers", member_id=budi).json()["items"]
    assert [t["id"] for t in budis] == [made[3]["id"], made[2]["id"], made[0]["id"]]
    assert ops.get("/v1/member-transfers", member_id=x).json()["items"] == [theirs]
    assert ops.get(f"/v1/member-transfers/{made[0]['id']}").json() == made[0]
    assert_problem(partner.api.get("/v1/member-transfers", cursor=first["next_cursor"][:-2]), 422, "invalid-cursor")


# --- the member's own token -------------------------------------------------------------

@pytest.fixture
def brand(ops, family):
    """The partner's brand site, which may ask members for me:points."""
    return register(ops, family[0].code, scopes=[*MEMBER_SCOPE.split(), "me:points"])


def member_api(app, http, db, brand, member_id: str, scope: str = MEMBER_SCOPE + " me:points") -> Api:
    """The member signs in on the brand's site, which asks for `scope`: their API client."""
    browser = Browser(app, log_in(db, member_id=uuid.UUID(member_id))[1])
    rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb", scope=scope)
    return Api(http, sign_in(browser, rp)["access_token"])


def test_a_member_gives_their_own_points_with_their_token(app, http, db, family, brand, make_partner):
    partner, ana, budi, citra = family
    own = member_api(app, http, db, brand, ana)
    done = give(own, partner.program, {"member_id": budi}, 100, key="ana-1")
    assert done.status_code == 201, done.text
    # The brand holding the token never gets the hub's member ids: only which way it went.
    assert (done.json()["from_member_id"], done.json()["to_member_id"], done.json()["direction"]) == (
        None, None, "sent")
    assert available(partner, ana, budi) == [900, 100]
    assert_problem(give(own, partner.program, {"member_id": citra}, 1, sender=budi), 422,
                   "from-not-allowed")
    assert_problem(give(own, partner.program, {"member_id": ana}, 1), 422, "same-member")

    # Budi, on the same brand, with the same key and body: his own transfer, not Ana's answer.
    partner.buy(budi, "1000000")
    his = member_api(app, http, db, brand, budi)
    mine = give(his, partner.program, {"member_id": budi}, 100, key="ana-1")
    assert_problem(mine, 422, "same-member")  # to himself: the key is his, so it ran
    theirs = give(his, partner.program, {"member_id": citra}, 100, key="ana-1")
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers

    # Each member sees the transfers they gave or received, and no one else's.
    listed = own.get("/v1/member-transfers").json()["items"]
    assert [t["id"] for t in listed] == [done.json()["id"]]
    assert_problem(own.get(f"/v1/member-transfers/{theirs.json()['id']}"), 404, "member-transfer-not-found")
    assert {(t["id"], t["direction"]) for t in his.get("/v1/member-transfers").json()["items"]} == {
        (done.json()["id"], "received"), (theirs.json()["id"], "sent")}
    # Only in a program the member belongs to.
    elsewhere = make_partner()
    assert set_policy(elsewhere.api, elsewhere.program, 10, 10).status_code == 200
    assert_problem(give(own, elsewhere.program, {"member_id": budi}, 1), 422, "not-a-member")
    assert_problem(give(own, unique_code("G"), {"member_id": budi}, 1), 404, "program-not-found")

    # A token without me:points cannot move points, nor can a member set a policy.
    narrow = member_api(app, http, db, brand, citra, scope=MEMBER_SCOPE)
    assert_problem(give(narrow, partner.program, {"member_id": budi}, 1), 403, "insufficient-scope")
    assert_problem(set_policy(own, partner.program, None, None), 403, "insufficient-scope")
    assert ledger_ok(db)


# --- concurrency ------------------------------------------------------------------------

THREADS = 8


def test_concurrent_transfers_never_pass_the_daily_limit(family, db):
    """Many small transfers of two senders at once, each way (so the two accounts' locks are
    taken by both directions too): each sender ends at the most its limit allows. The race is
    real on PostgreSQL; SQLite runs write transactions one at a time (BEGIN IMMEDIATE), where
    the same outcome must hold too."""
    partner, ana, budi, _ = family
    partner.buy(budi, "1000000")
    assert set_policy(partner.api, partner.program, 10, 100).status_code == 200
    with db.read() as s:
        partner_id = s.scalar(select(PartnerRow.id).where(PartnerRow.code == partner.code))
    actor = Actor(partner.client_id, partner_id, frozenset({"members:write"}))
    # Ana gives 7 at a time (14 fit: 98), Budi 5 (20 fit: 100); 80 tries each.
    jobs = [(ana, budi, 7), (budi, ana, 5)] * 80

    def one(job):
        sender, recipient, points = job
        body = {"program": partner.program, "from": {"member_id": sender}, "to": {"member_id": recipient},
                "points": points}
        try:
            db.write(lambda s: transfers.send(s, actor, body))
            return sender
        except Conflict as refused:
            assert refused.slug == "daily-limit-reached"
            return None

    with ThreadPoolExecutor(THREADS) as pool:
        done = list(pool.map(one, jobs))
    assert (done.count(ana), done.count(budi)) == (14, 20)
    assert available(partner, ana, budi) == [1000 - 98 + 100, 1000 - 100 + 98]
    assert ledger_ok(db)
