"""The provider's token endpoints besides the code exchange (revocation, introspection),
consent withdrawal, logout (RP-initiated and back-channel), forged tokens, `hub clients
create --redirect-uri`, and signing-key rotation."""
from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import pytest
import responses
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from hub.cli import main
from hub.identity import login
from hub.identity.account_models import MemberAccount
from hub.identity.keys import KeyStore
from hub.identity.oidc import logout
from hub.identity.oidc.models import Grant
from hub.notify.outbox import OutboxMessage
from tests.conftest import ISSUER, Api, token_for
from tests.integration.oidc_support import Browser, RelyingParty, log_in
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)
from tests.integration.test_oidc import register, sign_in


@pytest.fixture
def brand(ops, partner):
    return register(ops, partner.code, backchannel_logout_uri="https://brand.example/backchannel")


def introspect(rp, token, auth=None, **extra):
    return rp.session.post(f"{ISSUER}/oauth/introspect", data={"token": token, **extra},
                           auth=auth or (rp.client_id, rp.session.client_secret))


def test_introspection_of_access_and_refresh_tokens(rp, browser, partner, http):
    token = sign_in(browser, rp)
    active = introspect(rp, token["access_token"])
    assert active.status_code == 200 and active.headers["cache-control"] == "no-store"
    info = active.json()
    assert info["active"] is True and info["client_id"] == rp.client_id and "me:read" in info["scope"]
    assert introspect(rp, token["refresh_token"], token_type_hint="refresh_token").json()["active"] is True
    assert introspect(rp, "junk").json() == {"active": False}
    # The partner's back end (same partner) may introspect its brand's tokens.
    assert introspect(rp, token["access_token"], auth=(partner.client_id, partner.secret)).json()["active"]


def test_introspection_needs_an_authenticated_client_of_the_same_partner(rp, browser, other_partner):
    token = sign_in(browser, rp)["access_token"]
    refused = introspect(rp, token, auth=(rp.client_id, "wrong"))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    unauthenticated = rp.session.post(f"{ISSUER}/oauth/introspect", data={"token": token},
                                      auth=None, withhold_token=True)
    assert unauthenticated.status_code == 401
    other = introspect(rp, token, auth=(other_partner.client_id, other_partner.secret))
    assert other.json() == {"active": False}


def test_revoking_a_refresh_token_revokes_the_grant(http, rp, browser):
    token = sign_in(browser, rp)
    revoked = rp.session.post(f"{ISSUER}/oauth/revoke", data={
        "token": token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(rp.client_id, rp.session.client_secret))
    assert revoked.status_code == 200
    assert introspect(rp, token["access_token"]).json() == {"active": False}
    assert Api(http, token["access_token"]).get("/v1/me").status_code == 401
    # Revoking an unknown token is not an error (RFC 7009 2.2).
    assert rp.session.post(f"{ISSUER}/oauth/revoke", data={"token": "junk"},
                           auth=(rp.client_id, rp.session.client_secret)).status_code == 200


def test_withdrawn_consent_revokes_the_partners_tokens(http, rp, browser, partner):
    token = sign_in(browser, rp)
    me = Api(http, token["access_token"])
    listed = me.get("/v1/me/consents").json()["items"]
    assert [c["partner"] for c in listed] == [partner.code] and "email" in listed[0]["claims"]
    assert me.http.delete(f"/v1/me/consents/{partner.code}", headers=me.headers).status_code == 204
    assert me.get("/v1/me").status_code == 401
    assert introspect(rp, token["access_token"]).json() == {"active": False}
    assert introspect(rp, token["refresh_token"]).json() == {"active": False}
    # Asked again next time.
    assert browser.get(rp.authorize_url()).status_code == 200


def test_me_balances_across_programs(app, db, http, partner, other_partner, rp):
    member_id = partner.enrol()
    partner.buy(member_id, "50000")
    browser = Browser(app, log_in(db, member_id=uuid.UUID(member_id))[1])
    me = Api(http, sign_in(browser, rp)["access_token"]).get("/v1/me")
    assert me.status_code == 200
    (membership,) = me.json()["memberships"]
    assert membership["program"] == partner.program and membership["partner"] == partner.code
    assert membership["balance"]["available"] == 50


def _forge(claims: dict, header: dict, key) -> str:
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def test_forged_alg_none_and_foreign_audience_tokens_are_refused(http, rp, browser):
    token = sign_in(browser, rp)
    claims = jwt.decode(token["access_token"], KeySet.import_key_set(rp.jwks())).claims
    stranger = RSAKey.generate_key(2048)
    kid = json.loads(base64.urlsafe_b64decode(token["access_token"].split(".")[0] + "==="))["kid"]
    forged = _forge(claims, {"alg": "RS256", "kid": kid, "typ": "at+jwt"}, stranger)
    segments = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                for part in ({"alg": "none", "typ": "at+jwt"}, claims)]
    unsigned = ".".join(segments) + "."
    for bad in (forged, unsigned, token["id_token"]):  # an ID token's audience is the client
        assert Api(http, bad).get("/v1/me").status_code == 401
        answer = http.get("/oauth/userinfo", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]
        assert introspect(rp, bad).json() == {"active": False}


def test_partner_token_cannot_read_userinfo_or_me(http, partner):
    answer = http.get("/oauth/userinfo", headers=partner.api.headers)
    assert answer.status_code == 401
    assert partner.api.get("/v1/me").status_code == 403


def test_rp_initiated_logout_queues_back_channel_notices(db, app, rp, browser, member):
    token = sign_in(browser, rp)
    answer = browser.get("/oauth/logout", params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://brand.example/bye",
        "state": "s1"})
    assert answer.status_code == 302 and answer.headers["location"] == "https://brand.example/bye?state=s1"
    sid = member[0].session_id
    with db.read() as s:
        (message,) = s.scalars(select(OutboxMessage).where(
            OutboxMessage.topic == logout.BACKCHANNEL_TOPIC,
            OutboxMessage.key == f"{sid}:{rp.client_id}")).all()
    assert message.payload["client_id"] == rp.client_id
    # Logged out: the next authorization request needs a login.
    assert browser.get(rp.authorize_url(prompt="none")).headers["location"].find("login_required") > 0


def test_a_hint_from_another_login_session_asks_to_confirm(db, app, rp, browser, member):
    """The hint's (pairwise) sid is compared with the one derived from this browser's
    session: an ID token of the member's other browser does not log this one out unasked."""
    _, other_cookie = db.write(lambda s: login.start(
        s, s.get(MemberAccount, member[0].account_id), ("pwd",), ttl=timedelta(hours=1)))
    elsewhere = sign_in(Browser(app, other_cookie), rp)["id_token"]
    elsewhere_sid = rp.verify_id_token(elsewhere, None)["sid"]
    here = sign_in(browser, rp)["id_token"]
    assert rp.verify_id_token(here, None)["sid"] != elsewhere_sid
    page = browser.get("/oauth/logout", params={"id_token_hint": elsewhere})
    assert page.status_code == 200 and 'name="confirm"' in page.text
    assert "code=" in browser.get(rp.authorize_url(prompt="none")).headers["location"]
    done = browser.get("/oauth/logout", params={"id_token_hint": here})
    assert done.status_code == 200 and 'name="confirm"' not in done.text
    assert "login_required" in browser.get(rp.authorize_url(prompt="none")).headers["location"]


def test_logout_refuses_unregistered_redirects_and_confirms_without_a_hint(app, rp, browser):
    token = sign_in(browser, rp)
    bad = browser.get("/oauth/logout", params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example/"})
    assert bad.status_code == 400 and "location" not in bad.headers
    page = browser.get("/oauth/logout")
    assert page.status_code == 200 and 'name="confirm"' in page.text
    done = browser.submit(page, "confirm=yes")
    assert done.status_code == 200
    assert "login_required" in browser.get(rp.authorize_url(prompt="none")).headers["location"]


@responses.activate
def test_back_channel_logout_token_is_signed_and_complete(db, app, rp, browser, member):
    from hub.api import runtime

    hub = runtime.current()
    id_token = rp.verify_id_token(sign_in(browser, rp)["id_token"], None)
    sid = member[0].session_id
    db.write(lambda s: logout.notify_clients(s, sid))
    with db.read() as s:
        subject = s.scalar(select(Grant.subject).where(Grant.session_id == sid))
    responses.add(responses.POST, "https://brand.example/backchannel", status=200)
    assert logout.deliver(db, hub.keys, ISSUER, str(sid), rp.client_id, subject) == "delivered"
    (call,) = responses.calls
    sent = dict(p.split("=", 1) for p in call.request.body.split("&"))["logout_token"]
    decoded = jwt.decode(sent, KeySet.import_key_set(rp.jwks()), algorithms=["RS256"])
    claims = decoded.claims
    assert decoded.header["typ"] == "logout+jwt"
    assert claims["iss"] == ISSUER and claims["aud"] == rp.client_id
    assert claims["sid"] == id_token["sid"] != str(sid)  # the client's pairwise sid, as in its ID token
    assert claims["sub"] == subject and claims["jti"] and claims["iat"] <= time.time()
    assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    assert "nonce" not in claims
    responses.replace(responses.POST, "https://brand.example/backchannel", status=503)
    db.write(lambda s: logout.notify_clients(s, sid))
    assert logout.deliver(db, hub.keys, ISSUER, str(sid), rp.client_id, subject) == "retrying"


def test_cli_registers_a_brand_client(settings, monkeypatch, app, partner, browser):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    result = CliRunner().invoke(main, [
        "clients", "create", "--partner", partner.code, "--name", "shop", "--json",
        "--redirect-uri", "https://shop.example/cb", "--redirect-uri", "https://shop.example/cb2",
        "--post-logout-redirect-uri", "https://shop.example/bye",
        "--backchannel-logout-uri", "https://shop.example/bc"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    rp = RelyingParty(app, created["client_id"], created["client_secret"], "https://shop.example/cb2",
                      scope="openid email")
    assert rp.verify_id_token(sign_in(browser, rp)["id_token"], None)
    refused = CliRunner().invoke(main, ["clients", "create", "--name", "x", "--redirect-uri", "ftp://x"])
    assert refused.exit_code == 1 and "https" in refused.output


def test_rotated_keys_stay_published_until_their_tokens_expire(db, settings, partner, http):
    from hub.api import runtime

    hub = runtime.current()
    old = token_for(http, partner.client_id, partner.secret)
    # What the app publishes now (on an empty database two key stores starting at once may
    # each have made a first key: both are published, the newer signs).
    old_kids = {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]}
    new_kid = KeyStore(db, settings.secret_key).rotate()
    time.sleep(1.05)  # expect() reloads at most once a second (junk kids cost nothing)
    hub.keys.expect(new_kid)
    published = {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]}
    assert old_kids | {new_kid} <= published
    assert Api(http, old).get("/v1/programs").status_code == 200
    # Once its replacement is older than the longest token lifetime (here: none, and no
    # cache), a key is no longer published.
    store = KeyStore(db, settings.secret_key, refresh=0, token_lifetime=-60)
    assert {k["kid"] for k in store.public_jwks()["keys"]} == {new_kid}


def test_cors_for_browser_apps_of_registered_origins(http, brand):
    allowed = {"Origin": "https://brand.example"}
    preflight = http.options("/oauth/token", headers={**allowed, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://brand.example"
    stranger = http.options("/oauth/token", headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in stranger.headers
    keys = http.get("/oauth/jwks", headers={"Origin": "https://evil.example"})
    assert keys.headers["access-control-allow-origin"] == "*"
