"""The OpenID provider end to end: discovery, the authorization code flow with PKCE driven by
Authlib's client, ID tokens checked against the published JWKS, userinfo, /v1/me, pairwise
subjects, prompt/max_age, and the refusals of bad requests."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from authlib.integrations.base_client import OAuthError
from authlib.oidc.discovery import OpenIDProviderMetadata

from hub.identity import consent
from tests.conftest import ISSUER, Api
from tests.integration.oidc_support import Browser, RelyingParty, log_in, query
from tests.integration.oidc_support import browser, member, rp  # noqa: F401  (fixtures)

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def register(ops, partner_code: str, **extra) -> dict:
    body = {"name": "brand site", "partner": partner_code,
            "redirect_uris": ["https://brand.example/cb", "https://brand.example/cb2"],
            "post_logout_redirect_uris": ["https://brand.example/bye"],
            "scopes": ["openid", "profile", "email", "offline_access", "me:read", "me:write"], **extra}
    response = ops.post("/v1/clients", body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def brand(ops, partner):
    created = register(ops, partner.code)
    return created


def sign_in(browser, rp, **extra) -> dict:
    """Authorize (consenting if asked), exchange the code: the token response."""
    answer = browser.get(rp.authorize_url(**extra))
    if answer.status_code == 200:  # the consent page
        assert "brand site" in answer.text or "shop" in answer.text
        answer = browser.submit(answer, "decision=allow")
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith(rp.redirect_uri + "?") and query(callback)["state"] == rp.state
    assert answer.headers["cache-control"] == "no-store"
    return rp.exchange(callback)


def test_discovery_is_valid_and_jwks_publishes_public_keys_only(http):
    doc = http.get("/.well-known/openid-configuration").json()
    OpenIDProviderMetadata(doc).validate()
    assert doc["issuer"] == ISSUER and doc["subject_types_supported"] == ["pairwise"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    keys = http.get(doc["jwks_uri"].removeprefix(ISSUER)).json()["keys"]
    assert keys and all(k["kid"] and not PRIVATE_JWK_MEMBERS & k.keys() for k in keys)


def test_code_flow_with_pkce_issues_verifiable_tokens(http, db, rp, browser, member):
    token = sign_in(browser, rp)
    assert token["token_type"].lower() == "bearer" and token["refresh_token"]
    claims = rp.verify_id_token(token["id_token"], token["access_token"])
    login = member[0]
    assert claims["auth_time"] == int(login.auth_time.timestamp())
    # The sid is pairwise (this partner's), never the hub's own session id.
    assert claims["sid"] and claims["sid"] != str(login.session_id) and claims["amr"] == ["pwd"]
    # Scope claims go to userinfo, not into the ID token.
    assert not {"email", "name", "given_name"} & claims.keys()
    info = rp.session.get(f"{ISSUER}/oauth/userinfo").json()
    assert info["sub"] == claims["sub"] and info["email"] == login.email and info["name"] == "Siti Rahayu"
    assert "phone_number" not in info
    posted = rp.session.post(f"{ISSUER}/oauth/userinfo").json()
    assert posted == info
    me = Api(http, token["access_token"]).get("/v1/me")
    assert me.status_code == 200 and me.json() == {"memberships": []}


def test_token_response_is_not_cached(app, rp, browser):
    answer = browser.get(rp.authorize_url())
    answer = browser.submit(answer, "decision=allow")
    code = query(answer.headers["location"])["code"]
    response = rp.session.post(f"{ISSUER}/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.verifier}, auth=(rp.client_id, rp.session.client_secret))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"


def test_silent_login_keeps_auth_time_and_skips_consent(rp, browser):
    first = rp.verify_id_token(sign_in(browser, rp)["id_token"], None)
    time.sleep(1.1)
    answer = browser.get(rp.authorize_url(prompt="none"))
    assert answer.status_code == 302  # no consent page the second time
    second = rp.verify_id_token(rp.exchange(answer.headers["location"])["id_token"], None)
    assert second["auth_time"] == first["auth_time"] and second["sub"] == first["sub"]
    assert second["iat"] > first["iat"]


def test_nonce_is_optional(rp, browser):
    url = rp.authorize_url()
    url = "&".join(p for p in url.split("&") if not p.startswith("nonce="))
    answer = browser.submit(browser.get(url), "decision=allow")
    token = rp.exchange(answer.headers["location"])
    rp.nonce = None
    assert "nonce" not in rp.verify_id_token(token["id_token"], token["access_token"])


def test_prompt_none_without_login_or_consent(app, rp, browser):
    answer = Browser(app).get(rp.authorize_url(prompt="none"))
    assert answer.status_code == 302
    assert query(answer.headers["location"]) == {
        "error": "login_required", "error_description": "the member must log in", "state": rp.state}
    answer = browser.get(rp.authorize_url(prompt="none"))
    assert query(answer.headers["location"])["error"] == "consent_required"


def test_login_needed_goes_to_the_login_page_with_hints(app, rp, browser):
    answer = Browser(app).get(rp.authorize_url(login_hint="siti@example.com", ui_locales="id"))
    assert answer.status_code == 302
    target = answer.headers["location"]
    assert target.startswith("/account/login?") and query(target)["login_hint"] == "siti@example.com"
    assert query(target)["ui_locales"] == "id" and query(target)["next"].startswith("/oauth/authorize?")
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        time.sleep(1.1)
        answer = browser.get(rp.authorize_url(**extra))
        target = answer.headers["location"]
        assert target.startswith("/account/login?") and query(target)["force"] == "1"
        # Back from a forced login that did not happen (same old auth_time): asked again.
        again = browser.get(query(target)["next"])
        assert again.headers["location"].startswith("/account/login?")


def test_max_age_satisfied_by_a_recent_login(rp, browser):
    token = sign_in(browser, rp, max_age="3600")
    assert rp.verify_id_token(token["id_token"], token["access_token"])["auth_time"]


@pytest.mark.parametrize("change, message", [
    ({"client_id": "cli_unknown"}, "unknown client"),
    ({"redirect_uri": "https://evil.example/cb"}, "not registered"),
    ({"redirect_uri": "https://brand.example/cb/"}, "not registered"),
    ({"redirect_uri": None}, "no redirect_uri"),
    ({"client_id": "cli_\x00"}, "malformed request"),
])
def test_untrusted_client_or_redirect_uri_gets_an_error_page(browser, rp, change, message):
    params = query(rp.authorize_url())
    params.update(change)
    answer = browser.get("/oauth/authorize", params={k: v for k, v in params.items() if v is not None})
    assert answer.status_code == 400 and "location" not in answer.headers
    assert message in answer.text


@pytest.mark.parametrize("change, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "profile"}, "invalid_scope"),
    ({"scope": "openid members:read"}, "invalid_scope"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"max_age": "\u00b2"}, "invalid_request"),
    ({"nonce": "n" * 256}, "invalid_request"),
    ({"id_token_hint": "not.a.token"}, "invalid_request"),
    ({"request": "eyJ..."}, "request_not_supported"),
])
def test_bad_authorization_requests_are_redirected_with_an_error(browser, rp, change, error):
    params = {**query(rp.authorize_url()), **change}
    answer = browser.get("/oauth/authorize", params=params)
    assert answer.status_code == 302
    sent = query(answer.headers["location"])
    assert sent["error"] == error and sent["state"] == rp.state


def test_repeated_parameters_are_refused(browser, rp):
    params = list(query(rp.authorize_url()).items())
    answer = browser.get("/oauth/authorize", params=params + [("scope", "openid")])
    assert query(answer.headers["location"])["error"] == "invalid_request"
    answer = browser.get("/oauth/authorize", params=params + [("redirect_uri", "https://brand.example/cb2")])
    assert answer.status_code == 400 and "location" not in answer.headers


def test_public_client_must_use_pkce(app, ops, partner, browser):
    created = register(ops, partner.code, public=True)
    assert "client_secret" not in created and created["public"] is True
    rp = RelyingParty(app, created["client_id"], None, "https://brand.example/cb")
    params = {k: v for k, v in query(rp.authorize_url()).items() if not k.startswith("code_challenge")}
    answer = browser.get("/oauth/authorize", params=params)
    assert query(answer.headers["location"])["error"] == "invalid_request"
    token = sign_in(browser, rp)
    assert rp.verify_id_token(token["id_token"], token["access_token"])


def _code(browser, rp) -> str:
    answer = browser.get(rp.authorize_url())
    if answer.status_code == 200:
        answer = browser.submit(answer, "decision=allow")
    return query(answer.headers["location"])["code"]


def _exchange(rp, real_code, **fields):
    data = {"grant_type": "authorization_code", "code": real_code, "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier, **fields}
    return rp.session.post(f"{ISSUER}/oauth/token", data={k: v for k, v in data.items() if v is not None},
                           auth=(rp.client_id, rp.session.client_secret))


@pytest.mark.parametrize("fields, error", [
    ({"code_verifier": None}, "invalid_request"),
    ({"code_verifier": "x" * 43}, "invalid_grant"),
    ({"redirect_uri": "https://brand.example/cb2"}, "invalid_grant"),
    ({"redirect_uri": None}, "invalid_grant"),
    ({"code": "forged-code"}, "invalid_grant"),
])
def test_bad_code_exchanges_are_refused(browser, rp, fields, error):
    answer = _exchange(rp, _code(browser, rp), **fields)
    assert answer.status_code == 400 and answer.json()["error"] == error


def test_wrong_client_secret_is_invalid_client(browser, rp):
    code = _code(browser, rp)
    answer = rp.session.post(f"{ISSUER}/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.verifier}, auth=(rp.client_id, "wrong"))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_expired_code_is_refused(db, browser, rp):
    from sqlalchemy import update

    from hub.db import utcnow
    from hub.digest import sha256_hex as token_hash
    from hub.identity.oidc.models import AuthorizationCode

    code = _code(browser, rp)
    db.write(lambda s: s.execute(update(AuthorizationCode).where(
        AuthorizationCode.code_hash == token_hash(code)).values(expires_at=utcnow())))
    assert _exchange(rp, code).json()["error"] == "invalid_grant"


def test_reused_code_is_refused_and_revokes_its_tokens(http, browser, rp):
    code = _code(browser, rp)
    first = _exchange(rp, code)
    assert first.status_code == 200
    tokens = first.json()
    me = Api(http, tokens["access_token"])
    assert me.get("/v1/me").status_code == 200
    second = _exchange(rp, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert me.get("/v1/me").status_code == 401
    refreshed = rp.session.post(f"{ISSUER}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(rp.client_id, rp.session.client_secret))
    assert refreshed.json()["error"] == "invalid_grant"


def test_refresh_tokens_rotate_and_reuse_revokes_the_family(http, browser, rp):
    token = sign_in(browser, rp)
    renewed = rp.session.refresh_token(f"{ISSUER}/oauth/token", refresh_token=token["refresh_token"])
    assert renewed["refresh_token"] != token["refresh_token"]
    assert Api(http, renewed["access_token"]).get("/v1/me").status_code == 200
    with pytest.raises(OAuthError) as refused:
        rp.session.refresh_token(f"{ISSUER}/oauth/token", refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    # The whole family is revoked: the newest refresh and access tokens too.
    assert Api(http, renewed["access_token"]).get("/v1/me").status_code == 401
    with pytest.raises(OAuthError):
        rp.session.refresh_token(f"{ISSUER}/oauth/token", refresh_token=renewed["refresh_token"])


def _refresh(rp, refresh_token: str, **fields):
    return rp.session.post(f"{ISSUER}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, **fields},
        auth=(rp.client_id, rp.session.client_secret), withhold_token=True)


def test_a_refresh_refused_for_its_scope_leaves_the_refresh_token_usable(app, http, brand, browser):
    rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb",
                      scope="openid offline_access me:read")
    token = sign_in(browser, rp)
    for wider in ("openid offline_access me:read me:write", "openid offline_access points:write"):
        refused = _refresh(rp, token["refresh_token"], scope=wider)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    # Not used up by the refusals: the same token refreshes, and nothing was revoked.
    assert Api(http, token["access_token"]).get("/v1/me").status_code == 200
    renewed = _refresh(rp, token["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert Api(http, renewed.json()["access_token"]).get("/v1/me").status_code == 200
    assert _refresh(rp, renewed.json()["refresh_token"]).status_code == 200


def test_a_refresh_token_presented_by_another_client_stays_usable_by_its_own(app, http, ops, partner, rp, browser):
    token = sign_in(browser, rp)
    sibling = register(ops, partner.code)  # another client of the same partner (same sector)
    other = RelyingParty(app, sibling["client_id"], sibling["client_secret"], "https://brand.example/cb")
    refused = _refresh(other, token["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert Api(http, token["access_token"]).get("/v1/me").status_code == 200
    renewed = _refresh(rp, token["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert Api(http, renewed.json()["access_token"]).get("/v1/me").status_code == 200


def test_a_refreshed_token_presented_again_revokes_the_family_even_for_a_refused_request(http, browser, rp):
    """Reuse is checked before the request's scope: a rotated token is a leaked one."""
    token = sign_in(browser, rp)
    renewed = _refresh(rp, token["refresh_token"]).json()
    reused = _refresh(rp, token["refresh_token"], scope="openid")
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert Api(http, renewed["access_token"]).get("/v1/me").status_code == 401
    assert _refresh(rp, renewed["refresh_token"]).json()["error"] == "invalid_grant"


def test_two_uses_of_one_refresh_token_at_once_one_wins_the_other_is_reuse(db, browser, rp):
    """Both requests pass the checks before either rotates the token (the race): the first
    rotation wins, the second is a reuse and revokes the family (the winner's new tokens too)."""
    from hub.identity.oidc import grants

    token = sign_in(browser, rp)["refresh_token"]
    first = db.write(lambda s: grants.usable_refresh_token(s, token))
    second = db.write(lambda s: grants.usable_refresh_token(s, token))
    assert first is not None and second is not None and first.id == second.id
    assert db.write(lambda s: grants.rotate_refresh_token(s, token, "successor-1", 3600)) is True
    assert db.write(lambda s: grants.rotate_refresh_token(s, token, "successor-2", 3600)) is False
    with db.read() as s:
        assert grants.live(s, first.id) is None
        assert grants.refresh_token_grant(s, "successor-1") is None
        assert grants.refresh_token_grant(s, "successor-2") is None


def test_concurrent_refreshes_with_one_token_issue_once_and_revoke_the_family(app, http, browser, rp):
    token = sign_in(browser, rp)["refresh_token"]
    clients = [RelyingParty(app, rp.client_id, rp.session.client_secret, rp.redirect_uri) for _ in range(6)]
    with ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(lambda each: _refresh(each, token), clients))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [400] * (len(clients) - 1), [a.text for a in answers]
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
    (won,) = [a.json() for a in answers if a.status_code == 200]
    assert Api(http, won["access_token"]).get("/v1/me").status_code == 401
    assert _refresh(rp, won["refresh_token"]).json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_access(app, brand, browser):
    rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb",
                      scope="openid email")
    assert "refresh_token" not in sign_in(browser, rp)


def test_claims_request_puts_only_named_claims_in_the_id_token(rp, browser):
    token = sign_in(browser, rp, claims='{"id_token": {"email": {"essential": true}, "shoe_size": null}}')
    claims = rp.verify_id_token(token["id_token"], token["access_token"])
    assert claims["email"].endswith("@example.com") and "name" not in claims and "shoe_size" not in claims


def test_claims_request_for_userinfo_needs_no_scope(app, brand, browser):
    rp = RelyingParty(app, brand["client_id"], brand["client_secret"], "https://brand.example/cb",
                      scope="openid")
    page = browser.get(rp.authorize_url(claims='{"userinfo": {"given_name": null}}'))
    assert "Your given name" in page.text and "Your email address" not in page.text
    token = rp.exchange(browser.submit(page, "decision=allow").headers["location"])
    assert rp.session.get(f"{ISSUER}/oauth/userinfo").json() == {
        "sub": rp.verify_id_token(token["id_token"], None)["sub"], "given_name": "Siti"}


def test_pairwise_subjects_per_partner(app, ops, partner, other_partner, browser, rp):
    mine = rp.verify_id_token(sign_in(browser, rp)["id_token"], None)["sub"]
    sibling = register(ops, partner.code)  # another client of the same partner: same sector
    rp2 = RelyingParty(app, sibling["client_id"], sibling["client_secret"], "https://brand.example/cb")
    other = register(ops, other_partner.code)
    rp3 = RelyingParty(app, other["client_id"], other["client_secret"], "https://brand.example/cb")
    assert rp2.verify_id_token(sign_in(browser, rp2)["id_token"], None)["sub"] == mine
    assert rp3.verify_id_token(sign_in(browser, rp3)["id_token"], None)["sub"] != mine


def test_partner_api_takes_the_pairwise_subject(app, db, rp, partner, other_partner):
    member_id = partner.enrol()
    browser = Browser(app, log_in(db, member_id=uuid.UUID(member_id))[1])
    sub = rp.verify_id_token(sign_in(browser, rp)["id_token"], None)["sub"]
    body = partner.purchase_body(member_id, "25000")
    body["member"] = {"subject": sub}
    posted = partner.api.post("/v1/transactions", body)
    assert posted.status_code == 201, posted.text
    assert posted.json()["member_id"] == member_id and posted.json()["points"] == 25
    # Another partner cannot use it, nor a sub never issued.
    other_partner.enrol()
    foreign = {**other_partner.purchase_body(member_id, "1000"), "member": {"subject": sub}}
    assert other_partner.api.post("/v1/transactions", foreign).status_code == 404
    unknown = {**partner.purchase_body(member_id, "1000"), "member": {"subject": "A" * 43}}
    assert partner.api.post("/v1/transactions", unknown).status_code == 404


def test_consent_page_in_indonesian_and_refusal(rp, browser):
    page = browser.get(rp.authorize_url(ui_locales="id"))
    assert page.status_code == 200 and "Bagikan ke brand site?" in page.text
    assert "Melihat alamat email Anda" in page.text and "Izinkan" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    refused = browser.submit(page, "decision=deny")
    assert query(refused.headers["location"]) == {
        "error": "access_denied", "error_description": "the member did not agree", "state": rp.state}


def test_consent_form_needs_its_csrf_token(rp, browser):
    page = browser.get(rp.authorize_url())
    forged = browser.post("/oauth/consent", {**query(rp.authorize_url()), "decision": "allow"})
    assert forged.status_code == 400 and "location" not in forged.headers
    assert browser.submit(page, "decision=allow").status_code == 302


def test_id_token_hint_of_another_member_asks_for_a_login(app, db, rp, browser):
    other = Browser(app, log_in(db)[1])
    hint = sign_in(other, rp)["id_token"]
    sign_in(browser, rp)
    answer = browser.get(rp.authorize_url(id_token_hint=hint, prompt="none"))
    assert query(answer.headers["location"])["error"] == "login_required"
    answer = browser.get(rp.authorize_url(id_token_hint=hint))
    assert answer.headers["location"].startswith("/account/login?")


def test_client_secret_post_authenticates_too(browser, rp):
    code = _code(browser, rp)
    answer = rp.session.post(f"{ISSUER}/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.verifier, "client_id": rp.client_id,
        "client_secret": rp.session.client_secret}, withhold_token=True)
    assert answer.status_code == 200, answer.text
    assert rp.verify_id_token(answer.json()["id_token"], answer.json()["access_token"])


def test_forged_id_token_hint_is_refused(rp, browser):
    token = sign_in(browser, rp)
    header, payload, signature = token["id_token"].split(".")
    forged = ".".join([header, payload, signature[::-1]])
    answer = browser.get(rp.authorize_url(id_token_hint=forged))
    assert query(answer.headers["location"])["error"] == "invalid_request"
    logout = browser.get("/oauth/logout", params={"id_token_hint": forged})
    assert logout.status_code == 400 and "location" not in logout.headers


def test_openid_alone_shares_nothing_so_asks_no_consent(app, db, rp, browser, member):
    """A brand asking only for `openid` gets its pairwise sub and nothing else, with no consent
    page (and no consent recorded); asking for anything more asks the member first."""
    plain = RelyingParty(app, rp.client_id, rp.session.client_secret, rp.redirect_uri, scope="openid")
    answer = browser.get(plain.authorize_url(prompt="none"))
    assert answer.status_code == 302 and "code" in query(answer.headers["location"]), answer.text
    token = plain.exchange(answer.headers["location"])
    assert set(plain.verify_id_token(token["id_token"], token["access_token"])) >= {"sub", "iss", "aud"}
    assert plain.session.get(f"{ISSUER}/oauth/userinfo").json().keys() == {"sub"}
    with db.read() as s:
        assert consent.list_for(s, member[0].member_id) == []
    more = browser.get(rp.authorize_url(prompt="none"))
    assert query(more.headers["location"])["error"] == "consent_required"
    assert browser.get(plain.authorize_url(prompt="consent")).status_code == 200  # asked for: shown
