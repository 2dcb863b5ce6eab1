"""What the pages share, kept on the Flask app (tests swap the limiter for one with a clock)."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from hub.api.runtime import Hub
from hub.identity.accounts import Passwords
from hub.identity.ratelimit import Limiter


@dataclass
class WebState:
    hub: Hub
    passwords: Passwords
    limiter: Limiter
    cookie_secure: bool


def state() -> WebState:
    return current_app.extensions["hub_web"]
