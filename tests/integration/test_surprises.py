"""Surprise rewards: ops grant a member points with a reason, once per surprise_id."""
from __future__ import annotations

import pytest

from hub.ledger.verify import verify
from tests.conftest import Api, assert_problem


def surprise(api: Api, program: str, member: dict, points: int = 500, reason: str = "Sorry your latte was late",
             surprise_id: str = "s-1", key: str | None = None):
    return api.post(f"/v1/programs/{program}/surprises",
                    {"member": member, "points": points, "reason": reason, "surprise_id": surprise_id}, key=key)


def test_ops_grant_a_surprise_once(ops, partner, db):
    member = partner.enrol(external_id="ext-surprise-1")
    first = surprise(ops, partner.program, {"external_id": "ext-surprise-1"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["member_id"], body["points"], body["reason"], body["surprise_id"], body["program"]) == (
        member, 500, "Sorry your latte was late", "s-1", partner.program)
    again = surprise(ops, partner.program, {"member_id": member})  # the same member, named otherwise
    assert again.status_code == 200 and again.json() == body
    assert partner.balance(member)["posted"] == 500

    for changed in ({"points": 501}, {"reason": "Another reason"}, {"member": {"member_id": partner.enrol()}}):
        args = {"member": {"member_id": member}, **changed}
        assert_problem(surprise(ops, partner.program, **args), 409, "surprise-conflict")
    assert partner.balance(member)["posted"] == 500
    with db.read() as s:
        assert verify(s).ok


def test_a_retry_with_its_idempotency_key_replays(ops, partner):
    member = partner.enrol()
    first = surprise(ops, partner.program, {"member_id": member}, key="surprise-k")
    again = surprise(ops, partner.program, {"member_id": member}, key="surprise-k")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert partner.balance(member)["posted"] == 500


@pytest.mark.parametrize("points, status, slug", [(0, 400, "invalid-request"), (-5, 400, "invalid-request"),
                                                  (100_001, 422, "surprise-too-large")])
def test_points_are_bounded(ops, partner, points, status, slug):
    member = partner.enrol()
    assert_problem(surprise(ops, partner.program, {"member_id": member}, points=points), status, slug)
    assert partner.balance(member)["posted"] == 0


def test_the_largest_surprise_is_allowed(ops, partner):
    member = partner.enrol()
    assert surprise(ops, partner.program, {"member_id": member}, points=100_000).status_code == 201
    assert partner.balance(member)["posted"] == 100_000


def test_only_ops_grant_surprises(ops, partner, other_partner):
    member = partner.enrol()
    assert_problem(surprise(partner.api, partner.program, {"member_id": member}), 403, "insufficient-scope")
    assert_problem(surprise(other_partner.api, partner.program, {"member_id": member}), 403, "insufficient-scope")
    assert partner.balance(member)["posted"] == 0


def test_refusals_name_what_is_missing(ops, partner, other_partner, make_partner):
    stranger = other_partner.enrol()
    assert_problem(surprise(ops, "NOSUCHPROGRAM", {"member_id": stranger}), 404, "program-not-found")
    # A member of another program is no member of this one.
    assert_problem(surprise(ops, partner.program, {"member_id": stranger}), 404, "member-not-found")
    assert_problem(surprise(ops, partner.program, {"member_id": stranger}, reason="   "), 400, "invalid-request")
    hosted = make_partner(hosted_by="lcp")
    assert_problem(surprise(ops, hosted.program, {"external_id": "x-1"}), 422, "program-hosted")
    assert other_partner.balance(stranger)["posted"] == 0


def test_the_same_surprise_id_in_two_programs_is_two_surprises(ops, partner, other_partner):
    mine, theirs = partner.enrol(), other_partner.enrol()
    assert surprise(ops, partner.program, {"member_id": mine}).status_code == 201
    assert surprise(ops, other_partner.program, {"member_id": theirs}).status_code == 201
    assert (partner.balance(mine)["posted"], other_partner.balance(theirs)["posted"]) == (500, 500)
