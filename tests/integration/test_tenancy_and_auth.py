"""Client credentials, scopes, and partners isolated from each other."""
from __future__ import annotations

import base64
import json
import time
import uuid

from hub.identity.clients import PARTNER_SCOPES
from tests.conftest import Api, assert_problem, token_for


def claims(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decode(header), decode(payload)


def test_token_is_an_rfc9068_jwt_with_the_partner_and_no_store(http, partner):
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(partner.client_id, partner.secret))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    header, payload = claims(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256" and header["kid"]
    assert payload["client_id"] == partner.client_id and payload["sub"] == partner.client_id
    assert payload["aud"] == "http://127.0.0.1/v1" and payload["iss"] == "http://127.0.0.1"
    assert set(payload["scope"].split()) == set(PARTNER_SCOPES)
    assert uuid.UUID(payload["partner_id"])


def test_client_secret_post_also_works_and_wrong_secrets_do_not(http, partner):
    ok = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": partner.client_id, "client_secret": partner.secret})
    assert ok.status_code == 200
    bad = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(partner.client_id, "wrong"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    grant = http.post("/oauth/token", data={"grant_type": "password"}, auth=(partner.client_id, partner.secret))
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    scope = http.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "root"}, auth=(partner.client_id, partner.secret))
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"


def test_a_token_without_the_scope_is_refused(http, partner):
    reader = Api(http, token_for(http, partner.client_id, partner.secret, scope="members:read"))
    member = partner.enrol()
    assert reader.get(f"/v1/members/{member}/balances").status_code == 200
    refused = reader.post("/v1/transactions", partner.purchase_body(member, "1000"))
    assert_problem(refused, 403, "insufficient-scope")
    assert partner.balance(member)["posted"] == 0
    # partner tokens cannot reach ops operations, and ops tokens hold no partner data
    assert partner.api.get("/v1/partners").status_code == 403


def test_missing_forged_and_expired_tokens_are_401(http, partner, settings):
    member = partner.enrol()
    path = f"/v1/members/{member}"
    assert http.get(path).status_code == 401
    header, payload = partner.api.headers["Authorization"].split()[1].split(".")[:2]
    forged = f"{header}.{payload}.AAAA"
    response = http.get(path, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["type"].endswith("/unauthenticated")

    from hub.api import runtime

    hub = runtime.current()
    from authlib.jose import JsonWebKey, jwt

    key = JsonWebKey.import_key_set(hub.keys.signing_jwks())
    expired = jwt.encode(
        {"alg": "RS256", "typ": "at+jwt"},
        {"iss": settings.issuer, "aud": "http://127.0.0.1/v1", "sub": "x", "client_id": "x",
         "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600, "jti": "j", "scope": "members:read"},
        key,
    ).decode()
    assert http.get(path, headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_partners_cannot_see_or_touch_each_others_data(partner, other_partner):
    member = partner.enrol(external_id="shared-id", email="Same@Example.com")
    txn = partner.buy(member, "10000")
    b = other_partner.api
    assert b.get(f"/v1/members/{member}").status_code == 404
    assert b.get(f"/v1/members/{member}/balances").status_code == 404
    assert b.get(f"/v1/members/{member}/history").status_code == 404
    assert b.get(f"/v1/transactions/{txn['id']}").status_code == 404
    assert b.get("/v1/members", external_id="shared-id").json() == {"items": []}
    # posting to A's program, or naming A's member in B's program, finds nothing
    assert b.post("/v1/transactions", partner.purchase_body(member, "1000")).status_code == 404
    assert b.post("/v1/transactions", {**other_partner.purchase_body(member, "1000")}).status_code == 404
    assert b.post("/v1/members", {"program": other_partner.program, "member_id": member}).status_code == 404
    # B may use the same identifiers for its own member: identifiers are per program
    own = other_partner.enrol(external_id="shared-id")
    assert own != member
    assert partner.balance(member)["posted"] == 10
    assert [p["code"] for p in b.get("/v1/programs").json()["items"]] == [other_partner.program]


def test_a_partner_client_cannot_obtain_ops_scopes(http, partner):
    response = http.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "ops:write"}, auth=(partner.client_id, partner.secret)
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_a_client_secret_is_never_stored_not_even_for_a_replay(ops, db, partner):
    from sqlalchemy import select

    from hub.idempotency import IdempotencyKey

    first = ops.post("/v1/clients", {"name": "crm", "partner": partner.code}, key="client-once")
    replay = ops.post("/v1/clients", {"name": "crm", "partner": partner.code}, key="client-once")
    secret = first.json()["client_secret"]
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["client_id"] == first.json()["client_id"] and "client_secret" not in replay.json()
    with db.read() as s:
        assert all(secret not in body for body in s.scalars(select(IdempotencyKey.body)))
