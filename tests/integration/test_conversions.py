"""Conversions between hub programs through the API: rates, pairs, quotes, execution."""
from __future__ import annotations

import dataclasses
import secrets
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from hub import ledger, pagination
from hub.db import utcnow
from hub.exchange import conversions
from hub.ledger.verify import verify
from hub.programs import service
from hub.programs.models import Membership, MembershipIdentifier, Program
from tests.conftest import Api, assert_problem
from tests.integration.oidc_support import Browser, RelyingParty, log_in
from tests.integration.test_oidc import register, sign_in


def join(db, program_code: str, member_id: str, external_id: str | None = None) -> None:
    """Give an existing member a membership in another partner's program, as account
    linking does (partners cannot enrol each other's members)."""
    def write(s):
        program = s.scalar(select(Program).where(Program.code == program_code))
        account = ledger.open_account(s, program.id, service.MEMBER_ACCOUNT, cached=True, no_overdraft=True)
        membership = Membership(member_id=uuid.UUID(member_id), program_id=program.id, account_id=account)
        s.add(membership)
        s.flush()
        s.add(MembershipIdentifier(membership_id=membership.id, program_id=program.id, kind="external_id",
                                   value=external_id or f"x-{secrets.token_hex(6)}"))
    db.write(write)


@pytest.fixture
def pair(ops, make_partner, db):
    """Two programs (A worth 10 units a point, B worth 4), a member of both with 5,000 A
    points, and the pair A -> B open with a 1% fee, minimum 1,000 in steps of 100."""
    a, b = make_partner(point_value="10"), make_partner(point_value="4")
    member = a.enrol()
    join(db, b.program, member)
    a.buy(member, "5000000")  # 1 point per 1,000 IDR
    response = ops.http.put(f"/v1/conversions/pairs/{a.program}/{b.program}", headers=ops.headers,
                            json={"open": True, "fee_bps": 100, "min_points": 1000, "increment": 100})
    assert response.status_code == 200, response.text
    return a, b, member


def quote(a, b, member, points):
    return a.api.post("/v1/conversions/quotes",
                      {"from": a.program, "to": b.program, "points": points, "member": {"member_id": member}})


def test_convert_moves_both_legs_at_the_published_rate(pair, db):
    a, b, member = pair
    q = quote(a, b, member, 1000)
    assert q.status_code == 201, q.text
    body = q.json()
    # 1000 x 10 = 10,000 units, less 1% = 9,900 units, / 4 = 2,475 B points.
    assert (body["receive"], body["fee_units"]) == (2475, "100")
    done = a.api.post("/v1/conversions", {"quote": body["quote"]}, key="c-1")
    assert done.status_code == 201, done.text
    assert done.json()["state"] == "completed"
    assert a.balance(member)["available"] == 4000
    assert b.balance(member)["available"] == 2475
    again = a.api.post("/v1/conversions", {"quote": body["quote"]}, key="c-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert_problem(a.api.post("/v1/conversions", {"quote": body["quote"]}), 409, "quote-used")
    with db.read() as s:
        assert verify(s).ok


def test_rates_list_shows_open_pairs_with_an_example_and_the_rate_history(pair, ops):
    a, b, _ = pair
    listed = a.api.get("/v1/conversions/rates", program=a.program).json()["items"]
    assert listed == [{
        "from": a.program, "to": b.program, "open": True, "from_value": "10", "to_value": "4", "fee_bps": 100,
        "min_points": 1000, "increment": 100, "example": {"points": 100, "receive": 247, "fee_units": "10"},
        "updated_at": listed[0]["updated_at"]}]
    assert ops.post("/v1/conversions/rates", {"program": b.program, "point_value": "5"}).status_code == 201
    history = a.api.get(f"/v1/conversions/rates/{b.program}", limit=1).json()
    assert [r["point_value"] for r in history["items"]] == ["5"]
    older = a.api.get(f"/v1/conversions/rates/{b.program}", cursor=history["next_cursor"]).json()
    assert [r["point_value"] for r in older["items"]] == ["4"] and older["next_cursor"] is None
    assert a.api.get("/v1/conversions/rates", program=a.program).json()["items"][0]["example"]["receive"] == 198


@pytest.mark.parametrize("points, status, slug", [
    (900, 422, "below-minimum"),        # under the pair's minimum of 1,000
    (1050, 422, "off-increment"),       # not in steps of 100
    (6000, 409, "insufficient-points"),  # the member holds 5,000
])
def test_refused_quotes(pair, points, status, slug):
    a, b, member = pair
    assert_problem(quote(a, b, member, points), status, slug)


def test_same_program_closed_direction_and_another_partners_program_are_refused(pair, db):
    a, b, member = pair
    same = a.api.post("/v1/conversions/quotes", {"from": a.program, "to": a.program, "points": 1000,
                                                 "member": {"member_id": member}})
    assert_problem(same, 422, "same-program")
    # B -> A was never opened; and B's points are not A's to spend.
    back = b.api.post("/v1/conversions/quotes", {"from": b.program, "to": a.program, "points": 1000,
                                                 "member": {"member_id": member}})
    assert_problem(back, 422, "conversion-closed")
    theirs = b.api.post("/v1/conversions/quotes", {"from": a.program, "to": b.program, "points": 1000,
                                                   "member": {"member_id": member}})
    assert_problem(theirs, 404, "program-not-found")


def balances(a, b, member):
    return a.balance(member)["available"], b.balance(member)["available"]


def test_an_executed_quote_is_refused_when_expired_stale_closed_tampered_or_short(pair, ops, db, settings):
    a, b, member = pair
    before = balances(a, b, member)
    fresh = quote(a, b, member, 1000).json()["quote"]
    # Expired: the same terms, signed by the hub, but past their expiry.
    doc = conversions.Quote.read(settings.secret_key, fresh)
    expired = dataclasses.replace(doc, expires_at=utcnow() - timedelta(seconds=1)).sign(settings.secret_key)
    assert_problem(a.api.post("/v1/conversions", {"quote": expired}), 409, "quote-expired")
    # Tampered: more points out than quoted.
    forged = dataclasses.replace(doc, points_out=doc.points_out + 1).sign("not the hub's key")
    assert_problem(a.api.post("/v1/conversions", {"quote": forged}), 422, "invalid-quote")
    # The rate of B moved after the quote.
    assert ops.post("/v1/conversions/rates", {"program": b.program, "point_value": "4.5"}).status_code == 201
    assert_problem(a.api.post("/v1/conversions", {"quote": fresh}), 409, "quote-stale")
    # The pair closed after the quote.
    fresh = quote(a, b, member, 1000).json()["quote"]
    ops.http.put(f"/v1/conversions/pairs/{a.program}/{b.program}", headers=ops.headers, json={"open": False})
    assert_problem(a.api.post("/v1/conversions", {"quote": fresh}), 422, "conversion-closed")
    ops.http.put(f"/v1/conversions/pairs/{a.program}/{b.program}", headers=ops.headers,
                 json={"open": True, "fee_bps": 100, "min_points": 1000, "increment": 100})
    # The points were spent between the quote and its execution.
    first, second = (quote(a, b, member, 3000).json()["quote"] for _ in range(2))
    assert a.api.post("/v1/conversions", {"quote": first}).status_code == 201
    assert_problem(a.api.post("/v1/conversions", {"quote": second}), 409, "insufficient-points")
    assert balances(a, b, member) == (before[0] - 3000, before[1] + 6600)  # 3000 x 10 x 0.99 / 4.5
    with db.read() as s:
        assert verify(s).ok


def test_both_legs_show_in_the_histories_and_to_both_partners(pair, make_partner):
    a, b, member = pair
    done = a.api.post("/v1/conversions", {"quote": quote(a, b, member, 2000).json()["quote"]}).json()
    legs = []
    for partner in (a, b):
        moves = partner.api.get(f"/v1/members/{member}/history").json()["items"]
        legs += [(m["program"], m["points"], m["code"]) for m in moves if m["ref_id"] == done["id"]]
        assert all(m["ref_type"] == "conversion" for m in moves if m["ref_id"] == done["id"])
        assert partner.api.get(f"/v1/conversions/{done['id']}").json()["receive"] == 4950
        assert [c["id"] for c in partner.api.get("/v1/conversions").json()["items"]] == [done["id"]]
    assert sorted(legs) == sorted([(a.program, -2000, "conversion"), (b.program, 4950, "conversion")])
    stranger = make_partner()
    assert_problem(stranger.api.get(f"/v1/conversions/{done['id']}"), 404, "conversion-not-found")
    assert stranger.api.get("/v1/conversions").json()["items"] == []


def test_a_member_converts_their_own_points_with_their_token(app, db, ops, pair):
    a, b, member = pair
    brand = register(ops, a.code, scopes=["openid", "me:read", "me:points"])
    rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb",
                      scope="openid me:read me:points")
    browser = Browser(app, log_in(db, member_id=uuid.UUID(member))[1])
    me = Api(a.api.http, sign_in(browser, rp)["access_token"])
    made = me.post("/v1/conversions/quotes", {"from": a.program, "to": b.program, "points": 1000})
    assert made.status_code == 201, made.text
    done = me.post("/v1/conversions", {"quote": made.json()["quote"]})
    # A brand holds the token: it never gets the hub's member id.
    assert done.status_code == 201 and done.json()["member_id"] is None and made.json()["member_id"] is None
    assert [c["id"] for c in me.get("/v1/conversions").json()["items"]] == [done.json()["id"]]
    # Another member's quote is not theirs to execute.
    other = a.enrol()
    join(db, b.program, other)
    a.buy(other, "2000000")
    theirs = quote(a, b, other, 1000).json()["quote"]
    assert_problem(me.post("/v1/conversions", {"quote": theirs}), 422, "invalid-quote")


def test_conversions_list_in_pages_newest_first_and_refuse_a_foreign_cursor(pair):
    a, b, member = pair
    made = []
    for _ in range(3):
        done = a.api.post("/v1/conversions", {"quote": quote(a, b, member, 1000).json()["quote"]})
        assert done.status_code == 201, done.text
        made.append(done.json()["id"])
    first = a.api.get("/v1/conversions", member_id=member, limit=2).json()
    second = a.api.get("/v1/conversions", member_id=member, limit=2, cursor=first["next_cursor"]).json()
    assert [c["id"] for c in first["items"] + second["items"]] == made[::-1] and second["next_cursor"] is None
    # Another list's cursor (a program code); a naive time; a time out of range in UTC; an id
    # that is no UUID. The last two were 500s.
    for foreign in (a.program, ["2026-01-01T00:00:00", str(uuid.uuid4())],
                    ["0001-01-01T00:00:00+14:00", str(uuid.uuid4())], ["2026-01-01T00:00:00Z", 5]):
        assert_problem(a.api.get("/v1/conversions", cursor=pagination.encode(foreign)), 422, "invalid-cursor")


def test_a_rate_changed_and_changed_back_still_refuses_the_quote(pair, ops):
    a, b, member = pair
    old = quote(a, b, member, 1000).json()["quote"]
    for value in ("4.5", "4"):  # back to the quoted value
        assert ops.post("/v1/conversions/rates", {"program": b.program, "point_value": value}).status_code == 201
    assert_problem(a.api.post("/v1/conversions", {"quote": old}), 409, "quote-stale")
    # The pair re-priced (its minimum) is a change of terms too; a fresh quote goes through.
    fresh = quote(a, b, member, 1000).json()["quote"]
    ops.http.put(f"/v1/conversions/pairs/{a.program}/{b.program}", headers=ops.headers,
                 json={"open": True, "fee_bps": 100, "min_points": 500, "increment": 100})
    assert_problem(a.api.post("/v1/conversions", {"quote": fresh}), 409, "quote-stale")
    assert a.api.post("/v1/conversions", {"quote": quote(a, b, member, 1000).json()["quote"]}).status_code == 201
