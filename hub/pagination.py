"""Opaque cursors for keyset pagination: base64url of a small JSON value."""
from __future__ import annotations

import base64
import json

from hub.errors import Invalid


def encode(value) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str | None):
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor") from exc
