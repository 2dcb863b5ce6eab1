"""The example brand site's back-channel logout endpoint (partners/brandsite): a logout token
ends the brand's sessions of that sid (or of that sub), and a token with a bad signature,
another issuer or audience, no logout event, a nonce, an old iat or a replayed jti is
refused with 400 and ends nothing."""
from __future__ import annotations

import secrets
import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from partners.brandsite.app import LOGOUT_EVENT, create_app
from partners.brandsite.config import Brand, Client
from partners.brandsite.sessions import BrandSession

ISSUER = "http://127.0.0.1:8000"
CLIENT_ID = "cli_brand"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


@pytest.fixture
def site():
    app = create_app(Brand(code="t", name="Test brand", partner="P", program="P", port=8199),
                     Client(ISSUER, CLIENT_ID, "secret"))
    hub = app.extensions["brandsite"]["hub"]
    # The provider's metadata and keys, as discovery would have fetched them.
    hub.server_metadata.update(
        issuer=ISSUER, jwks_uri=f"{ISSUER}/oauth/jwks", id_token_signing_alg_values_supported=["RS256"],
        jwks=KeySet([KEY]).as_dict(private=False), _loaded_at=time.time())
    return app


def token(key=KEY, header=None, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT_ID, "iat": now, "exp": now + 120, "jti": secrets.token_urlsafe(8),
              "sub": "sub-1", "sid": "sid-1", "events": {LOGOUT_EVENT: {}}}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "logout+jwt", **(header or {})}, claims, key)


def sessions_of(app):
    store = app.extensions["brandsite"]["sessions"]
    for sid, sub in (("sid-1", "sub-1"), ("sid-2", "sub-1"), ("sid-3", "sub-2")):
        store.start(BrandSession(sid=sid, sub=sub, name="", email="", id_token="", token={}))
    return store


def post(app, logout_token):
    return app.test_client().post("/oidc/backchannel-logout", data={"logout_token": logout_token})


def test_a_logout_token_ends_the_sessions_of_its_sid(site):
    store = sessions_of(site)
    response = post(site, token())
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert len(store) == 2
    assert store.end_matching("sid-1", None) == 0


def test_without_sid_every_session_of_the_sub_ends(site):
    store = sessions_of(site)
    assert post(site, token(sid=None)).status_code == 200
    assert len(store) == 1


other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.mark.parametrize("bad", [
    {"key": other_key},  # signed by someone else with the same kid
    {"iss": "http://evil.example"},
    {"aud": "cli_other"},
    {"events": {"http://schemas.openid.net/event/other": {}}},
    {"events": None},
    {"nonce": "n"},
    {"iat": int(time.time()) - 3600, "exp": int(time.time()) + 60},
    {"iat": int(time.time()) + 3600},
    {"sid": None, "sub": None},
    {"header": {"typ": "JWT"}},
], ids=["signature", "iss", "aud", "event", "no-events", "nonce", "old-iat", "future-iat", "no-sid-sub", "typ"])
def test_bad_logout_tokens_are_refused_and_end_nothing(site, bad):
    store = sessions_of(site)
    response = post(site, token(**bad))
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
    assert len(store) == 3


def test_a_replayed_logout_token_is_refused(site):
    sessions_of(site)
    once = token()
    assert post(site, once).status_code == 200
    assert post(site, once).status_code == 400
    assert post(site, "").status_code == 400
    assert post(site, "not.a.jwt").status_code == 400
