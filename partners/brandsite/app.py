"""A partner brand's website as a relying party of the hub: sign-in with the coalition account
through Authlib's Flask OIDC client (discovery, confidential client, PKCE S256, nonce), the
member's points from the hub's /v1/me, RP-initiated logout, and back-channel logout.

Opening the site with no session of its own first asks the hub silently (`prompt=none`):
a member already logged in at the hub is signed in without a form. If the hub answers
`consent_required` (the member has not shared anything with this partner yet), the site
sends the browser on to the hub's consent page: one click, no password.
"""
from __future__ import annotations

import logging
import secrets
import time

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, redirect, render_template, request, session, url_for
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from partners.brandsite.config import SCOPE, Brand, Client
from partners.brandsite.sessions import BrandSession, MemoryCache, SeenTokens, SessionStore

log = logging.getLogger(__name__)

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 300  # seconds: an older logout token is refused (its iat)
CLOCK_SKEW = 60
# The hub answers these to prompt=none when the member must do something there first.
CONTINUE_INTERACTIVELY = ("consent_required", "interaction_required")


class LogoutTokenError(ValueError):
    pass


def create_app(brand: Brand, client: Client) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)  # sessions live in memory: a restart ends them anyway
    app.config.update(
        # Sites on one host share cookies whatever their port: a name per brand.
        SESSION_COOKIE_NAME=f"{brand.code}_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not brand.base_url.startswith("http://"),
    )
    sessions, seen = SessionStore(), SeenTokens()
    oauth = OAuth(app, cache=MemoryCache())
    hub = oauth.register(
        "hub",
        client_id=client.client_id,
        client_secret=client.client_secret,
        server_metadata_url=f"{client.issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": brand.scope, "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic", "timeout": 10},
    )
    app.extensions["brandsite"] = {"brand": brand, "sessions": sessions, "hub": hub}

    def current() -> BrandSession | None:
        return sessions.get(session.get("key"))

    @app.get("/")
    def home():
        signed_in = current()
        if signed_in is None and not session.pop("checked", False):
            # Silent single sign-on: is the member logged in at the hub already?
            return redirect(url_for("login", silent=1))
        points, points_error = None, None
        if signed_in is not None and signed_in.shared:
            points, points_error = _points(hub, client, signed_in)
        return render_template("page.html", brand=brand, member=signed_in, points=points,
                               points_error=points_error, notice=request.args.get("notice"))

    @app.get("/login")
    def login():
        """silent=1: is the member logged in at the hub and sharing with us? (prompt=none, the
        full scope); silent=2: the same with the brand's own scope, after a consent_required;
        share=1: the member asked to show their name and points here (may ask consent)."""
        silent, extra = request.args.get("silent"), {}
        scope = SCOPE if silent == "1" or request.args.get("share") else brand.scope
        if silent:
            extra["prompt"] = "none"
        session["asked"] = scope
        return hub.authorize_redirect(brand.redirect_uri, scope=scope, **extra)

    @app.get("/oidc/callback")
    def callback():
        error = request.args.get("error")
        if error == "consent_required" and session.get("asked") != brand.scope:
            # Not sharing with us (yet): a brand that can do with less signs in with that.
            return redirect(url_for("login", silent=2))
        if error in CONTINUE_INTERACTIVELY:
            return redirect(url_for("login"))
        if error:
            # login_required (not logged in at the hub), access_denied (the member said no)...
            session["checked"] = True
            notice = None if error == "login_required" else "not-signed-in"
            return redirect(url_for("home", notice=notice))
        try:
            token = hub.authorize_access_token()
            claims = token["userinfo"]  # the ID token, verified (signature, iss, aud, exp, nonce, at_hash)
            profile = hub.userinfo(token=token)
        except (OAuthError, JoseError, ValueError, KeyError) as exc:
            log.warning("%s: sign-in failed: %s", brand.code, exc)
            session["checked"] = True
            return redirect(url_for("home", notice="sign-in-failed"))
        name = " ".join(filter(None, (profile.get("given_name"), profile.get("family_name"))))
        granted = str(token.get("scope") or session.get("asked", brand.scope)).split()
        sessions.end(session.get("key"))
        session.clear()
        session["key"] = sessions.start(BrandSession(
            sid=claims.get("sid"), sub=claims["sub"], name=profile.get("name") or name,
            email=profile.get("email", ""), id_token=token["id_token"],
            shared=set(SCOPE.split()) <= set(granted),
            token={k: token[k] for k in ("access_token", "token_type", "expires_at") if k in token}))
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout():
        signed_in = current()
        sessions.end(session.pop("key", None))
        if signed_in is None:
            session["checked"] = True
            return redirect(url_for("home"))
        # RP-initiated logout: the hub ends its login session (and tells the other brands).
        return hub.logout_redirect(post_logout_redirect_uri=brand.post_logout_redirect_uri,
                                   id_token_hint=signed_in.id_token)

    @app.get("/oidc/logged-out")
    def logged_out():
        try:
            hub.validate_logout_response()  # the state we sent
        except OAuthError:
            pass  # a stale or forged return: nothing to do but show the signed-out page
        session["checked"] = True
        return redirect(url_for("home", notice="signed-out"))

    @app.post("/oidc/backchannel-logout")
    def backchannel_logout():
        headers = {"Cache-Control": "no-store"}
        try:
            claims = _verify_logout_token(hub, client, request.form.get("logout_token", ""), seen)
        except LogoutTokenError as exc:
            log.warning("%s: logout token refused: %s", brand.code, exc)
            return {"error": "invalid_request", "error_description": str(exc)}, 400, headers
        ended = sessions.end_matching(claims.get("sid"), claims.get("sub"))
        log.info("%s: back-channel logout ended %d session(s)", brand.code, ended)
        return "", 200, headers

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "brand": brand.code}

    return app


def _points(hub, client: Client, signed_in: BrandSession) -> tuple[list[dict] | None, str | None]:
    """The member's memberships and balances, from the hub with the member's access token."""
    if (signed_in.token.get("expires_at") or float("inf")) < time.time():
        return None, "expired"
    try:
        response = hub.get(f"{client.issuer}/v1/me", token=signed_in.token)
    except OSError as exc:
        return None, type(exc).__name__
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    return response.json().get("memberships", []), None


def _verify_logout_token(hub, client: Client, token: str, seen: SeenTokens) -> dict:
    """OIDC Back-Channel Logout 1.0, 2.6: signature against the hub's JWKS (fetched again
    once for an unknown kid: a rotated key), iss, aud, iat, events, sid or sub, no nonce; and
    a jti seen before is a replay."""
    if not token:
        raise LogoutTokenError("no logout_token")
    metadata = hub.load_server_metadata()
    algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    try:
        try:
            decoded = jwt.decode(token, KeySet.import_key_set(hub.fetch_jwk_set()), algorithms=algorithms)
        except InvalidKeyIdError:
            decoded = jwt.decode(token, KeySet.import_key_set(hub.fetch_jwk_set(force=True)),
                                 algorithms=algorithms)
    except (JoseError, ValueError) as exc:
        raise LogoutTokenError(f"bad signature or format ({type(exc).__name__})") from None
    claims, now = decoded.claims, time.time()
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    events = claims.get("events")
    if decoded.header.get("typ") not in (None, "logout+jwt"):
        raise LogoutTokenError("typ is not logout+jwt")
    if claims.get("iss") != metadata["issuer"]:
        raise LogoutTokenError("wrong iss")
    if client.client_id not in audiences:
        raise LogoutTokenError("not for this client (aud)")
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)) or iat > now + CLOCK_SKEW or iat < now - LOGOUT_TOKEN_MAX_AGE:
        raise LogoutTokenError("iat missing, in the future or too old")
    if isinstance(claims.get("exp"), (int, float)) and claims["exp"] < now - CLOCK_SKEW:
        raise LogoutTokenError("expired")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise LogoutTokenError("no back-channel logout event")
    if "nonce" in claims:
        raise LogoutTokenError("a logout token carries no nonce")
    if not claims.get("sid") and not claims.get("sub"):
        raise LogoutTokenError("neither sid nor sub")
    if not claims.get("jti") or not seen.first_time(str(claims["jti"])):
        raise LogoutTokenError("jti missing or replayed")
    return claims
