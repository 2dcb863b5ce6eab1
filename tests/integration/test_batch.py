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


def test_large_batch_duplicates_are_found_every_time(partner):
    """More than db.MANY_VALUES items: the duplicate check binds the ids as one array on
    PostgreSQL (a lookup per id on the unique index). Repeated past psycopg's prepare threshold
    and PostgreSQL's switch to a generic plan, it still finds each prior purchase, and only
    those: the old ones are duplicates, the new ones created, a changed one refused."""
    from hub.db import MANY_VALUES

    member = partner.enrol()
    n = MANY_VALUES + 10
    first = [partner.purchase_body(member, "1000", txn=f"big-{i}") for i in range(n)]
    body = partner.api.post("/v1/transactions/batch", {"items": first}).json()
    assert body["created"] == n
    for round_ in range(12):
        fresh = [partner.purchase_body(member, "1000", txn=f"big-{round_}-{i}") for i in range(5)]
        changed = {**first[round_], "amount": "2000"}
        items = first[:n - 1] + fresh + [changed]
        body = partner.api.post("/v1/transactions/batch", {"items": items}).json()
        assert (body["created"], body["duplicates"], body["failed"]) == (5, n - 1, 1), body
        assert body["results"][-1]["problem"]["type"].endswith("/duplicate-transaction")
    assert partner.balance(member)["posted"] == n + 12 * 5
