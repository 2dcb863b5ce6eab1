"""Batch earning: each item stands on its own."""
from __future__ import annotations


def test_batch_reports_each_item_and_bad_items_do_not_sink_the_rest(partner):
    member = partner.enrol()
    good = partner.purchase_body(member, "10000", txn="b-1")
    items = [
        good,
        {**partner.purchase_body(member, "1000"), "unknown": 1},
        partner.purchase_body(member, "2000", txn="b-1"),  # same id, other content
        good,  # same id, same content: a duplicate
        {**partner.purchase_body(member, "3000"), "member": {"external_id": "nobody"}},
        partner.purchase_body(member, "20000", txn="b-2"),
    ]
    response = partner.api.post("/v1/transactions/batch", {"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["created", "failed", "failed", "duplicate", "failed", "created"]
    assert (body["created"], body["duplicates"], body["failed"]) == (2, 1, 3)
    slugs = [r["problem"]["type"].rsplit("/", 1)[1] for r in body["results"] if r["status"] == "failed"]
    assert slugs == ["invalid-request", "duplicate-transaction", "member-not-found"]
    assert body["results"][1]["problem"]["status"] == 400  # as the same error on a single POST
    assert body["results"][3]["transaction"]["id"] == body["results"][0]["transaction"]["id"]
    assert partner.balance(member)["posted"] == 30
    # the whole batch again: everything already there is a duplicate, nothing earns twice
    again = partner.api.post("/v1/transactions/batch", {"items": [good, items[5]]}).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert partner.balance(member)["posted"] == 30


def test_batch_limits(partner):
    member = partner.enrol()
    assert partner.api.post("/v1/transactions/batch", {"items": []}).status_code == 400
    too_many = [partner.purchase_body(member, "1") for _ in range(1001)]
    assert partner.api.post("/v1/transactions/batch", {"items": too_many}).status_code == 400
    assert partner.balance(member)["posted"] == 0
