"""The provider metadata document (OpenID Connect Discovery 1.0, section 3)."""
from __future__ import annotations

from hub.identity.keys import ALG
from hub.identity.oidc import claims, clients
from hub.identity.oidc.authorize import PROMPTS

CLIENT_AUTH = ["client_secret_basic", "client_secret_post"]


def metadata(issuer: str) -> dict:
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/oauth/jwks",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "end_session_endpoint": f"{base}/oauth/logout",
        "scopes_supported": list(clients.MEMBER_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [ALG],
        "token_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        "revocation_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr",
                             "at_hash", "azp", *claims.SUPPORTED],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "prompt_values_supported": list(PROMPTS),
        "ui_locales_supported": ["en", "id"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }
