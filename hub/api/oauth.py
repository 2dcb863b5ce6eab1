"""POST /oauth/token: OAuth2 client credentials (RFC 6749 4.4) issuing JWT access tokens
(RFC 9068), with Authlib's authorization server on the Flask app."""
from __future__ import annotations

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InsecureTransportError, InvalidScopeError, grants
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Flask

from hub.api.runtime import Hub
from hub.identity import clients
from hub.identity.clients import ALL_SCOPES
from hub.identity.models import ApiClient

TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OAuthClient(ClientMixin):
    """Authlib's view of an ApiClient row."""

    def __init__(self, row: ApiClient):
        self.row = row
        self.scopes = row.scopes.split()

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        if not scope:
            return " ".join(self.scopes)
        requested = scope_to_list(scope)
        if not set(requested) <= set(self.scopes):
            # Refuse rather than silently issue a token that can do nothing asked of it.
            raise InvalidScopeError(description="this client may not have that scope")
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return clients.secret_matches(self.row, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return endpoint == "token" and method in TOKEN_AUTH_METHODS

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(TOKEN_AUTH_METHODS)


class AccessTokenGenerator(JWTBearerTokenGenerator):
    def __init__(self, hub: Hub, audience: str):
        ttl = hub.settings.access_token_ttl
        super().__init__(issuer=hub.settings.issuer, expires_generator=lambda client, grant_type: ttl)
        self.hub = hub
        self.audience = audience

    def get_jwks(self):
        return self.hub.keys.signing_jwks()

    def get_audiences(self, client, user, scope):
        return self.audience

    def get_extra_claims(self, client, grant_type, user, scope):
        partner_id = client.row.partner_id
        return {"partner_id": str(partner_id)} if partner_id else {}


def init_token_endpoint(flask_app: Flask, hub: Hub, audience: str) -> None:
    def query_client(client_id):
        with hub.db.read() as session:
            row = clients.find_active(session, client_id)
        return OAuthClient(row) if row else None

    # JWT access tokens are self-contained: nothing to store.
    server = AuthorizationServer(flask_app, query_client=query_client, save_token=lambda *_: None)
    server.scopes_supported = list(ALL_SCOPES)
    server.register_grant(ClientCredentialsGrant)
    server.register_token_generator("default", AccessTokenGenerator(hub, audience))

    @flask_app.post("/oauth/token")
    def issue_token():
        try:
            response = server.create_token_response()
        except InsecureTransportError as exc:
            # Plain http is refused except on localhost; deploy behind TLS.
            response = server.handle_error_response(None, exc)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response
