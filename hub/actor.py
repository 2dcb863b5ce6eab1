"""Who is calling: taken from the access token, never from the request body."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

# How a person signed in to the ops console is named (hub/identity/ops_users.py): "ops:<user id>".
# API client ids never start so (hub/identity/clients.py makes them "cli_...").
OPS_USER = "ops:"


@dataclass(frozen=True)
class Actor:
    client_id: str
    partner_id: uuid.UUID | None
    scopes: frozenset[str]
    # Set when a member acts for themselves (a member's access token): they see and spend
    # only their own points. With partner_id too: the member's token through that partner's
    # app, narrowed to what the partner may see (hub/privacy/sharing.py through_brand).
    member_id: uuid.UUID | None = None

    @property
    def ref(self) -> str:
        """How ledger transfers record who caused them."""
        if self.member_id is not None:
            return f"member:{self.member_id}"
        if self.client_id.startswith(OPS_USER):  # a console user: named as the audit trail names them
            return self.client_id
        return f"client:{self.client_id}"
