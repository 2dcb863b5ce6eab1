"""Purchases earn points through the API; refusals write nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.ledger.models import Transfer
from tests.conftest import assert_problem


def transfer_count(db) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Transfer))


def test_purchase_earns_points_rounded_down(partner):
    member = partner.enrol()
    txn = partner.buy(member, "45999.99")
    assert txn["points"] == 45
    assert txn["kind"] == "purchase" and txn["amount"] == "45999.99"
    assert partner.balance(member) == {
        "program": partner.program, "posted": 45, "pending": 0, "available": 45, "value": "450"
    }


def test_same_transaction_id_never_earns_twice(partner):
    member = partner.enrol()
    body = partner.purchase_body(member, "10000", txn="pos-1")
    first = partner.api.post("/v1/transactions", body)
    again = partner.api.post("/v1/transactions", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    changed = partner.api.post("/v1/transactions", {**body, "amount": "20000"})
    assert_problem(changed, 409, "duplicate-transaction")
    assert partner.balance(member)["posted"] == 10


def test_idempotency_key_replays_and_rejects_other_body(partner):
    member = partner.enrol()
    body = partner.purchase_body(member, "5000")
    first = partner.api.post("/v1/transactions", body, key="k-1")
    replay = partner.api.post("/v1/transactions", body, key="k-1")
    assert first.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert replay.json() == first.json()
    other = partner.api.post("/v1/transactions", {**body, "transaction_id": "x-2"}, key="k-1")
    assert_problem(other, 422, "idempotency-key-reused")
    assert partner.balance(member)["posted"] == 5


@pytest.mark.parametrize(
    "change, status, slug",
    [
        ({"amount": "-5"}, 400, "invalid-request"),
        ({"amount": 100}, 400, "invalid-request"),
        ({"amount": "1e9"}, 400, "invalid-request"),
        ({"amount": "9999999999999999"}, 400, "invalid-request"),
        ({"amount": "0"}, 422, "invalid-amount"),
        ({"amount": "10.001"}, 422, "invalid-amount"),
        ({"currency": "XYZ"}, 422, "unknown-currency"),
        ({"currency": "USD"}, 422, "currency-not-accepted"),
        ({"currency": "idr"}, 400, "invalid-request"),
        ({"occurred_at": "2099-01-01T00:00:00Z"}, 422, "invalid-time"),
        ({"occurred_at": "2026-11-01T10:00:00"}, 400, "invalid-request"),
        ({"occurred_at": "yesterday"}, 400, "invalid-request"),
        ({"unknown_field": 1}, 400, "invalid-request"),
        ({"member": {"external_id": "nobody"}}, 404, "member-not-found"),
        ({"member": {"external_id": "a", "card_number": "123456"}}, 400, "invalid-request"),
        ({"program": "NOPE"}, 404, "program-not-found"),
        ({"channel": "phone"}, 400, "invalid-request"),
        ({"items": [{"category": "coffee"}]}, 400, "invalid-request"),
        ({"items": [{"category": "coffee", "amount": "1001"}]}, 422, "items-exceed-amount"),
        ({"items": [{"category": "coffee", "amount": "600"}, {"category": "cake", "amount": "401"}]},
         422, "items-exceed-amount"),
    ],
)
def test_bad_purchase_is_a_clear_problem_and_writes_nothing(partner, db, change, status, slug):
    member = partner.enrol()
    before = transfer_count(db)
    response = partner.api.post("/v1/transactions", {**partner.purchase_body(member, "1000"), **change})
    assert_problem(response, status, slug)
    assert transfer_count(db) == before
    assert partner.balance(member)["posted"] == 0


def test_malformed_json_is_a_400(partner):
    response = partner.api.post(
        "/v1/transactions", content=b'{"program": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_history_pages_newest_first(partner):
    member = partner.enrol()
    for amount in ("1000", "2000", "3000"):
        partner.buy(member, amount)
    page = partner.api.get(f"/v1/members/{member}/history", limit=2).json()
    assert [m["points"] for m in page["items"]] == [3, 2]
    rest = partner.api.get(f"/v1/members/{member}/history", limit=2, cursor=page["next_cursor"]).json()
    assert [m["points"] for m in rest["items"]] == [1] and rest["next_cursor"] is None
    assert all(m["code"] == "earn" and m["status"] == "posted" for m in page["items"])


def test_times_are_written_back_in_utc(partner):
    member = partner.enrol()
    body = partner.purchase_body(member, "1000", occurred_at="2026-11-01T17:00:00+07:00")
    created = partner.api.post("/v1/transactions", body).json()
    assert created["occurred_at"] == "2026-11-01T10:00:00Z"
    assert partner.api.get(f"/v1/transactions/{created['id']}").json()["occurred_at"] == "2026-11-01T10:00:00Z"
    (movement,) = partner.api.get(f"/v1/members/{member}/history").json()["items"]
    assert movement["hub_transaction_id"] == created["id"]


def test_channel_and_lines_are_kept_and_part_of_the_purchase(partner):
    member = partner.enrol()
    lines = [{"category": "coffee", "amount": "30000", "sku": "LATTE-L", "quantity": 2},
             {"category": "cake", "amount": "12000"}]
    body = {**partner.purchase_body(member, "45000", txn="pos-lines"), "channel": "in_store", "items": lines}
    first = partner.api.post("/v1/transactions", body)
    assert first.status_code == 201
    shown = [{**lines[0], "amount": "30000.00"}, {**lines[1], "amount": "12000.00"}]  # IDR has cents
    assert first.json()["channel"] == "in_store" and first.json()["items"] == shown
    assert partner.api.post("/v1/transactions", body).status_code == 200
    assert partner.api.get(f"/v1/transactions/{first.json()['id']}").json()["items"] == shown
    for change in ({"channel": "online"}, {"items": lines[:1]}):
        assert_problem(partner.api.post("/v1/transactions", {**body, **change}), 409, "duplicate-transaction")
