"""The running hub's services, shared by the handlers and the token check.

connexion resolves handlers and the token-info function by dotted name, so they reach the
services through this module rather than through arguments. `create_app` installs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hub.db import Database
from hub.identity.keys import KeyStore
from hub.identity.ratelimit import Limiter
from hub.identity.tokens import TokenVerifier
from hub.settings import Settings


@dataclass
class Hub:
    settings: Settings
    db: Database
    keys: KeyStore
    tokens: TokenVerifier
    providers: dict = field(default_factory=dict)  # reward provider connectors, by name
    hosted: dict = field(default_factory=dict)  # partner-hosted program connectors, by name
    limiter: Limiter | None = None  # rate limits of the pages, OAuth endpoints and enrolment


_current: Hub | None = None


def install(hub: Hub) -> None:
    global _current
    _current = hub


def current() -> Hub:
    if _current is None:
        raise RuntimeError("no hub app has been created in this process")
    return _current
