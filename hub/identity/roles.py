"""Roles of the people and clients who run the coalition (issue 9): each is a set of API
scopes, so the API enforces them through openapi/'s security requirements and the ops
console (hub/web/ops) through the same sets.

| role           | reach                  | may                                                  |
|----------------|------------------------|------------------------------------------------------|
| ops_admin      | every partner          | read and change: close periods, resolve, refund, ... |
| ops_analyst    | every partner          | read only                                            |
| partner_admin  | its own partner only   | read its partner's statements, clients, webhooks     |
"""
from __future__ import annotations

import uuid

from hub.errors import Invalid
from hub.identity.clients import ALL_SCOPES, OPS_SCOPES, PARTNER_SCOPES

OPS_ADMIN = "ops_admin"
OPS_ANALYST = "ops_analyst"
PARTNER_ADMIN = "partner_admin"

SCOPES: dict[str, frozenset[str]] = {
    OPS_ADMIN: frozenset(OPS_SCOPES),
    OPS_ANALYST: frozenset({"ops:read"}),
    PARTNER_ADMIN: frozenset(PARTNER_SCOPES),
}
ROLES = tuple(SCOPES)


def needs_partner(role: str) -> bool:
    """partner_admin is bound to one partner; the ops roles to none."""
    return role == PARTNER_ADMIN


def scopes_of(role: str, partner_id: uuid.UUID | None) -> tuple[str, ...]:
    """The scopes a client with this role gets (in the order of hub/identity/clients.py), once
    checked that the role and the partner go together."""
    if role not in SCOPES:
        raise Invalid(f"role is one of {', '.join(ROLES)}", slug="invalid-role")
    if needs_partner(role) != (partner_id is not None):
        raise Invalid(f"the role {role} {'needs a' if needs_partner(role) else 'has no'} partner", slug="invalid-role")
    return tuple(s for s in ALL_SCOPES if s in SCOPES[role])
