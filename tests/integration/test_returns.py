"""Returns reverse proportional points; reversals never exceed what was earned."""
from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import ledger
from hub.ledger.verify import verify
from tests.conftest import assert_problem


def post_return(partner, purchase: dict, amount: str, return_id: str | None = None, **ref):
    body = {
        "purchase": ref or {"id": purchase["id"]},
        "return_id": return_id or f"r-{secrets.token_hex(6)}",
        "amount": amount,
        "currency": partner.currency,
        "occurred_at": "2026-11-02T10:00:00Z",
    }
    return partner.api.post("/v1/returns", body)


def test_partial_returns_reverse_proportionally_and_add_up_exactly(partner):
    member = partner.enrol()
    purchase = partner.buy(member, "99999")  # 99 points
    first = post_return(partner, purchase, "33334")
    assert first.status_code == 201, first.text
    # kept = floor(99 x 66665 / 99999) = 65, so 34 are reversed (rounding favours the coalition)
    assert first.json()["points"] == 34 and first.json()["points_shortfall"] == 0
    second = post_return(partner, purchase, "66665", program=partner.program, transaction_id=purchase["transaction_id"])
    assert second.json()["points"] == 65
    assert partner.balance(member)["posted"] == 0
    state = partner.api.get(f"/v1/transactions/{purchase['id']}").json()
    assert (state["refunded_amount"], state["points_reversed"]) == ("99999.00", 99)


def test_a_return_larger_than_the_rest_of_the_purchase_is_refused(partner):
    member = partner.enrol()
    purchase = partner.buy(member, "10000")
    assert post_return(partner, purchase, "6000").status_code == 201
    too_much = post_return(partner, purchase, "4000.01")
    assert_problem(too_much, 422, "return-exceeds-purchase")
    assert partner.balance(member)["posted"] == 4


def test_a_repeated_return_id_reverses_once(partner):
    member = partner.enrol()
    purchase = partner.buy(member, "10000")
    first = post_return(partner, purchase, "5000", return_id="ret-1")
    again = post_return(partner, purchase, "5000", return_id="ret-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert post_return(partner, purchase, "4000", return_id="ret-1").status_code == 409
    assert partner.balance(member)["posted"] == 5


def test_points_already_spent_are_a_shortfall_not_a_negative_balance(partner, db):
    member = partner.enrol()
    purchase = partner.buy(member, "10000")  # 10 points
    # Reserve 8 of them, as a redemption would.
    with db.read() as s:
        from hub.programs.models import Membership, Program

        program = s.query(Program).filter_by(code=partner.program).one()
        account = s.query(Membership).filter_by(member_id=uuid.UUID(member)).one().account_id
    spec = ledger.TransferSpec(account, program.issuance_account_id, 8, "redemption", program.id, "test")
    db.write(lambda s: ledger.reserve(s, [spec], timedelta(hours=1)))
    response = post_return(partner, purchase, "10000")
    assert response.status_code == 201
    assert (response.json()["points"], response.json()["points_shortfall"]) == (2, 8)
    assert partner.balance(member)["available"] == 0


def test_returns_of_unknown_or_foreign_purchases_are_404(partner, other_partner):
    member = partner.enrol()
    purchase = partner.buy(member, "10000")
    assert post_return(other_partner, purchase, "1000").status_code == 404
    assert post_return(partner, {"id": str(uuid.uuid4())}, "1000").status_code == 404
    bad_ref = post_return(partner, purchase, "1000", program=partner.program)
    assert_problem(bad_ref, 422, "invalid-purchase-ref")
    wrong_currency = partner.api.post(
        "/v1/returns",
        {"purchase": {"id": purchase["id"]}, "return_id": "x", "amount": "1", "currency": "USD",
         "occurred_at": "2026-11-02T10:00:00Z"},
    )
    assert_problem(wrong_currency, 422, "currency-mismatch")


operations = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(0, 2), st.integers(1, 500_000)),
        st.tuples(st.just("return"), st.integers(0, 30), st.integers(1, 100)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_random_earns_and_returns_keep_the_ledger_verified(make_partner, db, ops):
    partner = make_partner(points_per_unit="0.0137")
    members = [partner.enrol() for _ in range(3)]
    purchases, earned = [], {m: 0 for m in members}
    for op in ops:
        if op[0] == "buy":
            member = members[op[1]]
            txn = partner.buy(member, str(op[2]))
            purchases.append({**txn, "left": op[2]})
            earned[member] += txn["points"]
        elif purchases:
            purchase = purchases[op[1] % len(purchases)]
            amount = max(1, purchase["left"] * op[2] // 100)
            response = post_return(partner, purchase, str(amount))
            if amount > purchase["left"] or purchase["left"] == 0:
                assert response.status_code == 422
                continue
            assert response.status_code == 201, response.text
            purchase["left"] -= amount
            earned[purchase["member_id"]] -= response.json()["points"]
    for member in members:
        assert partner.balance(member)["posted"] == earned[member]
    for purchase in purchases:
        state = partner.api.get(f"/v1/transactions/{purchase['id']}").json()
        assert 0 <= state["points_reversed"] <= state["points"]
        if purchase["left"] == 0:
            assert state["points_reversed"] == state["points"]
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations


def test_a_return_dated_before_its_purchase_is_refused(partner):
    member = partner.enrol()
    purchase = partner.buy(member, "10000")  # occurred 2026-11-01T10:00Z
    early = partner.api.post("/v1/returns", {"purchase": {"id": purchase["id"]}, "return_id": "early", "amount": "1",
                                              "currency": partner.currency, "occurred_at": "2026-10-31T10:00:00Z"})
    assert_problem(early, 422, "return-before-purchase")
