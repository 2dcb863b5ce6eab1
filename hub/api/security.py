"""connexion's x-tokenInfoFunc: a bearer token -> its claims, or None (401)."""
from __future__ import annotations

import uuid

from hub.actor import Actor
from hub.api import runtime
from hub.identity.oidc import issue


def token_info(token: str) -> dict | None:
    hub = runtime.current()
    claims = hub.tokens.verify(token)
    if claims is None:
        return None
    info = {**claims, "scope": claims.get("scope", "").split()}
    if "gid" in claims:
        # A member's token (single sign-on): valid only while its grant is, and it names the
        # member by a pairwise sub, so the member comes from the grant.
        with hub.db.read() as session:
            grant = issue.member_grant(session, claims)
        if grant is None:
            return None
        info["member_id"] = str(grant.member_id)
        info.pop("partner_id", None)
    return info


def actor(token_info: dict) -> Actor:
    partner = token_info.get("partner_id")
    member = token_info.get("member_id")  # a member's own token (single sign-on)
    return Actor(
        client_id=token_info["client_id"],
        partner_id=uuid.UUID(partner) if partner else None,
        scopes=frozenset(token_info["scope"]),
        member_id=uuid.UUID(member) if member else None,
    )
