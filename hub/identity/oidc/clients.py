"""Brand clients: an ApiClient plus its OpenID Connect registration (redirect URIs, logout
URIs, public or confidential)."""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.digest import sha256_hex
from hub.errors import Invalid
from hub.identity import clients
from hub.identity.models import ApiClient
from hub.identity.oidc.models import OidcClient

# What a brand's client may ask a member for. `me:*` reach the member's own /v1/me API.
MEMBER_SCOPES = ("openid", "profile", "email", "phone", "offline_access", "me:read", "me:write", "me:points")
DEFAULT_SCOPES = ("openid", "profile", "email", "phone", "offline_access", "me:read")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class BrandClient:
    """What the provider needs of a client, read in one query."""

    client_id: str
    name: str
    partner_id: uuid.UUID | None
    scopes: tuple[str, ...]
    secret_hash: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str | None
    public: bool

    @property
    def sector(self) -> str:
        return sector(self.partner_id, self.client_id)


def sector(partner_id: uuid.UUID | None, client_id: str) -> str:
    """All of a partner's clients share one sector, hence one pairwise `sub` per member and
    one consent; a client of no partner (the hub's own) is a sector of its own."""
    return str(partner_id) if partner_id else f"client:{client_id}"


def _check_uri(uri: str, what: str) -> str:
    """An absolute https URI without a fragment; plain http only on this machine (development)."""
    parts = urlsplit(uri)
    local = parts.scheme == "http" and (parts.hostname or "") in _LOCAL_HOSTS
    if not (parts.scheme == "https" or local) or not parts.netloc or parts.fragment or len(uri) > 500:
        raise Invalid(
            f"{what} {uri!r} must be an absolute https URI without a fragment "
            "(http only for localhost)", slug="invalid-client-metadata")
    return uri


def register(
    session: Session,
    *,
    name: str,
    partner_id: uuid.UUID | None,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str] = (),
    backchannel_logout_uri: str | None = None,
    public: bool = False,
    scopes: list[str] | None = None,
    by: str,
) -> tuple[ApiClient, str | None]:
    """A new brand client, and its secret (None for a public client), shown this once."""
    if not redirect_uris:
        raise Invalid("a brand client needs at least one redirect URI", slug="invalid-client-metadata")
    scopes = list(scopes) if scopes else list(DEFAULT_SCOPES)
    wrong = [s for s in scopes if s not in MEMBER_SCOPES]
    if wrong or "openid" not in scopes:
        raise Invalid(f"a brand client's scopes are among {', '.join(MEMBER_SCOPES)}, openid "
                      "included", slug="invalid-scope")
    if backchannel_logout_uri:
        _check_uri(backchannel_logout_uri, "backchannel_logout_uri")
    secret = None if public else secrets.token_urlsafe(32)
    client = ApiClient(
        client_id=f"cli_{secrets.token_hex(12)}",
        # A public client has no secret: an empty hash that no SHA-256 hex digest equals.
        secret_hash=sha256_hex(secret) if secret else "",
        partner_id=partner_id,
        name=name,
        scopes=" ".join(dict.fromkeys(scopes)),
    )
    session.add(client)
    session.flush()
    session.add(OidcClient(
        client_id=client.client_id,
        redirect_uris=list(dict.fromkeys(_check_uri(u, "redirect_uri") for u in redirect_uris)),
        post_logout_redirect_uris=list(dict.fromkeys(
            _check_uri(u, "post_logout_redirect_uri") for u in post_logout_redirect_uris)),
        backchannel_logout_uri=backchannel_logout_uri,
        public=public,
    ))
    session.flush()
    clients.record_created(session, client, by, redirect_uris=list(dict.fromkeys(redirect_uris)), public=public)
    return client, secret


def find(session: Session, client_id: str) -> BrandClient | None:
    """An active brand client, or None (unknown, revoked, or a back-end-only client)."""
    if "\x00" in client_id:
        return None  # no client has one, and PostgreSQL refuses it in a query
    row = session.execute(
        select(ApiClient, OidcClient)
        .join(OidcClient, OidcClient.client_id == ApiClient.client_id)
        .where(ApiClient.client_id == client_id, ApiClient.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    api, oidc = row
    return BrandClient(
        client_id=api.client_id, name=api.name, partner_id=api.partner_id,
        scopes=tuple(api.scopes.split()), secret_hash=api.secret_hash,
        redirect_uris=tuple(oidc.redirect_uris),
        post_logout_redirect_uris=tuple(oidc.post_logout_redirect_uris),
        backchannel_logout_uri=oidc.backchannel_logout_uri, public=oidc.public,
    )


def web_origins(session: Session) -> set[str]:
    """The origins (scheme://host[:port]) of every active brand client's redirect URIs: the
    pages whose scripts may call the token, revocation and userinfo endpoints (CORS)."""
    rows = session.scalars(
        select(OidcClient.redirect_uris)
        .join(ApiClient, ApiClient.client_id == OidcClient.client_id)
        .where(ApiClient.revoked_at.is_(None))
    )
    return {f"{p.scheme}://{p.netloc}" for uris in rows for p in map(urlsplit, uris)}
