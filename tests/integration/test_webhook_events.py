"""The events the hub emits, from where their state changes, in the same transaction:
points.earned / points.reversed (purchases, one by one and in batches, and returns),
member.linked (a member links a card to their coalition account), redemption.fulfilled /
redemption.failed (the relay's outcome), conversion.completed (a local conversion, and the
saga settling a hosted one); each delivered, signed, to the partners concerned."""
from __future__ import annotations

import uuid

import pytest
import responses
from sqlalchemy import select

from hub.audit import review_notes
from hub.audit.review_notes import ReviewNote
from hub.exchange import saga
from hub.notify import webhooks
from hub.privacy.sealed import as_stored
from hub.rewards import relay
from hub.notify.webhook_models import WebhookDelivery, WebhookEvent
from hub.exchange.hosted import RemoteResult, RemoteStatus
from hub.rewards.providers import Outcome, Status
from tests.integration.test_dashboard import (  # noqa: F401  (fixtures)
    _code_in_mail, _logged_in, _member_of, _request_id, _start, card, clock, flask_app, web_state,
)
from tests.integration.test_returns import post_return
from tests.integration.test_conversion_saga import attempt, coalition, fake, into_review  # noqa: F401  (fixtures)
from tests.integration.test_conversions import pair, quote  # noqa: F401  (fixture)
from tests.integration.test_redemptions import CARD, provider, redeem, reward_code, rich_member, run_relay  # noqa: F401
from tests.integration.test_webhooks import (  # noqa: F401  (fixtures)
    deliverer, deliveries, partner_id, receiver, register, settings_now,
)


def events(db, endpoint: dict) -> list[WebhookEvent]:
    with db.read() as s:
        return list(s.scalars(select(WebhookEvent).join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
                              .where(WebhookDelivery.endpoint_id == uuid.UUID(endpoint["id"]))
                              .order_by(WebhookEvent.created_at)))


def test_a_fulfilled_redemption_is_announced_and_delivered(partner, provider, db, deliverer, receiver):
    endpoint = register(partner.api, url="https://crm.example/hooks", event_types=["redemption.fulfilled"])
    receiver.add(responses.POST, "https://crm.example/hooks", status=200)
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    assert events(db, endpoint) == []  # nothing while the order is pending
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-1", delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"

    (event,) = events(db, endpoint)
    assert event.type == "redemption.fulfilled"
    assert event.data == {"redemption_id": order["id"], "member_id": member, "program": partner.program,
                          "reward": reward_code(db, provider), "points": 16000, "state": "fulfilled",
                          "failure": None}
    assert "ABCD-1234" not in str(event.data)  # the card stays the member's
    (delivery,) = deliveries(db, endpoint["id"])
    assert deliverer.deliver(delivery.id) == "succeeded"
    body = webhooks.verify(endpoint["secret"], receiver.calls[0].request.headers, receiver.calls[0].request.body)
    assert body["type"] == "redemption.fulfilled" and body["data"]["redemption_id"] == order["id"]


def test_a_failed_redemption_is_announced_with_the_reason(partner, provider, db):
    endpoint = register(partner.api, event_types=["redemption.failed"])
    order = redeem(partner, rich_member(partner), reward_code(db, provider), amount="25.00").json()
    provider.place_script = [Outcome(Status.FAILED, detail="402 insufficient funds")]
    assert run_relay(db, provider, order["id"]) == "failed"
    (event,) = events(db, endpoint)
    assert event.type == "redemption.failed" and event.data["state"] == "failed"
    assert "insufficient funds" in event.data["failure"]


@pytest.mark.parametrize("fulfilled, state, failure", [(False, "failed", "refunded after review"),
                                                       (True, "fulfilled", None)])
def test_an_order_settled_by_ops_tells_the_partner_no_reason_and_no_ops_user(partner, provider, db,
                                                                              fulfilled, state, failure):
    endpoint = register(partner.api, event_types=[f"redemption.{state}"])
    order = redeem(partner, rich_member(partner), reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN)]
    provider.lookup_script = [Outcome(Status.UNKNOWN)] * 3
    assert [run_relay(db, provider, order["id"]) for _ in range(4)][-1] == "needs_review"
    in_review_for = partner.api.get(f"/v1/redemptions/{order['id']}").json()["failure"]
    ops_user = f"ops:{uuid.uuid4()}"
    db.write(lambda s: relay.resolve(s, uuid.UUID(order["id"]), fulfilled=fulfilled,
                                     reason="Jane Doe at the provider says so", by=ops_user))
    (event,) = events(db, endpoint)
    assert (event.data["state"], event.data["failure"]) == (state, failure)
    shown = partner.api.get(f"/v1/redemptions/{order['id']}").json()
    assert (shown["state"], shown["failure"]) == (state, failure)
    assert "review_notes" not in shown
    for said in (str(event.data), str(shown)):
        assert "Jane Doe" not in said and ops_user not in said and ops_user.removeprefix("ops:") not in said
    with db.read() as s:  # ops' own record: who, what and why, the reason sealed at rest
        (note,) = review_notes.about(s, review_notes.REDEMPTION, uuid.UUID(order["id"]))
        stored = s.scalar(select(as_stored(ReviewNote.reason)).where(ReviewNote.subject_id == uuid.UUID(order["id"])))
    assert (note.action, note.actor, note.reason) == ("mark_fulfilled" if fulfilled else "refund", ops_user,
                                                      "Jane Doe at the provider says so")
    assert in_review_for.startswith("no definitive answer") and note.in_review_for == in_review_for
    assert "Jane" not in stored


@pytest.mark.parametrize("applied, state, failure", [(True, "completed", None),
                                                     (False, "failed", saga.NOT_APPLIED_AFTER_REVIEW)])
def test_a_conversion_settled_by_ops_tells_the_partners_no_reason_and_no_ops_user(coalition, db, ops,  # noqa: F811
                                                                                   applied, state, failure):
    c = coalition
    endpoints = [register(p.api, event_types=["conversion.completed"]) for p in (c.shop, c.airline)]
    conversion = into_review(db, c, into_airline=True)
    in_review_for = c.state(conversion)["failure"]
    ops_user, reason = f"ops:{uuid.uuid4()}", "Jane Doe at LCP says so"
    db.write(lambda s: saga.resolve(s, uuid.UUID(conversion["id"]), applied=applied, reason=reason, by=ops_user))
    said = [str(event.data) for endpoint in endpoints for event in events(db, endpoint)]
    assert len(said) == (2 if applied else 0)
    for partner in (c.shop, c.airline):
        shown = partner.api.get(f"/v1/conversions/{conversion['id']}").json()
        assert (shown["state"], shown["failure"]) == (state, failure) and "review_notes" not in shown
        listed = partner.api.get("/v1/conversions").json()["items"]
        said += [str(shown), str([item for item in listed if item["id"] == conversion["id"]])]
    for text in said:
        assert "Jane Doe" not in text and ops_user.removeprefix("ops:") not in text
    # Ops read who settled it and why.
    notes = ops.get(f"/v1/conversions/{conversion['id']}").json()["review_notes"]
    assert [(n["action"], n["by"], n["reason"], n["in_review_for"]) for n in notes] == [
        ("applied" if applied else "not_applied", ops_user, reason, in_review_for)]
    assert in_review_for.startswith("no definitive answer")


def test_a_local_conversion_is_announced_to_both_partners(pair, db):
    a, b, member = pair
    to_a, to_b = register(a.api), register(b.api)
    q = quote(a, b, member, 1000).json()
    done = a.api.post("/v1/conversions", {"quote": q["quote"]})
    assert done.status_code == 201, done.text
    (for_a,), (for_b,) = events(db, to_a), events(db, to_b)
    assert for_a.id != for_b.id and for_a.type == for_b.type == "conversion.completed"
    assert for_a.data == for_b.data == {
        "conversion_id": done.json()["id"], "member_id": member, "from_program": a.program,
        "to_program": b.program, "points_in": 1000, "points_out": 2475}


def test_a_hosted_conversion_is_announced_when_the_saga_completes_it(coalition, db):  # noqa: F811
    c = coalition
    endpoint = register(c.shop.api, event_types=["conversion.completed"])
    conversion = c.convert(into_airline=True)
    assert events(db, endpoint) == []
    c.fake.send_script = [RemoteResult(RemoteStatus.SUCCESS, transaction_id="LCP-1")]
    assert attempt(db, conversion) == "completed"
    (event,) = events(db, endpoint)
    assert event.data["conversion_id"] == conversion["id"] and event.data["points_out"] == 2000


@pytest.mark.parametrize("event_type", ["points.earned", "tier.changed"])
def test_emit_takes_the_known_types_and_refuses_others(partner, db, event_type):
    register(partner.api)
    pid = partner_id(db, partner)
    assert db.write(lambda s: webhooks.emit(s, pid, event_type, {"x": 1})).startswith("msg_")
    with pytest.raises(ValueError, match="unknown webhook event type"):
        db.write(lambda s: webhooks.emit(s, pid, "points.stolen", {}))


def test_a_purchase_announces_the_points_it_earned(partner, db, deliverer, receiver):
    endpoint = register(partner.api, url="https://crm.example/earned", event_types=["points.earned"])
    receiver.add(responses.POST, "https://crm.example/earned", status=200)
    member = partner.enrol()
    purchase = partner.buy(member, "250000", txn="pos-1")

    (event,) = events(db, endpoint)
    assert event.type == "points.earned"
    assert event.data == {"transaction_id": purchase["id"], "partner_transaction_id": "pos-1", "member_id": member,
                          "program": partner.program, "points": purchase["points"],
                          "occurred_at": "2026-11-01T10:00:00+00:00", "rule_version": None}
    assert purchase["points"] == 250
    (delivery,) = deliveries(db, endpoint["id"])
    assert deliverer.deliver(delivery.id) == "succeeded"
    body = webhooks.verify(endpoint["secret"], receiver.calls[0].request.headers, receiver.calls[0].request.body)
    assert body["data"]["transaction_id"] == purchase["id"]


def test_a_batch_announces_each_new_purchase_once_and_not_its_duplicates_or_failures(partner, db):
    endpoint = register(partner.api, event_types=["points.earned"])
    member = partner.enrol()
    items = [partner.purchase_body(member, "10000", txn=f"b-{n}") for n in range(3)]
    items.append(partner.purchase_body(str(uuid.uuid4()), "10000", txn="b-unknown"))  # no such member
    done = partner.api.post("/v1/transactions/batch", {"items": items})
    assert done.status_code == 200, done.text
    again = partner.api.post("/v1/transactions/batch", {"items": items[:2]})  # duplicates
    assert again.status_code == 200
    announced = sorted(event.data["partner_transaction_id"] for event in events(db, endpoint))
    assert announced == ["b-0", "b-1", "b-2"]


def test_earning_is_not_announced_to_endpoints_of_other_events(partner, db):
    endpoint = register(partner.api, event_types=["tier.changed"])
    partner.buy(partner.enrol(), "250000")
    assert events(db, endpoint) == []


def test_a_return_announces_the_points_it_took_back(partner, db):
    endpoint = register(partner.api, event_types=["points.reversed"])
    member = partner.enrol()
    purchase = partner.buy(member, "400000")
    returned = post_return(partner, purchase, "100000", return_id="ret-1")
    assert returned.status_code == 201, returned.text

    (event,) = events(db, endpoint)
    assert event.type == "points.reversed"
    assert event.data == {"transaction_id": returned.json()["id"], "partner_return_id": "ret-1",
                          "purchase_id": purchase["id"], "member_id": member, "program": partner.program,
                          "points": 100, "points_shortfall": 0}


def test_linking_a_card_announces_the_member_it_now_belongs_to(flask_app, db, settings, card, clock):
    endpoint = register(card["partner"].api, event_types=["member.linked"])
    browser, email = _logged_in(flask_app, db, settings)
    started = _start(browser, card["partner"].program, card["number"])
    code = _code_in_mail(db, settings, card["email"])
    assert browser.post("/account/link/code", {"request": _request_id(browser.text()), "code": code}).status_code == 303

    (event,) = events(db, endpoint)
    assert event.type == "member.linked" and started.status_code == 200
    assert event.data == {"member_id": str(_member_of(db, email)), "previous_member_id": card["member_id"],
                          "program": card["partner"].program}
