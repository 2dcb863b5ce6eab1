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


# Ids are BIGINTs: a cursor beyond them is not one we issued (and would overflow the query).
_MAX_ID = 2**63 - 1


def id_cursor(cursor: str | None) -> int | None:
    """The position of a page of rows keyed by a big integer id, or None for the first page."""
    before = decode(cursor)
    # bool is an int to Python, but never a position we issue.
    if before is None or (type(before) is int and 0 < before <= _MAX_ID):
        return before
    raise Invalid("cursor is not one this API issued", slug="invalid-cursor")
