"""A brand site's settings: its brand file (brands/<code>.json: name, partner, port, colours)
plus where the hub is and the OAuth client the hub registered for it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

BRANDS_DIR = Path(__file__).resolve().parent / "brands"
# What a brand asks for to show the member's name and points: the member consents once per
# partner. A brand may sign members in with `openid` alone (its brand file's "scope"): that
# shares nothing but a pairwise id, so the hub asks no consent, and the page offers to share
# more (SCOPE) when the member wants their points shown there.
SCOPE = "openid profile email me:read"
DEMO_BRANDS = ("kopi", "buku")  # brand A, brand B of the quick start


@dataclass(frozen=True)
class Brand:
    code: str  # "kopi": cookie names, log lines
    name: str  # shown on the page
    partner: str  # the hub partner the brand belongs to (its clients share consent and `sub`)
    program: str  # the partner's program whose balance the page shows first
    port: int
    tagline: str = ""
    colour: str = "#333333"
    host: str = "127.0.0.1"
    scope: str = SCOPE  # what signing in asks for

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # What the hub registers for this site (hub.demo registers exactly these).
    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/oidc/callback"

    @property
    def post_logout_redirect_uri(self) -> str:
        return f"{self.base_url}/oidc/logged-out"

    @property
    def backchannel_logout_uri(self) -> str:
        return f"{self.base_url}/oidc/backchannel-logout"

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "Brand":
        data = json.loads(Path(path).read_text())
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def demo_brands() -> list[Brand]:
    """The example brands `make run` starts (one file each in brands/)."""
    return [Brand.load(BRANDS_DIR / f"{code}.json") for code in DEMO_BRANDS]


@dataclass(frozen=True)
class Client:
    issuer: str
    client_id: str
    client_secret: str

    @classmethod
    def from_env(cls) -> "Client":
        """BRAND_ISSUER, BRAND_CLIENT_ID and BRAND_CLIENT_SECRET (the secret is not put on a
        command line, where any user of the machine could read it)."""
        try:
            return cls(os.environ.get("BRAND_ISSUER", "http://127.0.0.1:8000").rstrip("/"),
                       os.environ["BRAND_CLIENT_ID"], os.environ["BRAND_CLIENT_SECRET"])
        except KeyError as exc:
            raise SystemExit(f"{exc.args[0]} is not set: the brand site needs its OAuth client") from None
