"""OAuth2 clients of partner back ends and of ops."""
from __future__ import annotations

import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.audit import trail
from hub.digest import sha256_hex  # what the table keeps of a client secret
from hub.errors import Invalid
from hub.identity.models import ApiClient

PARTNER_SCOPES = (
    "members:read", "members:write", "transactions:read", "transactions:write",
    "rewards:read", "rewards:write", "redemptions:read", "redemptions:write",
    "conversions:read", "conversions:write",
    "webhooks:read", "webhooks:write", "settlement:read",
)
OPS_SCOPES = ("ops:read", "ops:write")
ALL_SCOPES = PARTNER_SCOPES + OPS_SCOPES


def create_client(
    session: Session, *, name: str, partner_id: uuid.UUID | None, scopes: list[str] | None = None,
    role: str | None = None, by: str,
) -> tuple[ApiClient, str]:
    """A new client and its secret, which is returned this once and stored only hashed.
    A role (hub/identity/roles.py) gives the client its scopes; scopes given too narrow them."""
    from hub.identity import roles  # it builds on this module's scopes

    if role is None:
        allowed, kind = (PARTNER_SCOPES, "a partner client") if partner_id else (OPS_SCOPES, "an ops client")
    else:
        allowed, kind = roles.scopes_of(role, partner_id), f"the role {role}"
    scopes = list(scopes) if scopes else list(allowed)
    wrong = [s for s in scopes if s not in allowed]
    if wrong:
        raise Invalid(f"{kind} cannot have {', '.join(wrong)}", slug="invalid-scope")
    secret = secrets.token_urlsafe(32)
    client = ApiClient(
        client_id=f"cli_{secrets.token_hex(12)}",
        secret_hash=sha256_hex(secret),
        partner_id=partner_id,
        name=name,
        scopes=" ".join(scopes),
    )
    session.add(client)
    session.flush()
    record_created(session, client, by, role=role)
    return client, secret


def record_created(session: Session, client: ApiClient, by: str, **settings) -> None:
    """The new client in the audit trail: its id, partner and scopes, never its secret."""
    trail.record(session, actor=by, action="client.create", target=f"client:{client.client_id}",
                 after={"partner_id": str(client.partner_id) if client.partner_id else None,
                        "scopes": client.scopes.split(), **settings})


def find_active(session: Session, client_id: str) -> ApiClient | None:
    return session.scalar(
        select(ApiClient).where(ApiClient.client_id == client_id, ApiClient.revoked_at.is_(None))
    )


def secret_matches(client: ApiClient, secret: str) -> bool:
    return hmac.compare_digest(client.secret_hash, sha256_hex(secret))
