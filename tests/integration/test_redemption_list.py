"""GET /v1/redemptions: a partner's programs' orders newest first, page by page, filtered by
member or state, never with a voucher or card code."""
from __future__ import annotations

from tests.conftest import assert_problem
from tests.integration.test_redemptions import in_house, rich_member


def redeem(partner, member, reward):
    done = partner.api.post("/v1/redemptions", {"reward": reward, "program": partner.program,
                                                "member": {"member_id": member}})
    assert done.status_code == 201, done.text
    return done.json()


def test_orders_newest_first_by_page_filtered_and_without_delivery(partner, other_partner, ops):
    ana, budi = rich_member(partner), rich_member(partner)
    reward = in_house(partner)
    made = [redeem(partner, ana, reward), redeem(partner, budi, reward), redeem(partner, ana, reward)]
    first = partner.api.get("/v1/redemptions", limit=2).json()
    second = partner.api.get("/v1/redemptions", limit=2, cursor=first["next_cursor"]).json()
    assert [o["id"] for o in first["items"] + second["items"]] == [o["id"] for o in reversed(made)]
    assert second["next_cursor"] is None
    assert all(o["delivery"] is None for o in first["items"] + second["items"])
    assert first["items"][0] == {**made[2], "delivery": None}  # the order's view, without the voucher
    anas = partner.api.get("/v1/redemptions", member_id=ana).json()["items"]
    assert [o["id"] for o in anas] == [made[2]["id"], made[0]["id"]]
    assert partner.api.get("/v1/redemptions", state="needs_review").json()["items"] == []
    # Another partner sees none of them; ops see them all.
    assert other_partner.api.get("/v1/redemptions", member_id=ana).json()["items"] == []
    assert {o["id"] for o in ops.get("/v1/redemptions", member_id=ana).json()["items"]} == {
        made[0]["id"], made[2]["id"]}
    assert_problem(partner.api.get("/v1/redemptions", cursor="bm90LWEtY3Vyc29y"), 422, "invalid-cursor")
