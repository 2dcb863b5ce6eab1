"""Who is calling: taken from the access token, never from the request body."""
from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    client_id: str
    partner_id: uuid.UUID | None
    scopes: frozenset[str]

    @property
    def ref(self) -> str:
        """How ledger transfers record who caused them."""
        return f"client:{self.client_id}"
