"""connexion's x-tokenInfoFunc: a bearer token -> its claims, or None (401)."""
from __future__ import annotations

import uuid

from hub.actor import Actor
from hub.api import runtime


def token_info(token: str) -> dict | None:
    claims = runtime.current().tokens.verify(token)
    if claims is None:
        return None
    return {**claims, "scope": claims.get("scope", "").split()}


def actor(token_info: dict) -> Actor:
    partner = token_info.get("partner_id")
    member = token_info.get("member_id")  # a member's own token (single sign-on)
    return Actor(
        client_id=token_info["client_id"],
        partner_id=uuid.UUID(partner) if partner else None,
        scopes=frozenset(token_info["scope"]),
        member_id=uuid.UUID(member) if member else None,
    )
