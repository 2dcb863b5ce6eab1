"""Redemptions through the API, and the relay with a scripted provider (no HTTP).

The relay runs in-process here (`Relay.run`), one attempt per call, so every step of the
state machine is visible; tests/e2e/test_relay_faults.py drives the same code through a real
Celery worker and the sandbox providers over HTTP.
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from concurrent.futures import wait
from datetime import timedelta

import pytest
from authlib.jose import jwt
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from hub.api import runtime
from hub.db import utcnow
from hub.identity.oidc import subjects
from hub.ledger.verify import verify
from hub.notify.outbox import OutboxMessage
from hub.notify.policy import RelayPolicy
from hub.programs.models import Partner
from hub import ledger
from hub.ledger.models import Transfer
from hub.notify import webhooks
from hub.notify.webhook_models import WebhookDelivery
from hub.rewards import catalog, redemptions, relay
from hub.rewards.models import Redemption, Reward
from hub.rewards.providers import CatalogItem, Kind, Outcome, Status, WebhookEvent, WebhookRejected
from tests.conftest import Api, assert_problem, round_trips, unique_code

CARD = {"code": "ABCD-1234", "pin": "9876", "url": "https://cards.example/abcd"}
POLICY = RelayPolicy(lease=timedelta(seconds=30), backoff_base=0.01, backoff_cap=0.02,
                           max_attempts=4, breaker_failures=3, breaker_reset=60)


class Scripted:
    """A provider that answers place_order and lookup from scripts, and records calls."""

    kind = Kind.GIFT_CARD

    def __init__(self, name: str, place=(), lookup=()):
        self.name = name
        self.place_script = list(place)
        self.lookup_script = list(lookup)
        self.calls: list[tuple[str, str]] = []

    def catalog(self):
        return [CatalogItem(product="CARD-10", name="Test card", kind=Kind.GIFT_CARD, currency="USD",
                            denominations=(1000, 2500))]

    def place_order(self, order):
        self.calls.append(("place", order.reference))
        return self.place_script.pop(0)

    def lookup(self, reference):
        self.calls.append(("lookup", reference))
        return self.lookup_script.pop(0)

    def verify_webhook(self, headers, body, now):
        if headers.get("X-Test-Signature") != "good":
            raise WebhookRejected("bad signature")
        data = json.loads(body)
        return WebhookEvent(event_id=data["id"], reference=data["reference"],
                            outcome=Outcome(Status(data["status"]), delivery=CARD))


@contextlib.contextmanager
def scripted_provider(db):
    """A scripted gift-card provider (unique name) with its catalog synced in, for the
    duration of the block."""
    fake = Scripted(f"fake{uuid.uuid4().hex[:8]}")
    db.write(lambda s: catalog.sync_provider(s, fake.name, "gift_card", fake.catalog()))
    runtime.current().providers[fake.name] = fake
    try:
        yield fake
    finally:
        runtime.current().providers.pop(fake.name, None)


@pytest.fixture
def provider(db):
    """A scripted gift-card provider for one test."""
    with scripted_provider(db) as fake:
        yield fake


def reward_code(db, provider) -> str:
    with db.read() as s:
        return s.scalar(select(Reward.code).where(Reward.provider == provider.name))


def run_relay(db, provider, redemption_id: str) -> str:
    return relay.Relay(db, {provider.name: provider}, POLICY).run(
        uuid.UUID(redemption_id)
    )


def member_api(http, partner, member_id: str, scope: str = "redemptions:read redemptions:write rewards:read") -> Api:
    """A member's own access token, as single sign-on will issue it (signed by the hub's key)."""
    hub = runtime.current()
    key = hub.keys.signing_jwks()["keys"][0]
    now = int(time.time())
    claims = {"iss": hub.settings.issuer, "aud": hub.settings.issuer.rstrip("/") + "/v1", "sub": member_id,
              "client_id": "member-portal", "member_id": member_id, "iat": now, "exp": now + 600,
              "jti": uuid.uuid4().hex, "scope": scope}
    token = jwt.encode({"alg": "RS256", "kid": key["kid"], "typ": "at+jwt"}, claims, key)
    return Api(http, token.decode())


def rich_member(partner, amount="5000000000") -> str:
    """A member with 5,000,000 points (1 point per 1,000 IDR)."""
    member = partner.enrol(email=f"m{uuid.uuid4().hex[:8]}@example.com")
    partner.buy(member, amount)
    return member


def pairwise_subject(db, partner, member: str) -> str:
    """The `sub` single sign-on gives the partner's brand sites for this member."""
    def make(s):
        sector = str(s.scalar(select(Partner.id).where(Partner.code == partner.code)))
        return subjects.subject_for(s, runtime.current().settings.secret_key, sector, uuid.UUID(member))
    return db.write(make)


def redeem(partner, member, reward, **extra):
    body = {"reward": reward, "program": partner.program, "member": {"member_id": member}, **extra}
    return partner.api.post("/v1/redemptions", body, key=uuid.uuid4().hex)


def in_house(partner, **extra) -> str:
    code = unique_code("R")
    body = {"code": code, "kind": "free_product", "name": "Free latte", "program": partner.program,
            "points": 500, **extra}
    response = partner.api.post("/v1/rewards", body)
    assert response.status_code == 201, response.text
    return code


# --- catalog ----------------------------------------------------------------------------

def test_catalog_lists_own_and_coalition_rewards_with_point_prices(partner, other_partner, provider, db):
    mine, theirs = in_house(partner), in_house(other_partner)
    response = partner.api.get("/v1/rewards", program=partner.program, limit=200)
    assert response.status_code == 200, response.text
    items = {r["code"]: r for r in response.json()["items"]}
    assert mine in items and theirs not in items
    card = items[reward_code(db, provider)]
    # USD 10 = 160,000 units; a point is worth 10 units: 16,000 points (rounded up).
    assert card["denominations"] == ["10.00", "25.00"]
    assert card["quotes"] == [{"program": partner.program, "points": 16000, "amount": "10.00"},
                              {"program": partner.program, "points": 40000, "amount": "25.00"}]
    assert items[mine]["price"] == {"program": partner.program, "points": 500}


def test_catalog_filters_and_pages(partner):
    codes = sorted(in_house(partner, kind="discount") for _ in range(3))
    seen, cursor = [], None
    while True:
        params = {"kind": "discount", "program": partner.program, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = partner.api.get("/v1/rewards", **params).json()
        seen += [r["code"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [c for c in seen if c in codes] == codes
    assert all(c.startswith("R") for c in seen)


def test_catalog_hides_unavailable_rewards_unless_asked(partner):
    code = in_house(partner, available_from="2099-01-01T00:00:00Z")
    listed = lambda **kw: [r["code"] for r in partner.api.get("/v1/rewards", limit=200, **kw).json()["items"]]
    assert code not in listed()
    assert code in listed(available="false")


# --- in-house rewards -------------------------------------------------------------------

def test_in_house_reward_is_issued_at_once(partner, http):
    member = rich_member(partner)
    before = partner.balance(member)["posted"]
    response = redeem(partner, member, in_house(partner))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["state"] == "fulfilled" and order["points"] == 500 and order["delivery"]["code"]
    assert partner.balance(member)["posted"] == before - 500
    # The issuing partner and the member see the voucher; another client of the partner too.
    seen = partner.api.get(f"/v1/redemptions/{order['id']}").json()
    assert seen["delivery"] == order["delivery"]
    assert member_api(http, partner, member).get(f"/v1/redemptions/{order['id']}").json()["delivery"] == order["delivery"]


def test_a_partner_names_the_member_by_its_pairwise_subject(partner, other_partner, db):
    member = rich_member(partner)
    sub = pairwise_subject(db, partner, member)
    body = {"reward": in_house(partner), "program": partner.program, "member": {"subject": sub}}
    response = partner.api.post("/v1/redemptions", body)
    assert response.status_code == 201, response.text
    assert response.json()["member_id"] == member
    # Not another partner's subject, nor one never issued.
    foreign = {**body, "member": {"subject": pairwise_subject(db, other_partner, member)}}
    assert_problem(partner.api.post("/v1/redemptions", foreign), 404, "member-not-found")
    assert_problem(partner.api.post("/v1/redemptions", {**body, "member": {"subject": "A" * 43}}), 404,
                   "member-not-found")


def test_insufficient_points_is_409_and_reserves_nothing(partner, db):
    member = partner.enrol()
    partner.buy(member, "100000")  # 100 points
    code = in_house(partner, stock=3)
    response = redeem(partner, member, code)
    assert_problem(response, 409, "insufficient-points")
    assert partner.balance(member)["available"] == 100
    with db.read() as s:
        assert s.scalar(select(Reward.stock).where(Reward.code == code)) == 3
        assert not s.scalars(select(Redemption).where(Redemption.member_id == uuid.UUID(member))).all()


def test_refusals(partner, other_partner, provider, db):
    member = rich_member(partner)
    assert_problem(redeem(partner, member, "NO-SUCH-REWARD"), 404, "reward-not-found")
    assert_problem(redeem(partner, member, in_house(other_partner)), 404, "reward-not-found")
    sold_out = in_house(partner, stock=1)
    assert redeem(partner, member, sold_out).status_code == 201
    assert_problem(redeem(partner, member, sold_out), 409, "out-of-stock")
    limited = in_house(partner, per_member_limit=1)
    assert redeem(partner, member, limited).status_code == 201
    assert_problem(redeem(partner, member, limited), 409, "limit-reached")
    later = in_house(partner, available_from="2099-01-01T00:00:00Z")
    assert_problem(redeem(partner, member, later), 409, "reward-unavailable")
    card = reward_code(db, provider)
    assert_problem(redeem(partner, member, card, amount="12.00"), 422, "denomination-not-offered")
    assert_problem(redeem(partner, member, card), 422, "denomination-required")
    bad = partner.api.post("/v1/redemptions", {"reward": card, "program": partner.program, "bogus": 1})
    assert_problem(bad, 400, "invalid-request")


def test_one_read_finds_the_reward_and_the_payer_and_refusals_keep_their_order(partner, other_partner,
                                                                                 provider, db, http):
    """The reward and the paying membership come in one statement (with an Idempotency-Key
    on PostgreSQL, the key's lock too); which refusal comes first is as when they were
    separate reads: the reward's, then its availability and denomination, then the
    program's and the member's."""
    member, card = rich_member(partner), reward_code(db, provider)

    def post(reward, key=None, **fields):
        body = {"reward": reward, "program": partner.program, "member": {"member_id": member}, **fields}
        return partner.api.post("/v1/redemptions", {k: v for k, v in body.items() if v is not None}, key=key)

    def only_read(seen: list[str]) -> str:
        """The statement that read the reward: the only one that read a program too."""
        (read,) = [s for s in seen if "from rewards" in s]
        assert "from programs" in read and not [s for s in seen if "from programs" in s and s != read]
        return read

    stranger = str(uuid.uuid4())
    later = in_house(partner, available_from="2099-01-01T00:00:00Z")
    refusals = [
        (dict(reward="NO-SUCH-REWARD", program="NOSUCHPROGRAM"), 404, "reward-not-found"),
        (dict(reward=in_house(other_partner), member={"member_id": stranger}), 404, "reward-not-found"),
        (dict(reward=later, program="NOSUCHPROGRAM"), 409, "reward-unavailable"),
        (dict(reward=card, amount="12.00", member={"member_id": stranger}), 422, "denomination-not-offered"),
        (dict(reward=card, amount="10.00", program="NOSUCHPROGRAM"), 404, "program-not-found"),
        (dict(reward=card, amount="10.00", program=other_partner.program), 404, "program-not-found"),
        (dict(reward=card, amount="10.00", member=None), 422, "member-required"),
        (dict(reward=card, amount="10.00", member={"member_id": stranger}), 404, "member-not-found"),
    ]
    for key in (None, "keyed"):  # read alone, and read ahead with the key's lock
        for fields, status, slug in refusals:
            assert_problem(post(key=key and uuid.uuid4().hex, **fields), status, slug)
    with round_trips(db) as seen:
        assert post(card, amount="10.00").status_code == 202
    assert "pg_try_advisory_xact_lock" not in only_read(seen)
    with round_trips(db) as seen:
        assert post(card, key=uuid.uuid4().hex, amount="10.00").status_code == 202
    assert ("pg_try_advisory_xact_lock" in only_read(seen)) == (db.dialect == "postgresql")
    # A member's own token names the payer by member id, in the same one read.
    with round_trips(db) as seen:
        own = member_api(http, partner, member).post("/v1/redemptions", {"reward": card, "program": partner.program,
                                                                          "amount": "10.00"}, key=uuid.uuid4().hex)
    assert own.status_code == 202 and own.json()["member_id"] == member
    assert ("pg_try_advisory_xact_lock" in only_read(seen)) == (db.dialect == "postgresql")


# --- relayed rewards --------------------------------------------------------------------

def test_gift_card_reserves_then_posts_on_fulfilment(partner, provider, db, http):
    member = rich_member(partner)
    before = partner.balance(member)
    response = redeem(partner, member, reward_code(db, provider), amount="10.00")
    assert response.status_code == 202, response.text
    order = response.json()
    assert order["state"] == "pending" and order["points"] == 16000
    held = partner.balance(member)
    assert held["posted"] == before["posted"] and held["available"] == before["available"] - 16000

    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-1", delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    assert provider.calls == [("place", f"rdm{uuid.UUID(order['id']).hex}")]
    after = partner.balance(member)
    assert after["posted"] == before["posted"] - 16000 and after["available"] == after["posted"]
    # The card is the member's: the partner sees the order, not the code.
    assert partner.api.get(f"/v1/redemptions/{order['id']}").json()["delivery"] is None
    mine = member_api(http, partner, member).get(f"/v1/redemptions/{order['id']}").json()
    assert mine["state"] == "fulfilled" and mine["delivery"] == CARD
    with db.read() as s:
        stored = s.get(Redemption, uuid.UUID(order["id"]))
        assert "ABCD-1234" not in stored.delivery_sealed  # encrypted at rest
        assert s.scalar(select(OutboxMessage.done_at).where(OutboxMessage.key == order["id"])) is not None
    # Another delivery of the task changes nothing.
    assert run_relay(db, provider, order["id"]) == "done"
    assert len(provider.calls) == 1


def test_unknown_outcome_is_looked_up_before_anything_else(partner, provider, db):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN, detail="read timeout")]
    provider.lookup_script = [Outcome(Status.FULFILLED, delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "pending"
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    assert [c for c, _ in provider.calls] == ["place", "lookup"]  # never placed twice


def test_not_found_on_lookup_places_again_with_the_same_reference(partner, provider, db):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN), Outcome(Status.FULFILLED, delivery=CARD)]
    provider.lookup_script = [Outcome(Status.NOT_FOUND)]
    run_relay(db, provider, order["id"])
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    assert [c for c, _ in provider.calls] == ["place", "lookup", "place"]
    assert len({ref for _, ref in provider.calls}) == 1


def test_definitive_failure_returns_points_and_stock(partner, provider, db):
    member = rich_member(partner)
    before = partner.balance(member)
    db.write(lambda s: s.execute(Reward.__table__.update().where(Reward.provider == provider.name).values(stock=5)))
    order = redeem(partner, member, reward_code(db, provider), amount="25.00").json()
    provider.place_script = [Outcome(Status.FAILED, detail="402 insufficient funds")]
    assert run_relay(db, provider, order["id"]) == "failed"
    assert partner.balance(member) == before
    with db.read() as s:
        assert s.scalar(select(Reward.stock).where(Reward.provider == provider.name)) == 5
    got = partner.api.get(f"/v1/redemptions/{order['id']}").json()
    assert got["state"] == "failed" and "insufficient funds" in got["failure"]


def test_no_definitive_answer_ends_in_review_with_points_held(partner, provider, db):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN)]
    provider.lookup_script = [Outcome(Status.UNKNOWN)] * 3
    states = [run_relay(db, provider, order["id"]) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "needs_review"]
    held = partner.balance(member)
    assert held["posted"] - held["available"] == 16000  # still reserved: it may have been placed
    # Ops hand it back; the relay asks the provider first.
    db.write(lambda s: relay.requeue(s, uuid.UUID(order["id"]), by="ops:test"))
    provider.lookup_script = [Outcome(Status.FULFILLED, delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"


def test_only_surely_unplaced_orders_are_voided_when_giving_up(partner, provider, db):
    member = rich_member(partner)
    before = partner.balance(member)
    db.write(lambda s: s.execute(Reward.__table__.update().where(Reward.provider == provider.name).values(stock=5)))
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.RETRY, retry_after=0.01)] * 4
    states = [run_relay(db, provider, order["id"]) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "failed"]
    # Every order was answered "not received": nothing to look up, placed again directly.
    assert [c for c, _ in provider.calls] == ["place"] * 4
    assert partner.balance(member) == before
    with db.read() as s:
        assert s.scalar(select(Reward.stock).where(Reward.provider == provider.name)) == 5
    assert relay_row(db, order["id"]) == {"state": "failed", "maybe_placed": False, "attempts": 4}


def test_circuit_breaker_stops_calls_to_a_failing_provider(partner, provider, db):
    member = rich_member(partner)
    relayer = relay.Relay(db, {provider.name: provider}, POLICY)
    orders = [redeem(partner, member, reward_code(db, provider), amount="10.00").json()["id"] for _ in range(4)]
    provider.place_script = [Outcome(Status.UNKNOWN, detail="503")] * 3
    for order in orders:
        relayer.run(uuid.UUID(order))
    assert len(provider.calls) == 3  # the fourth order found the breaker open: no call


def test_provider_webhook_applies_once_and_rejects_forgeries(partner, provider, db, http):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    ref = f"rdm{uuid.UUID(order['id']).hex}"
    body = json.dumps({"id": "evt-" + uuid.uuid4().hex, "reference": ref, "status": "fulfilled"})
    url = f"/v1/provider-webhooks/{provider.name}"
    headers = {"Content-Type": "application/json"}
    forged = http.post(url, content=body, headers={**headers, "X-Test-Signature": "forged"})
    assert_problem(forged, 401, "invalid-signature")
    assert partner.api.get(f"/v1/redemptions/{order['id']}").json()["state"] == "pending"
    good = http.post(url, content=body, headers={**headers, "X-Test-Signature": "good"})
    assert good.status_code == 200 and good.json() == {"status": "applied"}
    assert partner.api.get(f"/v1/redemptions/{order['id']}").json()["state"] == "fulfilled"
    again = http.post(url, content=body, headers={**headers, "X-Test-Signature": "good"})
    assert again.json() == {"status": "replayed"}
    assert_problem(http.post("/v1/provider-webhooks/nosuch", content=body, headers=headers), 404, "provider-not-found")


def test_idempotent_redemption_reserves_once(partner, provider, db):
    member = rich_member(partner)
    body = {"reward": reward_code(db, provider), "program": partner.program,
            "member": {"member_id": member}, "amount": "10.00"}
    first = partner.api.post("/v1/redemptions", body, key="same-key-" + member)
    again = partner.api.post("/v1/redemptions", body, key="same-key-" + member)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    balance = partner.balance(member)
    assert balance["posted"] - balance["available"] == 16000


def test_ledger_verifies_after_redemptions(db):
    with db.read() as s:
        report = verify(s)
    assert report.ok, report.violations


def test_signed_tremendous_webhook_fails_an_order_and_stale_ones_are_refused(partner, db, http):
    """The real Tremendous connector's verification, through the API: its events name the
    provider's order id (set by the relay when the order was placed)."""
    import hashlib
    import hmac
    from datetime import datetime, timedelta, timezone

    from partners.tremendous.config import DEFAULTS  # the hub under test runs with the defaults

    item = CatalogItem(product=f"TEST{uuid.uuid4().hex[:8]}", name="Test card", kind=Kind.GIFT_CARD,
                       currency="USD", denominations=(1000,))
    db.write(lambda s: catalog.sync_provider(s, "tremendous", "gift_card", [item]))
    member = rich_member(partner)
    before = partner.balance(member)
    with db.read() as s:
        code = s.scalar(select(Reward.code).where(Reward.product == item.product))
    order = redeem(partner, member, code, amount="10.00").json()
    provider_order = "ORD" + uuid.uuid4().hex[:10].upper()
    db.write(lambda s: s.execute(Redemption.__table__.update().where(Redemption.id == uuid.UUID(order["id"]))
                                 .values(provider_order_id=provider_order)))

    def event(created: datetime) -> bytes:
        return json.dumps({"uuid": str(uuid.uuid4()), "event": "ORDERS.FAILED",
                           "created_utc": created.isoformat().replace("+00:00", "Z"),
                           "payload": {"resource": {"id": provider_order, "type": "orders"}}}).encode()

    def send(body: bytes, secret: str = DEFAULTS["webhook_secret"]):
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return http.post("/v1/provider-webhooks/tremendous", content=body,
                         headers={"Content-Type": "application/json", "Tremendous-Webhook-Signature": signature})

    now = datetime.now(timezone.utc)
    assert_problem(send(event(now - timedelta(minutes=10))), 401, "invalid-signature")  # stale
    assert_problem(send(event(now), secret="not-the-secret"), 401, "invalid-signature")  # forged
    assert partner.api.get(f"/v1/redemptions/{order['id']}").json()["state"] == "pending"
    fresh = event(now)
    assert send(fresh).json() == {"status": "applied"}
    assert send(fresh).json() == {"status": "replayed"}
    assert partner.api.get(f"/v1/redemptions/{order['id']}").json()["state"] == "failed"
    assert partner.balance(member) == before


def test_a_batch_attempts_each_order_once_and_skips_done_and_leased_ones(partner, provider, db):
    member = rich_member(partner)
    code = reward_code(db, provider)
    ids = [uuid.UUID(redeem(partner, member, code, amount="10.00").json()["id"]) for _ in range(4)]
    worker = relay.Relay(db, {provider.name: provider}, POLICY)
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id="P-0", delivery=CARD)]
    assert worker.run(ids[0]) == "fulfilled"
    leased = Redemption.__table__.update().where(Redemption.id == ids[1])
    db.write(lambda s: s.execute(leased.values(lease_until=utcnow() + timedelta(minutes=5))))
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD), Outcome(Status.FULFILLED, delivery=CARD)]
    assert worker.run_many(ids) == ["done", "busy", "fulfilled", "fulfilled"]
    placed = sorted(ref for call, ref in provider.calls if call == "place")
    assert placed == sorted(f"rdm{i.hex}" for i in (ids[0], ids[2], ids[3]))  # each once


class Writes:
    """The Database, counting its write transactions and keeping the statements sent in each."""

    def __init__(self, db):
        self.db, self.count, self.statements = db, 0, []

    def write(self, work):
        self.count += 1
        with round_trips(self.db) as seen:
            try:
                return self.db.write(work)
            finally:
                self.statements.append(seen)

    def read(self):
        return self.db.read()


@pytest.fixture
def together(monkeypatch):
    """The relay's waits return once every call of the batch has been answered, so that
    the answers arrive together (otherwise, on a fast provider, they may or may not)."""
    monkeypatch.setattr(relay, "wait", lambda running, return_when=None, timeout=None: wait(running))


def wave_path(monkeypatch) -> list[bool]:
    """Whether each call of relay.record_fulfilled recorded its wave (True) or left it to
    `record`, order by order (False)."""
    ran, record_fulfilled = [], relay.record_fulfilled

    def spy(session, orders, answers):
        states = record_fulfilled(session, orders, answers)
        ran.append(states is not None)
        return states

    monkeypatch.setattr(relay, "record_fulfilled", spy)
    return ran


def fulfilled_wave(partner, provider, db, count: int) -> tuple[list[dict], Writes]:
    """`count` card orders of two members, fulfilled together: the orders, and the relay's
    transactions (the claims, then the wave)."""
    members = [rich_member(partner), rich_member(partner)]
    code = reward_code(db, provider)
    orders = [redeem(partner, members[i % 2], code, amount="10.00").json() for i in range(count)]
    ids = [uuid.UUID(o["id"]) for o in orders]
    provider.place_script = [Outcome(Status.FULFILLED, provider_order_id=f"P-{i}", delivery=CARD)
                             for i in range(count)]
    writes = Writes(db)
    request_ids = {rid: f"req-{rid.hex[:8]}" for rid in ids}
    assert relay.Relay(writes, {provider.name: provider}, POLICY).run_many(ids, request_ids) == ["fulfilled"] * count
    return orders, writes


def test_answers_that_arrive_together_are_recorded_in_one_transaction(partner, provider, db, together,
                                                                     monkeypatch):
    hooks = partner.api.post("/v1/webhook-endpoints", {"url": "https://partner.example/hooks",
                                                       "event_types": ["redemption.fulfilled"]})
    assert hooks.status_code == 201, hooks.text
    ran = wave_path(monkeypatch)
    orders, writes = fulfilled_wave(partner, provider, db, 8)
    assert writes.count == 2 and ran == [True]  # the claims, then the eight outcomes as one wave
    for order in orders:
        shown = partner.api.get(f"/v1/redemptions/{order['id']}").json()
        assert shown["state"] == "fulfilled" and shown["resolved_at"]
    with db.read() as s:
        rows = s.execute(select(Redemption.id, Redemption.provider_order_id, Redemption.delivery_sealed,
                                Redemption.lease_until)).all()
        assert {r.provider_order_id for r in rows if str(r.id) in {o["id"] for o in orders}} == {
            f"P-{i}" for i in range(8)}
        assert all(r.lease_until is None and redemptions.unseal(r.delivery_sealed) == CARD
                   for r in rows if str(r.id) in {o["id"] for o in orders})
        relayed = s.execute(select(OutboxMessage.key, OutboxMessage.done_at)
                            .where(OutboxMessage.topic == redemptions.RELAY_TOPIC)).all()
        assert all(m.done_at is not None for m in relayed if m.key in {o["id"] for o in orders})
        # Each order's webhook carries the id of the request that placed it.
        deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == uuid.UUID(hooks.json()["id"]))
        hooked = s.execute(select(OutboxMessage.request_id).where(
            OutboxMessage.topic == webhooks.TOPIC,
            OutboxMessage.key.in_([str(d) for d in s.execute(deliveries).scalars()]))).scalars()
        assert sorted(hooked) == sorted(f"req-{uuid.UUID(o['id']).hex[:8]}" for o in orders)
        assert verify(s).ok


class ScriptedCharity(Scripted):
    kind = Kind.DONATION

    def catalog(self):
        return [CatalogItem(product="GIVE-10", name="Test charity", kind=Kind.DONATION, currency="USD",
                            denominations=(1000,))]


def test_a_wave_leaves_each_order_as_recording_it_alone_would(partner, provider, db, together, monkeypatch):
    """A donation (its receipt kept in the clear, nothing sealed) fulfilled with two cards,
    one of which an earlier attempt had flagged maybe placed with a provider order id that
    this answer does not repeat: the id and the flag stay, and a card has no receipt."""
    charity = ScriptedCharity(f"give{uuid.uuid4().hex[:8]}")
    db.write(lambda s: catalog.sync_provider(s, charity.name, "donation", charity.catalog()))
    member = rich_member(partner)
    with db.read() as s:
        cause = s.scalar(select(Reward.code).where(Reward.provider == charity.name))
    card, other_card, gift = [uuid.UUID(redeem(partner, member, code, amount="10.00").json()["id"])
                              for code in (reward_code(db, provider), reward_code(db, provider), cause)]
    db.write(lambda s: s.execute(update(Redemption).where(Redemption.id == other_card)
                                 .values(maybe_placed=True, provider_order_id="P-EARLIER")))

    def receipt_is_null():  # SQL NULL, as opposed to a JSON null (which the ORM also reads as None)
        with db.read() as s:
            return dict(s.execute(select(Redemption.id, Redemption.receipt.is_(None))
                                  .where(Redemption.id.in_([card, other_card]))).all())

    before = receipt_is_null()
    receipt = {"receipt_id": "R-1", "amount": "10.00"}
    # No provider order id in either answer; the flagged order is looked up before anything.
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD)]
    provider.lookup_script = [Outcome(Status.FULFILLED, delivery=CARD)]
    charity.place_script = [Outcome(Status.FULFILLED, provider_order_id="G-1", delivery=receipt)]
    ran = wave_path(monkeypatch)
    relayed = relay.Relay(db, {provider.name: provider, charity.name: charity}, POLICY)
    assert relayed.run_many([card, other_card, gift]) == ["fulfilled"] * 3 and ran == [True]
    with db.read() as s:
        rows = {r.id: r for r in s.execute(select(Redemption).where(Redemption.id.in_([card, other_card, gift])))
                .scalars()}
    assert (rows[gift].receipt, rows[gift].delivery_sealed, rows[gift].provider_order_id) == (receipt, None, "G-1")
    assert redemptions.unseal(rows[card].delivery_sealed) == CARD and rows[card].provider_order_id is None
    assert (rows[other_card].provider_order_id, rows[other_card].maybe_placed) == ("P-EARLIER", True)
    assert rows[card].receipt is None and rows[other_card].receipt is None and receipt_is_null() == before
    with db.read() as s:
        assert verify(s).ok


def test_a_wave_costs_the_same_statements_whatever_its_size(partner, provider, db, together):
    _, two = fulfilled_wave(partner, provider, db, 2)
    _, eight = fulfilled_wave(partner, provider, db, 8)
    assert two.count == eight.count == 2
    assert len(eight.statements[1]) == len(two.statements[1])  # the wave's transaction


def test_an_order_resolved_meanwhile_makes_the_wave_go_order_by_order(partner, provider, db, together,
                                                                    monkeypatch):
    """A provider's webhook settles one order of the wave between its claim and its
    recording: the wave is not the plain case, and that order is left as the webhook made it
    (its reservation posted once)."""
    ids = card_orders(partner, provider, db)
    placed = provider.place_order

    def place_order(order):
        if order.reference == redemptions.reference(ids[1]):  # the webhook beats the answer
            db.write(lambda s: relay.record(s, ids[1], Outcome(Status.FULFILLED, delivery=CARD), POLICY))
        return placed(order)

    provider.place_order = place_order
    ran = wave_path(monkeypatch)
    assert relay.Relay(db, {provider.name: provider}, POLICY).run_many(ids) == ["fulfilled"] * 3
    assert ran == [False]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Transfer).where(
            Transfer.ref_id == str(ids[1]), Transfer.phase == "post_pending")) == 1
        assert verify(s).ok


def test_a_wave_with_an_order_that_is_not_plain_is_recorded_order_by_order(partner, provider, db, together,
                                                                         monkeypatch):
    ids = card_orders(partner, provider, db)
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD), Outcome(Status.FAILED, detail="sold out"),
                             Outcome(Status.FULFILLED, delivery=CARD)]
    locked, lock = [], ledger.lock_reserved_accounts
    monkeypatch.setattr(ledger, "lock_reserved_accounts",
                        lambda s, ref_type, refs: locked.append(sorted(refs)) or lock(s, ref_type, refs))
    writes = Writes(db)
    assert relay.Relay(writes, {provider.name: provider}, POLICY).run_many(ids) == ["fulfilled", "failed", "fulfilled"]
    assert writes.count == 2  # still one transaction for the wave
    assert locked == [sorted(str(rid) for rid in ids)]  # every order's accounts first, as a plain wave takes them
    with db.read() as s:
        assert verify(s).ok


def test_a_wave_whose_reservation_expired_is_recorded_order_by_order(partner, provider, db, together):
    ids = card_orders(partner, provider, db)
    with db.read() as s:
        expired = s.scalar(select(Redemption.transfer_id).where(Redemption.id == ids[1]))
    db.write(lambda s: s.execute(Transfer.__table__.update().where(Transfer.id == expired)
                                 .values(timeout_at=utcnow() - timedelta(seconds=1))))
    writes = Writes(db)
    states = relay.Relay(writes, {provider.name: provider}, POLICY).run_many(ids)
    assert states == ["fulfilled", "needs_review", "fulfilled"]  # the late one waits for ops, as alone
    assert writes.count == 2  # the wave's own transaction: nothing was written before the check
    with db.read() as s:
        assert verify(s).ok


def card_orders(partner, provider, db, count: int = 3) -> list[uuid.UUID]:
    """`count` $10 card orders of one member, each to be fulfilled by the provider."""
    member = rich_member(partner)
    code = reward_code(db, provider)
    ids = [uuid.UUID(redeem(partner, member, code, amount="10.00").json()["id"]) for _ in range(count)]
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD) for _ in ids]
    return ids


def fail_recording(monkeypatch, redemption_id: uuid.UUID, error: Exception) -> None:
    """Recording this order raises `error`, alone or in a wave (the others are recorded)."""
    record, together = relay.record, relay.record_fulfilled

    def failing(session, rid, *args, **kwargs):
        if rid == redemption_id:
            raise error
        return record(session, rid, *args, **kwargs)

    def failing_together(session, orders, answers):
        if any(answer.redemption_id == redemption_id for answer in answers):
            raise error
        return together(session, orders, answers)

    monkeypatch.setattr(relay, "record", failing)
    monkeypatch.setattr(relay, "record_fulfilled", failing_together)


def states(partner, ids) -> list[str]:
    return [partner.api.get(f"/v1/redemptions/{rid}").json()["state"] for rid in ids]


def test_an_outcome_that_fails_to_record_holds_back_no_other(partner, provider, db, together, monkeypatch):
    ids = card_orders(partner, provider, db)
    fail_recording(monkeypatch, ids[1], RuntimeError("a bug recording this one"))
    writes = Writes(db)
    with pytest.raises(RuntimeError, match="a bug recording this one"):
        relay.Relay(writes, {provider.name: provider}, POLICY).run_many(ids)
    assert writes.count == 1 + 1 + 3  # the claims, all three together (rolled back), each alone
    assert states(partner, ids) == ["fulfilled", "pending", "fulfilled"]  # the second is left to its lease
    with db.read() as s:
        assert verify(s).ok


def test_a_database_failure_recording_a_wave_leaves_every_order_to_its_lease(partner, provider, db, together,
                                                                            monkeypatch):
    ids = card_orders(partner, provider, db)
    fail_recording(monkeypatch, ids[1],
                   OperationalError("UPDATE ...", {}, Exception("server closed the connection unexpectedly")))
    writes = Writes(db)
    with pytest.raises(OperationalError):  # the task is retried (autoretry_for)
        relay.Relay(writes, {provider.name: provider}, POLICY).run_many(ids)
    assert writes.count == 2  # no transaction per order against a database that is down
    assert states(partner, ids) == ["pending"] * 3


def test_a_provider_call_that_raises_holds_back_no_other_outcome(partner, provider, db):
    ids = card_orders(partner, provider, db)

    def place_order(order):
        if order.reference == redemptions.reference(ids[1]):
            raise RuntimeError("a bug in a connector")
        return Outcome(Status.FULFILLED, delivery=CARD)

    provider.place_order = place_order
    with pytest.raises(RuntimeError, match="a bug in a connector"):
        relay.Relay(db, {provider.name: provider}, POLICY).run_many(ids)
    assert states(partner, ids) == ["fulfilled", "pending", "fulfilled"]
    with db.read() as s:
        assert verify(s).ok


# --- maybe_placed: once an order may exist at the provider, it is never voided blindly ------

def relay_row(db, order_id: str) -> dict:
    with db.read() as s:
        row = s.get(Redemption, uuid.UUID(order_id))
        return {"state": row.state, "maybe_placed": row.maybe_placed, "attempts": row.attempts}


def held(partner, member) -> int:
    balance = partner.balance(member)
    return balance["posted"] - balance["available"]


def test_not_found_after_a_lost_answer_never_voids_the_order(partner, provider, db):
    """The first order timed out (it may have been placed); a later lookup's NOT_FOUND only
    says the provider has no record *yet*: the first request may still land. RETRY on every
    order after that must not end in failed (points back, and a card delivered for free)."""
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN, detail="read timeout")] + [Outcome(Status.RETRY)] * 3
    provider.lookup_script = [Outcome(Status.NOT_FOUND)] * 3
    assert run_relay(db, provider, order["id"]) == "pending"
    assert relay_row(db, order["id"])["maybe_placed"] is True
    states = [run_relay(db, provider, order["id"]) for _ in range(3)]
    assert states == ["pending", "pending", "needs_review"]
    assert [c for c, _ in provider.calls] == ["place"] + ["lookup", "place"] * 3
    assert held(partner, member) == 16000  # still reserved: the first order may land
    assert relay_row(db, order["id"]) == {"state": "needs_review", "maybe_placed": True, "attempts": 4}


def test_a_pending_answer_makes_the_order_maybe_placed(partner, provider, db):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.PENDING, provider_order_id="P-7")]
    provider.lookup_script = [Outcome(Status.UNKNOWN, detail="503")] * 3
    states = [run_relay(db, provider, order["id"]) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "needs_review"]
    assert [c for c, _ in provider.calls] == ["place", "lookup", "lookup", "lookup"]
    assert held(partner, member) == 16000


def test_retry_then_a_lost_answer_ends_in_review(partner, provider, db):
    """RETRY first (nothing placed), then a timeout: the flag is set by the later order."""
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.RETRY), Outcome(Status.UNKNOWN)] + [Outcome(Status.RETRY)] * 2
    provider.lookup_script = [Outcome(Status.NOT_FOUND)] * 2
    states = [run_relay(db, provider, order["id"]) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "needs_review"]
    assert [c for c, _ in provider.calls] == ["place", "place", "lookup", "place", "lookup", "place"]
    assert held(partner, member) == 16000


def test_a_provider_down_the_whole_time_fails_and_returns_the_points(partner, provider, db):
    """Connection refused on every call: no order was ever sent. The relay places directly
    each time (a lookup that cannot connect would say UNKNOWN) and gives the points back."""
    member = rich_member(partner)
    before = partner.balance(member)
    db.write(lambda s: s.execute(Reward.__table__.update().where(Reward.provider == provider.name).values(stock=2)))
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    refused = Outcome(Status.RETRY, detail="not sent: connection refused")
    provider.place_script = [refused] * 4
    provider.lookup_script = [Outcome(Status.UNKNOWN, detail="connection refused")] * 4
    states = [run_relay(db, provider, order["id"]) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "failed"]
    assert [c for c, _ in provider.calls] == ["place"] * 4
    assert partner.balance(member) == before
    with db.read() as s:
        assert s.scalar(select(Reward.stock).where(Reward.provider == provider.name)) == 2
    got = partner.api.get(f"/v1/redemptions/{order['id']}").json()
    assert got["state"] == "failed" and "connection refused" in got["failure"]


class _Recorded:
    """A real connector, its calls recorded."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def place_order(self, order):
        outcome = self.inner.place_order(order)
        self.calls.append(("place", outcome.status))
        return outcome

    def lookup(self, reference):
        outcome = self.inner.lookup(reference)
        self.calls.append(("lookup", outcome.status))
        return outcome


def test_a_real_connector_to_a_closed_port_fails_and_returns_the_points(partner, db):
    """The same through Tango's connector and its transport mapping: nothing listens."""
    import socket

    from partners.tango.connector import TangoProvider

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    name = f"down{uuid.uuid4().hex[:8]}"
    item = CatalogItem(product="CARD-10", name="Test card", kind=Kind.GIFT_CARD, currency="USD",
                       denominations=(1000,))
    db.write(lambda s: catalog.sync_provider(s, name, "gift_card", [item]))
    down = _Recorded(TangoProvider({"base_url": f"http://127.0.0.1:{port}/raas/v2", "timeout_connect": "2"}))
    member = rich_member(partner)
    before = partner.balance(member)
    with db.read() as s:
        code = s.scalar(select(Reward.code).where(Reward.provider == name))
    order = redeem(partner, member, code, amount="10.00").json()
    worker = relay.Relay(db, {name: down}, RelayPolicy(lease=timedelta(seconds=30), backoff_base=0.01, backoff_cap=0.02,
                                     max_attempts=4, breaker_failures=10, breaker_reset=60))
    states = [worker.run(uuid.UUID(order["id"])) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "failed"]
    assert down.calls == [("place", Status.RETRY)] * 4
    assert partner.balance(member) == before


def test_a_claim_taking_over_an_expired_lease_looks_up_first(partner, provider, db):
    """An attempt whose lease ran out without an outcome (a worker killed mid-call) may have
    placed the order: the next one asks first, and cannot void it when it gives up."""
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    lost = Redemption.__table__.update().where(Redemption.id == uuid.UUID(order["id"]))
    db.write(lambda s: s.execute(lost.values(attempts=1, lease_until=utcnow() - timedelta(seconds=1))))
    provider.place_script = [Outcome(Status.RETRY)] * 3
    provider.lookup_script = [Outcome(Status.NOT_FOUND)] * 3
    states = [run_relay(db, provider, order["id"]) for _ in range(3)]
    assert states == ["pending", "pending", "needs_review"]
    assert [c for c, _ in provider.calls] == ["lookup", "place"] * 3
    assert relay_row(db, order["id"]) == {"state": "needs_review", "maybe_placed": True, "attempts": 4}
    assert held(partner, member) == 16000


def test_an_unexpired_lease_is_left_alone_and_a_free_order_places_directly(partner, provider, db):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    leased = Redemption.__table__.update().where(Redemption.id == uuid.UUID(order["id"]))
    db.write(lambda s: s.execute(leased.values(lease_until=utcnow() + timedelta(minutes=5))))
    assert run_relay(db, provider, order["id"]) == "busy"
    assert relay_row(db, order["id"]) == {"state": "pending", "maybe_placed": False, "attempts": 0}
    db.write(lambda s: s.execute(leased.values(lease_until=None)))
    provider.place_script = [Outcome(Status.FULFILLED, delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    assert [c for c, _ in provider.calls] == ["place"]
    assert relay_row(db, order["id"])["maybe_placed"] is True  # FULFILLED: it was placed


def test_requeue_asks_first_even_for_an_order_never_maybe_placed(partner, provider, db):
    """A person looked at it: whatever the history, the relay asks the provider before
    placing, and cannot void it without an answer."""
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    review = Redemption.__table__.update().where(Redemption.id == uuid.UUID(order["id"]))
    db.write(lambda s: s.execute(review.values(state="needs_review", attempts=4, failure="ops look")))
    assert relay_row(db, order["id"])["maybe_placed"] is False
    db.write(lambda s: relay.requeue(s, uuid.UUID(order["id"]), by="ops:test"))
    assert relay_row(db, order["id"]) == {"state": "pending", "maybe_placed": True, "attempts": 0}
    provider.place_script = [Outcome(Status.RETRY)] * 4
    provider.lookup_script = [Outcome(Status.NOT_FOUND)] * 4
    states = [run_relay(db, provider, order["id"]) for _ in range(4)]
    assert states == ["pending", "pending", "pending", "needs_review"]  # a fresh count of attempts
    assert [c for c, _ in provider.calls] == ["lookup", "place"] * 4
    assert held(partner, member) == 16000


def test_requeue_after_review_looks_up_and_settles(partner, provider, db):
    member = rich_member(partner)
    order = redeem(partner, member, reward_code(db, provider), amount="10.00").json()
    provider.place_script = [Outcome(Status.UNKNOWN)] + [Outcome(Status.RETRY)] * 3
    provider.lookup_script = [Outcome(Status.NOT_FOUND)] * 3
    assert [run_relay(db, provider, order["id"]) for _ in range(4)][-1] == "needs_review"
    db.write(lambda s: relay.requeue(s, uuid.UUID(order["id"]), by="ops:test"))
    provider.calls.clear()
    provider.lookup_script = [Outcome(Status.FULFILLED, provider_order_id="P-9", delivery=CARD)]
    assert run_relay(db, provider, order["id"]) == "fulfilled"
    assert [c for c, _ in provider.calls] == ["lookup"]
    assert held(partner, member) == 0
    assert relay_row(db, order["id"])["maybe_placed"] is True  # never cleared
