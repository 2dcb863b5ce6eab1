"""The lean path (hub/api/lean.py) answers POST /v1/transactions, /v1/transactions/batch,
/v1/redemptions, /v1/conversions/quotes and /v1/conversions exactly as connexion's stack
(routing, security, validation, Flask) does.

Every test sends the same request twice: once to the app as served (`lean`: create_app's
HubApp, which takes these operations itself) and once to connexion's middleware alone
(`framework`: what the app was before the lean path). A counter on the lean router proves
which path answered, so a parity check cannot pass by both requests taking the same path.
"""
from __future__ import annotations

import json
import secrets

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Api, assert_problem, token_for
from tests.integration.test_conversions import pair  # noqa: F401  (a fixture)
from tests.integration.test_redemptions import in_house, rich_member

# What a client can see of a response, besides its body.
HEADERS = ("content-type", "www-authenticate", "idempotent-replayed")


class Paths:
    def __init__(self, app, http, monkeypatch):
        self.http = http  # the app as served: the lean path for the hot operations
        self.framework = TestClient(app.middleware, base_url=ISSUER)  # connexion only
        self.lean_hits = 0
        match = app.lean.match

        def counting(scope):
            chain = match(scope)
            self.lean_hits += chain is not None
            return chain

        monkeypatch.setattr(app.lean, "match", counting)

    def both(self, path, *, json_body=None, content=None, headers=None, lean_expected=True):
        """(lean response, framework response) to the same request."""
        kwargs = {"headers": headers or {}, "follow_redirects": False}
        if content is not None:
            kwargs["content"] = content
        else:
            kwargs["json"] = json_body
        hits = self.lean_hits
        lean = self.http.post(path, **kwargs)
        assert self.lean_hits == hits + lean_expected, "the lean path did not take the request"
        framework = self.framework.post(path, **kwargs)
        assert self.lean_hits == hits + lean_expected, "the framework request took the lean path"
        return lean, framework


@pytest.fixture
def paths(app, http, monkeypatch) -> Paths:
    return Paths(app, http, monkeypatch)


def assert_same(lean, framework, *, same_body: bool = True):
    assert lean.status_code == framework.status_code, (lean.text, framework.text)
    for name in HEADERS:
        assert lean.headers.get(name) == framework.headers.get(name), name
    if same_body:
        assert lean.content == framework.content


def auth(api: Api, **extra) -> dict:
    return {**api.headers, **extra}


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Bearer", "Basic dXNlcjpwdw==", "Bearer a.b.c"],
    ids=["missing", "garbage", "empty", "basic", "forged"],
)
def test_unauthenticated_is_the_same_401(paths, partner, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    body = {"items": [partner.purchase_body(partner.enrol(), "1000")]} if "batch" in path else (
        partner.purchase_body(partner.enrol(), "1000")
    )
    lean, framework = paths.both(path, json_body=body, headers=headers)
    assert_problem(lean, 401, "unauthenticated")
    assert lean.headers["www-authenticate"] == "Bearer"
    assert_same(lean, framework)


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
def test_a_token_without_the_scope_is_the_same_403(paths, http, partner, path):
    reader = Api(http, token_for(http, partner.client_id, partner.secret, scope="transactions:read"))
    member = partner.enrol()
    body = {"items": [partner.purchase_body(member, "1000")]} if "batch" in path else (
        partner.purchase_body(member, "1000")
    )
    lean, framework = paths.both(path, json_body=body, headers=auth(reader))
    assert_problem(lean, 403, "insufficient-scope")
    assert_same(lean, framework)
    assert partner.balance(member)["posted"] == 0


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
@pytest.mark.parametrize(
    "content",
    [b'{"program": ', b"", b"[1, 2", b"null", b"\xef\xbb\xbf{}", b"{\"a\": \"\\ud800\"", b"[" * 100_000],
    ids=["truncated", "empty", "unclosed", "null", "bom", "bad-escape", "too-deep"],
)
def test_malformed_json_is_the_same_400(paths, partner, path, content):
    headers = auth(partner.api, **{"Content-Type": "application/json"})
    lean, framework = paths.both(path, content=content, headers=headers)
    assert_problem(lean, 400, "invalid-request")
    assert_same(lean, framework)


def test_a_body_that_is_not_utf8_is_the_same_400(paths, partner):
    headers = auth(partner.api, **{"Content-Type": "application/json"})
    lean, framework = paths.both("/v1/transactions", content=b'{"program": "\xff"}', headers=headers)
    assert_problem(lean, 400, "invalid-request")
    assert_same(lean, framework)


@pytest.mark.parametrize(
    "change",
    [
        {"unknown_field": 1},
        {"amount": 100},
        {"amount": "1e9"},
        {"program": None},
        {"member": {"external_id": "a", "card_number": "123456"}},
        {"member": "someone"},
        {"occurred_at": "yesterday"},
        {"transaction_id": ""},
        {"currency": "idr"},
    ],
    ids=["unknown-field", "amount-number", "amount-exponent", "program-null", "two-identifiers",
         "member-string", "time", "empty-id", "currency-case"],
)
def test_schema_violations_are_the_same_400(paths, partner, change):
    member = partner.enrol()
    body = {**partner.purchase_body(member, "1000"), **change}
    lean, framework = paths.both("/v1/transactions", json_body=body, headers=auth(partner.api))
    assert_problem(lean, 400, "invalid-request")
    assert_same(lean, framework)
    assert partner.balance(member)["posted"] == 0


def test_a_missing_field_is_the_same_400(paths, partner):
    body = partner.purchase_body(partner.enrol(), "1000")
    del body["occurred_at"]
    lean, framework = paths.both("/v1/transactions", json_body=body, headers=auth(partner.api))
    assert_problem(lean, 400, "invalid-request")
    assert_same(lean, framework)


@pytest.mark.parametrize(
    "body",
    [{"items": []}, {"items": {}}, {"items": [1]}, {}, {"items": [{}], "extra": 1}, []],
    ids=["empty", "object", "not-objects", "no-items", "extra", "array"],
)
def test_batch_schema_violations_are_the_same_400(paths, partner, body):
    lean, framework = paths.both("/v1/transactions/batch", json_body=body, headers=auth(partner.api))
    assert_problem(lean, 400, "invalid-request")
    assert_same(lean, framework)


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "with space", "é"], ids=["empty", "too-long", "space", "non-ascii"]
)
def test_an_invalid_idempotency_key_is_the_same_400(paths, partner, key):
    body = partner.purchase_body(partner.enrol(), "1000")
    headers = auth(partner.api, **{"Idempotency-Key": key.encode()})
    lean, framework = paths.both("/v1/transactions", json_body=body, headers=headers)
    assert lean.status_code == 400
    assert_same(lean, framework)


def test_a_valid_idempotency_key_is_checked_once_built_and_others_by_connexion(paths, partner, monkeypatch):
    """The lean path checks header parameters with validators built at start-up; only a
    header that fails (or is repeated) goes to connexion's per-request check, whose 400 the
    client gets."""
    from connexion.validators.parameter import ParameterValidator

    asked, validate = [], ParameterValidator.validate
    monkeypatch.setattr(ParameterValidator, "validate", lambda self, scope: asked.append(1) or validate(self, scope))
    body, other = (partner.purchase_body(partner.enrol(), "1000") for _ in range(2))  # enrolling asks connexion
    asked.clear()
    ok = partner.api.http.post("/v1/transactions", json=body, headers=auth(partner.api, **{"Idempotency-Key": "k-1"}))
    assert ok.status_code == 201 and asked == []
    bad = partner.api.http.post("/v1/transactions", json=body, headers=auth(partner.api, **{"Idempotency-Key": "a b"}))
    assert_problem(bad, 400, "invalid-request")
    assert asked == [1]
    repeated = [*auth(partner.api).items(), ("Idempotency-Key", "k-2"), ("Idempotency-Key", "k 3")]
    lean, framework = paths.both("/v1/transactions", json_body=other, headers=repeated)
    assert lean.status_code == framework.status_code and asked == [1, 1, 1]


@pytest.mark.parametrize(
    "change, status, slug",
    [
        ({"amount": "0"}, 422, "invalid-amount"),
        ({"amount": "10.001"}, 422, "invalid-amount"),
        ({"currency": "XYZ"}, 422, "unknown-currency"),
        ({"currency": "USD"}, 422, "currency-not-accepted"),
        ({"occurred_at": "2099-01-01T00:00:00Z"}, 422, "invalid-time"),
        ({"member": {"external_id": "nobody"}}, 404, "member-not-found"),
        ({"program": "NOPE"}, 404, "program-not-found"),
    ],
)
def test_domain_refusals_are_the_same_problem(paths, partner, change, status, slug):
    member = partner.enrol()
    body = {**partner.purchase_body(member, "1000"), **change}
    lean, framework = paths.both("/v1/transactions", json_body=body, headers=auth(partner.api))
    assert_problem(lean, status, slug)
    assert_same(lean, framework)
    assert partner.balance(member)["posted"] == 0


def test_success_is_a_201_with_the_framework_s_body(paths, partner):
    member = partner.enrol()
    body = partner.purchase_body(member, "12345.67")
    lean = partner.api.post("/v1/transactions", body)
    assert paths.lean_hits == 1
    assert lean.status_code == 201 and lean.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in lean.headers
    created = lean.json()
    assert created["points"] == 12 and created["member_id"] == member
    # The transaction as the framework path shows it: the same view, byte for byte.
    shown = paths.framework.get(f"/v1/transactions/{created['id']}", headers=partner.api.headers)
    assert shown.status_code == 200 and shown.content == lean.content
    # And the same purchase through the framework: the same fields, but for ids and times.
    other = paths.framework.post("/v1/transactions", json={**body, "transaction_id": "other-1"},
                                 headers=partner.api.headers)
    assert other.status_code == 201
    varying = {"id", "transaction_id", "created_at"}
    assert {k: v for k, v in other.json().items() if k not in varying} == {
        k: v for k, v in created.items() if k not in varying
    }
    assert list(other.json()) == list(created)  # same keys, same order
    assert partner.balance(member)["posted"] == 24


def test_a_duplicate_transaction_id_is_the_same_200_and_409(paths, partner):
    member = partner.enrol()
    body = partner.purchase_body(member, "10000")
    first = partner.api.post("/v1/transactions", body)
    assert first.status_code == 201
    lean, framework = paths.both("/v1/transactions", json_body=body, headers=auth(partner.api))
    assert lean.status_code == 200 and lean.json() == first.json()
    assert_same(lean, framework)
    changed = {**body, "amount": "20000"}
    lean, framework = paths.both("/v1/transactions", json_body=changed, headers=auth(partner.api))
    assert_problem(lean, 409, "duplicate-transaction")
    assert_same(lean, framework)
    assert partner.balance(member)["posted"] == 10


@pytest.mark.parametrize("first_path", ["lean", "framework"])
def test_an_idempotency_key_replays_across_paths_and_rejects_another_body(paths, partner, first_path):
    member = partner.enrol()
    body = partner.purchase_body(member, "5000")
    key = f"k-{secrets.token_hex(8)}"
    headers = auth(partner.api, **{"Idempotency-Key": key})
    client = paths.http if first_path == "lean" else paths.framework
    first = client.post("/v1/transactions", json=body, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # The key is bound to the same fingerprint (method, path, body) whichever path stored it.
    lean, framework = paths.both("/v1/transactions", json_body=body, headers=headers)
    assert lean.status_code == 201 and lean.headers["idempotent-replayed"] == "true"
    assert lean.json() == first.json()
    assert_same(lean, framework)
    other = {**body, "transaction_id": f"x-{secrets.token_hex(4)}"}
    lean, framework = paths.both("/v1/transactions", json_body=other, headers=headers)
    assert_problem(lean, 422, "idempotency-key-reused")
    assert_same(lean, framework)
    assert partner.balance(member)["posted"] == 5


def test_a_batch_is_the_same_item_by_item_and_replays_across_paths(paths, partner):
    member = partner.enrol()
    good = partner.purchase_body(member, "10000", txn="lb-1")
    first = partner.api.post("/v1/transactions/batch", {"items": [good]})
    assert first.status_code == 200
    items = [
        good,  # a duplicate: the same transaction in both answers
        {**partner.purchase_body(member, "1000"), "unknown": 1},
        {**good, "amount": "2000"},
        {**partner.purchase_body(member, "3000"), "member": {"external_id": "nobody"}},
        {**partner.purchase_body(member, "1000"), "currency": "USD"},
    ]
    lean, framework = paths.both("/v1/transactions/batch", json_body={"items": items},
                                 headers=auth(partner.api))
    assert [r["status"] for r in lean.json()["results"]] == ["duplicate"] + ["failed"] * 4
    assert_same(lean, framework)  # nothing was created, so the answers are equal byte for byte
    key = f"kb-{secrets.token_hex(8)}"
    fresh = {"items": [partner.purchase_body(member, "7000")]}
    stored = paths.framework.post("/v1/transactions/batch", json=fresh,
                                  headers=auth(partner.api, **{"Idempotency-Key": key}))
    assert stored.status_code == 200 and stored.json()["created"] == 1
    lean, framework = paths.both("/v1/transactions/batch", json_body=fresh,
                                 headers=auth(partner.api, **{"Idempotency-Key": key}))
    assert lean.headers["idempotent-replayed"] == "true" and lean.content == stored.content
    assert_same(lean, framework)
    assert partner.balance(member)["posted"] == 17


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/v1/transactions?x=1", {"Content-Type": "application/json"}),
        ("/v1/transactions", {"Content-Type": "text/plain"}),
        ("/v1/transactions", {"Content-Type": "application/json; charset=utf-8"}),
        ("/v1/transactions/", {"Content-Type": "application/json"}),
    ],
    ids=["query", "text", "charset", "slash"],
)
def test_other_requests_are_left_to_connexion(paths, partner, path, headers):
    # A member that does not exist: a request that gets through is refused, twice alike.
    body = {**partner.purchase_body(partner.enrol(), "1000"), "member": {"external_id": "nobody"}}
    lean, framework = paths.both(path, content=json.dumps(body).encode(),
                                 headers=auth(partner.api, **headers), lean_expected=False)
    assert lean.status_code in (307, 400, 404, 415)
    assert_same(lean, framework)
    assert lean.headers.get("location") == framework.headers.get("location")


# --- POST /v1/redemptions ------------------------------------------------------------------

def redemption_body(partner, member: str, reward: str, **extra) -> dict:
    return {"reward": reward, "program": partner.program, "member": {"member_id": member}, **extra}


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-token", "Bearer a.b.c"], ids=["missing", "garbage", "forged"]
)
def test_redemptions_unauthenticated_is_the_same_401(paths, partner, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    body = redemption_body(partner, partner.enrol(), in_house(partner))
    lean, framework = paths.both("/v1/redemptions", json_body=body, headers=headers)
    assert_problem(lean, 401, "unauthenticated")
    assert_same(lean, framework)


def test_redemptions_without_the_scope_is_the_same_403(paths, http, partner):
    reader = Api(http, token_for(http, partner.client_id, partner.secret, scope="transactions:read"))
    body = redemption_body(partner, partner.enrol(), in_house(partner))
    lean, framework = paths.both("/v1/redemptions", json_body=body, headers=auth(reader))
    assert_problem(lean, 403, "insufficient-scope")
    assert_same(lean, framework)


@pytest.mark.parametrize(
    "content", [b'{"reward": ', b"", b"null"], ids=["truncated", "empty", "null"]
)
def test_redemptions_malformed_json_is_the_same_400(paths, partner, content):
    headers = auth(partner.api, **{"Content-Type": "application/json"})
    lean, framework = paths.both("/v1/redemptions", content=content, headers=headers)
    assert_problem(lean, 400, "invalid-request")
    assert_same(lean, framework)


@pytest.mark.parametrize(
    "change, status, slug",
    [
        ({"bogus": 1}, 400, "invalid-request"),
        ({"recipient": {"name": "no email"}}, 400, "invalid-request"),
        ({"reward": "NO-SUCH-REWARD"}, 404, "reward-not-found"),
        ({"program": "NOPE"}, 404, "program-not-found"),
        ({"member": {"external_id": "nobody"}}, 404, "member-not-found"),
        ({"amount": "10.00"}, 422, "amount-not-allowed"),
        ({"points": "too many"}, 400, "invalid-request"),
        ({"pay_with": {"strategy": "cheapest_first"}}, 422, "invalid-payment"),
        ({"pay_with": {"strategy": "dearest_first"}}, 400, "invalid-request"),
    ],
    ids=["unknown-field", "recipient", "reward", "program", "member", "amount", "extra", "program-and-pay-with",
         "pay-with-schema"],
)
def test_redemption_refusals_are_the_same_problem(paths, partner, change, status, slug):
    member = rich_member(partner)
    body = {**redemption_body(partner, member, in_house(partner)), **change}
    lean, framework = paths.both("/v1/redemptions", json_body=body, headers=auth(partner.api))
    assert_problem(lean, status, slug)
    assert_same(lean, framework)
    assert partner.balance(member)["available"] == partner.balance(member)["posted"]


def test_insufficient_points_for_a_redemption_is_the_same_409(paths, partner):
    member = partner.enrol()
    body = redemption_body(partner, member, in_house(partner))
    lean, framework = paths.both("/v1/redemptions", json_body=body, headers=auth(partner.api))
    assert_problem(lean, 409, "insufficient-points")
    assert_same(lean, framework)


def test_a_redemption_is_the_framework_s_201_and_replays_across_paths(paths, partner):
    member = rich_member(partner)
    reward = in_house(partner)
    body = redemption_body(partner, member, reward)
    key = f"kr-{secrets.token_hex(8)}"
    headers = auth(partner.api, **{"Idempotency-Key": key})
    hits = paths.lean_hits
    first = paths.http.post("/v1/redemptions", json=body, headers=headers)
    assert paths.lean_hits == hits + 1
    assert first.status_code == 201 and first.headers["content-type"] == "application/json"
    order = first.json()
    assert order["state"] == "fulfilled" and order["delivery"]["code"]
    # The order as the framework path shows it: the same view, byte for byte.
    shown = paths.framework.get(f"/v1/redemptions/{order['id']}", headers=partner.api.headers)
    assert shown.status_code == 200 and shown.content == first.content
    # A replay (without the voucher code, shown once) is the same on both paths.
    lean, framework = paths.both("/v1/redemptions", json_body=body, headers=headers)
    assert lean.headers["idempotent-replayed"] == "true"
    assert lean.json() == {k: v for k, v in order.items() if k != "delivery"}
    assert_same(lean, framework)
    lean, framework = paths.both("/v1/redemptions", json_body={**body, "reward": in_house(partner)},
                                 headers=headers)
    assert_problem(lean, 422, "idempotency-key-reused")
    assert_same(lean, framework)
    # And a fresh order through the framework has the same shape.
    other = paths.framework.post("/v1/redemptions", json=body, headers=partner.api.headers)
    assert other.status_code == 201 and list(other.json()) == list(order)
    assert partner.balance(member)["posted"] == 5_000_000 - 1000


# --- POST /v1/conversions/quotes and /v1/conversions ------------------------------------------

@pytest.fixture
def convertible(pair):
    a, b, member = pair
    return a, {"from": a.program, "to": b.program, "points": 1000, "member": {"member_id": member}}


@pytest.mark.parametrize("path", ["/v1/conversions/quotes", "/v1/conversions"])
def test_conversions_unauthenticated_and_unscoped_are_the_same(paths, http, convertible, path):
    a, body = convertible
    lean, framework = paths.both(path, json_body=body, headers={"Authorization": "Bearer a.b.c"})
    assert_problem(lean, 401, "unauthenticated")
    assert_same(lean, framework)
    reader = Api(http, token_for(http, a.client_id, a.secret, scope="transactions:read"))
    lean, framework = paths.both(path, json_body=body, headers=auth(reader))
    assert_problem(lean, 403, "insufficient-scope")
    assert_same(lean, framework)


@pytest.mark.parametrize(
    "change, status, slug",
    [
        ({"bogus": 1}, 400, "invalid-request"),
        ({"points": 0}, 400, "invalid-request"),
        ({"points": 1050}, 422, "off-increment"),
        ({"points": 900}, 422, "below-minimum"),
        ({"points": 100_000}, 409, "insufficient-points"),
        ({"to": "NOPE"}, 404, "program-not-found"),
    ],
    ids=["unknown-field", "zero", "increment", "minimum", "insufficient", "program"],
)
def test_quote_refusals_are_the_same_problem(paths, convertible, change, status, slug):
    a, body = convertible
    lean, framework = paths.both("/v1/conversions/quotes", json_body={**body, **change}, headers=auth(a.api))
    assert_problem(lean, status, slug)
    assert_same(lean, framework)


def test_a_conversion_is_the_framework_s_201_and_a_used_quote_the_same_409(paths, convertible):
    a, body = convertible
    quoted, framework_quote = paths.both("/v1/conversions/quotes", json_body=body, headers=auth(a.api))
    assert quoted.status_code == framework_quote.status_code == 201
    assert list(quoted.json()) == list(framework_quote.json())  # same view; ids and expiry differ
    done = paths.http.post("/v1/conversions", json={"quote": quoted.json()["quote"]}, headers=auth(a.api))
    assert done.status_code == 201
    shown = paths.framework.get(f"/v1/conversions/{done.json()['id']}", headers=a.api.headers)
    assert shown.status_code == 200 and shown.content == done.content
    lean, framework = paths.both("/v1/conversions", json_body={"quote": quoted.json()["quote"]},
                                 headers=auth(a.api))
    assert_problem(lean, 409, "quote-used")
    assert_same(lean, framework)
