"""Signing the provider's own JWTs (ID tokens, logout tokens) and reading back an
`id_token_hint`, with the KeyStore's keys (RS256 only: `alg: none` and HMAC are refused).
The same keys sign access tokens (typ at+jwt) and logout tokens (typ logout+jwt): neither is
accepted as an id_token_hint."""
from __future__ import annotations

import base64
import hashlib

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from hub.identity.keys import ALG, KeyStore
from hub.identity.oidc import clients
from hub.identity.tokens import jwt_header


def sign(keys: KeyStore, claims: dict, typ: str = "JWT") -> str:
    key_set = keys.signing_key()
    (key,) = key_set.keys
    return jwt.encode({"alg": ALG, "kid": key.kid, "typ": typ}, claims, key_set, algorithms=[ALG])


def half_hash(value: str) -> str:
    """at_hash / c_hash for RS256 (OIDC Core 3.1.3.6): the left half of SHA-256, base64url."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def read_own(keys: KeyStore, token: str, issuer: str) -> tuple[dict, dict] | None:
    """The header and claims of a JWT this provider signed (expired or not: an id_token_hint
    may be), or None when it is not one (forged, malformed, another issuer)."""
    try:
        keys.expect(jwt_header(token).get("kid"))
        decoded = jwt.decode(token, KeySet.import_key_set(keys.public_jwks()), algorithms=[ALG])
    except (JoseError, ValueError, KeyError, TypeError, AttributeError):
        return None
    claims = decoded.claims
    return (decoded.header, claims) if claims.get("iss") == issuer else None


def read_id_token(session: Session, keys: KeyStore, token: str, issuer: str) -> dict | None:
    """The claims of an ID token this provider issued (an `id_token_hint`), or None: besides
    read_own's checks, its typ is JWT (not at+jwt or logout+jwt), it has no `events` (a
    logout token's), a `sub`, and its one audience is a registered brand client."""
    found = read_own(keys, token, issuer)
    if found is None:
        return None
    header, claims = found
    if str(header.get("typ", "JWT")).upper() != "JWT" or "events" in claims:
        return None
    audience = claims.get("aud")
    if isinstance(audience, list) and len(audience) == 1:
        audience = audience[0]
    if not isinstance(audience, str) or not isinstance(claims.get("sub"), str):
        return None
    return claims if clients.find(session, audience) is not None else None
