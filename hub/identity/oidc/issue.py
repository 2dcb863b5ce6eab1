"""What the provider puts in its tokens and in userinfo, and how a member's access token is
checked against its grant.

The `sid` a client sees is pairwise, like its `sub`: base64url(HMAC-SHA256(key, sector |
login session id)), the key derived from HUB_SECRET_KEY by HKDF (another key than the pairwise
subjects'). Every client of a sector (a partner) gets the same sid for a login session, in its
ID tokens and its logout tokens alike, so it can match a logout to its own sessions; two
partners get different ones, so they cannot join their members on it (which would undo the
pairwise `sub`), and the hub's own session id never leaves it.
"""
from __future__ import annotations

import secrets
import time
import uuid

from sqlalchemy.orm import Session

from hub.identity import login as logins
from hub.identity.keys import KeyStore
from hub.identity.oidc import claims as claim_sets
from hub.identity.oidc import grants, jwts, subjects
from hub.identity.oidc.models import Grant

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = 120


def session_sid(secret_key: str, sector: str, session_id: uuid.UUID) -> str:
    """The `sid` the clients of a sector know a login session by (pairwise, see above)."""
    return subjects.pairwise(secret_key, b"hub:pairwise-sid", sector, session_id)


def id_token(session: Session, keys: KeyStore, *, issuer: str, ttl: int, grant: Grant,
             nonce: str | None, access_token: str | None, secret_key: str) -> str:
    """The ID token of a grant: who (pairwise sub), when and how they logged in, the session
    (pairwise sid), and profile claims only if the `claims` request asked for them in the ID
    token."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": grant.subject,
        "aud": grant.client_id,
        "azp": grant.client_id,
        "iat": now,
        "exp": now + ttl,
        "auth_time": int(grant.auth_time.timestamp()),
        "sid": session_sid(secret_key, grant.sector, grant.session_id),
        "amr": grant.amr.split(),
    }
    if nonce:
        claims["nonce"] = nonce
    if access_token:
        claims["at_hash"] = jwts.half_hash(access_token)
    asked = grant.claims.get("id_token", ())
    if asked:
        claims.update(claim_sets.select(logins.account_claims(session, grant.account_id), asked))
    return jwts.sign(keys, claims)


def userinfo(session: Session, grant: Grant, token_scope: str) -> dict:
    """The claims the member consented to share with this grant: those of its scopes that the
    access token still holds (`token_scope`, narrower after a refresh with `scope`) and those
    named for userinfo by its `claims` request; `sub` always."""
    scopes = set(grant.scope.split()) & set(token_scope.split())
    names = claim_sets.for_scopes(sorted(scopes)) | set(grant.claims.get("userinfo", ()))
    held = logins.account_claims(session, grant.account_id)
    return {"sub": grant.subject, **claim_sets.select(held, names)}


def member_grant(session: Session, claims: dict) -> Grant | None:
    """The live grant behind a member's (verified) access token, or None when it was revoked
    (code or refresh token reuse, RFC 7009, consent withdrawn) or is not a member's token."""
    gid = claims.get("gid")
    if not gid:
        return None
    try:
        grant_id = uuid.UUID(gid)
    except (ValueError, TypeError):
        return None
    grant = grants.live(session, grant_id)
    if grant is None or grant.client_id != claims.get("client_id"):
        return None
    return grant


def logout_token(keys: KeyStore, *, issuer: str, client_id: str, sector: str, subject: str,
                 session_id: uuid.UUID, secret_key: str) -> str:
    """A back-channel logout token (OIDC Back-Channel Logout 1.0, section 2.4), naming the
    session by the sid the client's ID tokens carried (its sector's)."""
    now = int(time.time())
    return jwts.sign(keys, {
        "iss": issuer, "aud": client_id, "iat": now, "exp": now + LOGOUT_TOKEN_TTL,
        "jti": secrets.token_urlsafe(16), "sub": subject,
        "sid": session_sid(secret_key, sector, session_id),
        "events": {LOGOUT_EVENT: {}},
    }, typ="logout+jwt")
