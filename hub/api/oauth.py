"""The OAuth2 authorization server and OpenID provider, on the Flask app.

Authlib's AuthorizationServer runs the token endpoint (client credentials for partner back
ends; authorization code with PKCE and refresh tokens for brand clients), revocation (RFC 7009)
and introspection (RFC 7662): client authentication, grant checks and error responses are
Authlib's. What the provider decides (the authorization request, consent, tokens' contents,
grants, logout) is in hub/identity/oidc; these handlers only translate HTTP.
"""
from __future__ import annotations

import hmac
import secrets
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (ClientMixin, InsecureTransportError, InvalidGrantError,
                                    InvalidScopeError, grants)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Blueprint, Flask, Response, jsonify, render_template, request

from hub.api.runtime import Hub
from hub.digest import sha256_hex
from hub.identity import clients, ratelimit
from hub.identity.clients import ALL_SCOPES
from hub.identity.oidc import authorize, discovery, issue, logout
from hub.identity.oidc import clients as brand_clients
from hub.identity.oidc import grants as oidc_grants
from hub.identity.oidc.clients import BrandClient
from hub.identity.oidc.models import Grant
from hub.api import oidc_text  # noqa: F401  (adds the pages' texts to hub.web.i18n)
from hub.web import session as web_session

TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthClient(ClientMixin):
    """Authlib's view of a client: a partner or ops back end (client credentials), or a
    brand's site or app (authorization code, refresh tokens)."""

    def __init__(self, client_id: str, secret_hash: str, scopes, partner_id,
                 brand: BrandClient | None = None):
        self.client_id = client_id
        self.secret_hash = secret_hash
        self.scopes = list(scopes)
        self.partner_id = partner_id
        self.brand = brand

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None  # never fall back to a registered URI (authlib#712)

    def get_allowed_scope(self, scope):
        if not scope:
            return " ".join(self.scopes)
        requested = scope_to_list(scope)
        if not set(requested) <= set(self.scopes):
            # Refuse rather than silently issue a token that can do nothing asked of it.
            raise InvalidScopeError(description="this client may not have that scope")
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri):
        return self.brand is not None and redirect_uri in self.brand.redirect_uris

    def check_client_secret(self, client_secret):
        # A public client's hash is empty, which no SHA-256 hex digest equals.
        return hmac.compare_digest(self.secret_hash, sha256_hex(client_secret))

    def check_endpoint_auth_method(self, method, endpoint):
        if self.brand is not None and self.brand.public:
            return method == "none" and endpoint in ("token", "revocation")
        return method in TOKEN_AUTH_METHODS

    def check_response_type(self, response_type):
        return self.brand is not None and response_type == "code"

    def check_grant_type(self, grant_type):
        if self.brand is None:
            return grant_type == "client_credentials"
        return grant_type in ("authorization_code", "refresh_token")

    @property
    def sector(self) -> str:
        return brand_clients.sector(self.partner_id, self.client_id)


class Member:
    """The resource owner of a grant, as Authlib's grants and token generator see it."""

    def __init__(self, grant: Grant):
        self.grant = grant

    def get_user_id(self):
        return self.grant.subject  # the pairwise sub: no global member id leaves the hub


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(TOKEN_AUTH_METHODS)


class RedeemedCode:
    """Authlib's view of a code that was just used up (hub.identity.oidc.grants.redeem_code)."""

    def __init__(self, redeemed: oidc_grants.RedeemedCode):
        self.grant = redeemed.grant
        self.redirect_uri = redeemed.redirect_uri
        self.code_challenge = redeemed.code_challenge
        self.nonce = redeemed.nonce

    def get_redirect_uri(self):
        return self.redirect_uri  # always set: Authlib then requires the same at the token endpoint

    def get_scope(self):
        return self.grant.scope


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = [*TOKEN_AUTH_METHODS, "none"]

    def query_authorization_code(self, code, client):
        # Used up here, in its own transaction: a second use revokes the grant and that must
        # stick although the request fails.
        redeemed = self.server.hub.db.write(
            lambda s: oidc_grants.redeem_code(s, code, client.get_client_id()))
        return RedeemedCode(redeemed) if redeemed else None

    def delete_authorization_code(self, authorization_code):
        """Nothing left to do: query_authorization_code used the code up."""

    def authenticate_user(self, authorization_code):
        return Member(authorization_code.grant)


class S256Only(CodeChallenge):
    """PKCE with S256 only (Authlib defaults to `plain`). Required of public clients, which
    the authorization endpoint already refuses without a code_challenge."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return "S256" if authorization_code.code_challenge else None


class IdTokenExtension:
    """Adds the ID token to a code exchange's response, built by hub.identity.oidc.issue
    (not Authlib's OpenIDCode: that one merges all of userinfo into the ID token and takes
    auth_time from the code's creation)."""

    def __init__(self, hub: Hub):
        self.hub = hub

    def __call__(self, grant):
        grant.register_hook("after_create_token_response", self.add_id_token)

    def add_id_token(self, grant, response):
        _, token, _ = response
        if "openid" not in scope_to_list(token.get("scope", "")):
            return
        code = grant.request.authorization_code
        settings = self.hub.settings
        with self.hub.db.read() as session:
            token["id_token"] = issue.id_token(
                session, self.hub.keys, issuer=settings.issuer, ttl=settings.id_token_ttl,
                grant=code.grant, nonce=code.nonce, access_token=token.get("access_token"),
                secret_key=settings.secret_key)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh tokens, rotated on every use. Authlib's order: authenticate_refresh_token, then
    the client and scope checks, then issue_token, save_token and revoke_old_credential. The
    token is used up only in save_token, with its successor stored in the same transaction:
    a request refused on the way (invalid_scope, another client presenting it) leaves it
    usable. A rotated token presented again is reuse and revokes the family, whether found
    so at once (authenticate_refresh_token) or by losing the race to rotate (save_token)."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*TOKEN_AUTH_METHODS, "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotated on every use

    def authenticate_refresh_token(self, refresh_token):
        # A write: a rotated token's reuse revokes the family, and that must stick although
        # the request fails. A usable token is only read.
        grant = self.server.hub.db.write(lambda s: oidc_grants.usable_refresh_token(s, refresh_token))
        return GrantToken(grant, refresh_token=refresh_token) if grant else None

    def authenticate_user(self, refresh_token):
        return Member(refresh_token.grant)

    def save_token(self, token):
        """Rotate: use up the presented token and store its successor, in one transaction."""
        hub = self.server.hub
        presented = self.request.refresh_token.refresh_token
        rotated = hub.db.write(lambda s: oidc_grants.rotate_refresh_token(
            s, presented, token.get("refresh_token"), hub.settings.refresh_token_ttl))
        if not rotated:
            # Another request used it first (the family is revoked now), or it expired or
            # its grant was revoked since it was checked: no token goes out.
            raise InvalidGrantError()

    def revoke_old_credential(self, refresh_token):
        """Nothing left to do: save_token used it up."""


class GrantToken:
    """A token (refresh token, or a member's access token) standing for its grant."""

    def __init__(self, grant: Grant, claims: dict | None = None, refresh_token: str | None = None):
        self.grant = grant
        self.claims = claims  # an access token's, None for a refresh token
        self.refresh_token = refresh_token  # the presented refresh token, at the token endpoint

    def check_client(self, client):
        return self.grant.client_id == client.get_client_id()

    def get_scope(self):
        return self.grant.scope

    @property
    def client_id(self):
        return self.grant.client_id

    @property
    def sector(self):
        return self.grant.sector

    def is_expired(self):
        return False  # only live tokens are looked up

    def is_revoked(self):
        return False

    def introspection(self, issuer: str) -> dict:
        if self.claims is not None:
            return _access_token_info(self.claims)
        return {"active": True, "token_type": "refresh_token", "scope": self.grant.scope,
                "client_id": self.grant.client_id, "sub": self.grant.subject, "iss": issuer}


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """JWT access tokens (RFC 9068) for the hub's API; opaque refresh tokens (offline_access)."""

    def __init__(self, hub: Hub, audience: str):
        ttl = hub.settings.access_token_ttl
        super().__init__(issuer=hub.settings.issuer, expires_generator=lambda client, grant_type: ttl,
                         refresh_token_generator=lambda **_: secrets.token_urlsafe(32))
        self.hub = hub
        self.audience = audience

    def generate(self, grant_type, client, user=None, scope=None, expires_in=None,
                 include_refresh_token=True):
        offline = user is not None and "offline_access" in user.grant.scope.split()
        return super().generate(grant_type, client, user, scope, expires_in,
                                include_refresh_token and offline)

    def get_jwks(self):
        return self.hub.keys.signing_key()

    def get_audiences(self, client, user, scope):
        return self.audience

    def get_auth_time(self, user):
        return int(user.grant.auth_time.timestamp()) if user else None

    def get_extra_claims(self, client, grant_type, user, scope):
        if user is not None:
            # The grant, so that the API refuses the token once the grant is revoked.
            return {"gid": str(user.grant.id)}
        return {"partner_id": str(client.partner_id)} if client.partner_id else {}


class Revocation(RevocationEndpoint):
    """RFC 7009. Revoking a member's access or refresh token revokes its whole grant. A
    partner back end's client-credentials token cannot be revoked (nothing stores it); it
    expires within HUB_ACCESS_TOKEN_TTL."""

    CLIENT_AUTH_METHODS = [*TOKEN_AUTH_METHODS, "none"]

    def query_token(self, token_string, token_type_hint):
        return self.server.find_token(token_string, token_type_hint)

    def revoke_token(self, token, request):
        self.server.hub.db.write(lambda s: oidc_grants.revoke(s, token.grant.id))


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for authenticated confidential clients, about tokens of their own partner."""

    CLIENT_AUTH_METHODS = list(TOKEN_AUTH_METHODS)

    def query_token(self, token_string, token_type_hint):
        if token_type_hint != "refresh_token":
            claims = self.server.hub.tokens.verify(token_string)
            if claims is not None and "gid" not in claims:
                return ClientToken(claims)  # a back end's client-credentials token
        return self.server.find_token(token_string, token_type_hint)

    def check_permission(self, token, client, request):
        return token.sector in (client.sector, None) and (
            token.sector is not None or token.client_id == client.get_client_id())

    def introspect_token(self, token):
        return token.introspection(self.server.hub.settings.issuer)


class ClientToken:
    """A verified client-credentials access token, for introspection."""

    def __init__(self, claims: dict):
        self.claims = claims
        self.client_id = claims["client_id"]
        partner = claims.get("partner_id")
        self.sector = partner if partner else None

    def is_expired(self):
        return False  # verified just now

    def is_revoked(self):
        return False

    def introspection(self, issuer):
        return _access_token_info(self.claims)


def _access_token_info(claims: dict) -> dict:
    keep = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "auth_time")
    return {"active": True, "token_type": "Bearer", **{k: claims[k] for k in keep if k in claims}}


class HubAuthorizationServer(AuthorizationServer):
    def __init__(self, flask_app: Flask, hub: Hub, **kwargs):
        super().__init__(flask_app, **kwargs)
        self.hub = hub

    def find_token(self, token_string: str, hint: str | None) -> GrantToken | None:
        """The live grant of a member's access or refresh token, or None."""
        hub = self.hub
        with hub.db.read() as session:
            if hint != "refresh_token":
                claims = hub.tokens.verify(token_string)
                if claims is not None:
                    grant = issue.member_grant(session, claims)
                    return GrantToken(grant, claims) if grant else None
            grant = oidc_grants.refresh_token_grant(session, token_string)
        return GrantToken(grant) if grant else None



# --- HTTP ------------------------------------------------------------------------------

blueprint = Blueprint("oidc", __name__, template_folder="templates")


def _hub() -> Hub:
    from hub.api import runtime

    return runtime.current()


def _source():
    return request.form if request.method == "POST" else request.args


def _params() -> dict:
    """The request's parameters (query, or form for POST), first value of each."""
    return {k: v for k, v in _source().items(multi=False)}


def _repeated() -> frozenset:
    return frozenset(k for k, values in _source().lists() if len(values) > 1)


def _page(template: str, status: int = 200, **context) -> Response:
    # Never framed (clickjacking) nor cached: hub/hardening/headers.py, on every response.
    return Response(render_template(template, **context), status, headers=NO_STORE)


def _error_page(message: str) -> Response:
    return _page("oidc/error.html", 400, message=message)


def _redirect(location: str) -> Response:
    """A redirect that carries a code, or an answer about the member: never cached."""
    return Response(status=302, headers={"Location": location, **NO_STORE})


def _answer(outcome) -> Response:
    if isinstance(outcome, authorize.Redirect):
        return _redirect(outcome.location)
    if isinstance(outcome, authorize.NeedLogin):
        return _redirect(web_session.login_url(outcome.next_url, force=outcome.force,
                                               login_hint=outcome.login_hint,
                                               ui_locales=outcome.ui_locales))
    if isinstance(outcome, authorize.AskConsent):
        return _page("oidc/consent.html", client=outcome.client, scopes=outcome.scopes,
                     claims=outcome.claims, params=outcome.params)
    return _error_page(outcome.message)


@blueprint.get("/.well-known/openid-configuration")
def provider_metadata():
    response = jsonify(discovery.metadata(_hub().settings.issuer))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@blueprint.get("/oauth/jwks")
def jwks():
    response = jsonify(_hub().keys.public_jwks())
    # Short: clients refetch on an unknown kid anyway, and a rotation shows within minutes.
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.route("/oauth/authorize", methods=["GET", "POST"])
def authorization():
    hub, params = _hub(), _params()
    member = web_session.current_login()
    repeated = _repeated()
    return _answer(hub.db.write(lambda s: authorize.decide(
        s, hub.keys, hub.settings.issuer, hub.settings.secret_key, params, member, repeated=repeated)))


@blueprint.post("/oauth/consent")
def consent_decision():
    web_session.check_csrf()
    hub = _hub()
    params = {k: v for k, v in _params().items() if k not in (web_session.CSRF_FIELD, "decision")}
    if request.form.get("decision") != "allow":
        with hub.db.read() as session:
            return _answer(authorize.refuse(session, hub.keys, hub.settings.issuer, params))
    member = web_session.current_login()
    return _answer(hub.db.write(lambda s: authorize.decide(
        s, hub.keys, hub.settings.issuer, hub.settings.secret_key, params, member,
        consent_given=True)))


@blueprint.route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo():
    hub = _hub()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    if token is None and request.method == "POST":
        token = request.form.get("access_token")  # RFC 6750 2.2
    if not token:
        return _bearer_error(401, None)
    claims = hub.tokens.verify(token)
    if claims is None:
        return _bearer_error(401, "invalid_token")
    with hub.db.read() as session:
        grant = issue.member_grant(session, claims)
        if grant is None:
            return _bearer_error(401, "invalid_token")
        if "openid" not in claims.get("scope", "").split():
            return _bearer_error(403, "insufficient_scope")
        info = issue.userinfo(session, grant, claims.get("scope", ""))
    response = jsonify(info)
    response.headers.update(NO_STORE)
    return response


def _bearer_error(status: int, error: str | None) -> Response:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    body = {"error": error} if error else {"error": "invalid_request"}
    response = jsonify(body)
    response.status_code = status
    response.headers["WWW-Authenticate"] = challenge
    return response


@blueprint.route("/oauth/logout", methods=["GET", "POST"])
def end_session():
    """RP-initiated logout. With an id_token_hint of this browser's login session the member
    is logged out at once; otherwise they confirm first (a page of another site must not log
    them out by loading this URL)."""
    hub, params = _hub(), _params()
    try:
        with hub.db.read() as session:
            asked = logout.end_session_request(session, hub.keys, hub.settings.issuer, params)
    except logout.LogoutRequestError as exc:
        return _error_page(str(exc))
    member = web_session.current_login()
    if member is not None:
        confirmed = request.method == "POST" and request.form.get("confirm") == "yes"
        if confirmed:
            web_session.check_csrf()
        elif not asked.names_session(hub.settings.secret_key, member.session_id):
            fields = {k: v for k, v in params.items() if k != web_session.CSRF_FIELD}
            return _page("oidc/logout_confirm.html", params=fields)
        web_session.logout_current()  # ends the session, queues the back-channel notices
    if asked.redirect_to:
        return _redirect(asked.redirect_to)
    return _page("oidc/logged_out.html")


# CORS: browser apps (public clients) call these from their own origin. The metadata and keys
# are public; the token endpoints and userinfo answer only the origins of registered
# redirect URIs.
PUBLIC_PATHS = ("/.well-known/openid-configuration", "/oauth/jwks")
CLIENT_PATHS = ("/oauth/token", "/oauth/revoke", "/oauth/userinfo")
ORIGINS_TTL = 30.0


class Origins:
    def __init__(self, hub: Hub):
        self.hub = hub
        self._origins: set[str] = set()
        self._loaded_at = float("-inf")

    def allowed(self, origin: str) -> bool:
        # Stale, or an origin not seen yet (a client registered since): look again, at most
        # once a second for unknown origins.
        age = time.monotonic() - self._loaded_at
        if age > ORIGINS_TTL or (origin not in self._origins and age > 1):
            with self.hub.db.read() as session:
                self._origins = brand_clients.web_origins(session)
            self._loaded_at = time.monotonic()
        return origin in self._origins


def _cors(origins: Origins):
    def add_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if not origin or request.path not in PUBLIC_PATHS + CLIENT_PATHS:
            return response
        if request.path in PUBLIC_PATHS:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origins.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.add("Vary", "Origin")
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Max-Age"] = "600"
        return response
    return add_headers


def _limit_client_request(hub: Hub) -> None:
    """Count a POST to the token, introspection or revocation endpoint per client IP and per
    claimed client id (Basic auth or the form's client_id; counted whether it exists or not)."""
    ip = web_session.client_ip()
    claimed = request.authorization.username if request.authorization else request.form.get("client_id")
    also = [(ratelimit.OAUTH_CLIENT, claimed)] if claimed else []
    hub.limiter.attempt(ratelimit.OAUTH_IP, ip, *also)


def init_oauth(flask_app: Flask, hub: Hub, audience: str) -> None:
    def query_client(client_id):
        if "\x00" in client_id:
            return None  # no client has one, and PostgreSQL refuses it in a query
        with hub.db.read() as session:
            brand = brand_clients.find(session, client_id)
            row = None if brand else clients.find_active(session, client_id)
        if brand is not None:
            return OAuthClient(brand.client_id, brand.secret_hash, brand.scopes, brand.partner_id, brand)
        if row is not None:
            return OAuthClient(row.client_id, row.secret_hash, row.scopes.split(), row.partner_id)
        return None

    def save_token(token, request):
        # Access tokens are self-contained JWTs; only a member's refresh token is stored (hashed).
        user = request.user
        if isinstance(user, Member) and token.get("refresh_token"):
            hub.db.write(lambda s: oidc_grants.store_refresh_token(
                s, user.grant.id, token["refresh_token"], hub.settings.refresh_token_ttl))

    server = HubAuthorizationServer(flask_app, hub, query_client=query_client, save_token=save_token)
    server.scopes_supported = list(ALL_SCOPES) + list(brand_clients.MEMBER_SCOPES)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(AuthorizationCodeGrant, [S256Only(required=True), IdTokenExtension(hub)])
    server.register_grant(RefreshTokenGrant)
    server.register_token_generator("default", AccessTokenGenerator(hub, audience))
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)

    def respond(make):
        _limit_client_request(hub)
        try:
            response = make()
        except InsecureTransportError as exc:
            # Plain http is refused except on localhost; deploy behind TLS.
            response = server.handle_error_response(None, exc)
        response.headers.update(NO_STORE)
        return response

    @flask_app.post("/oauth/token")
    def issue_token():
        return respond(server.create_token_response)

    @flask_app.post("/oauth/revoke")
    def revoke_token():
        return respond(lambda: server.create_endpoint_response(Revocation.ENDPOINT_NAME))

    @flask_app.post("/oauth/introspect")
    def introspect_token():
        return respond(lambda: server.create_endpoint_response(Introspection.ENDPOINT_NAME))

    # A browser's CORS preflight gets Flask's automatic OPTIONS answer, with `_cors`'s headers.
    flask_app.after_request(_cors(Origins(hub)))
    flask_app.register_blueprint(blueprint)
