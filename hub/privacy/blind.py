"""Blind indexes: how the hub finds a member by email or phone without keeping them in clear.

HMAC-SHA256 under the index key (HUB_INDEX_KEY, or derived from HUB_SECRET_KEY) over the
identifier's kind and normalised value. Equal values give equal indexes, so a unique index
and an equality lookup work on them; without the key, the index reveals nothing (a phone
number's few billion values cannot be tried offline). One HMAC per lookup, no query.
"""
from __future__ import annotations

import hashlib
import hmac

from hub.privacy import keyring


def normalise(kind: str, value: str) -> str:
    """How an identifier is compared: trimmed, and emails in lower case."""
    return value.strip().lower() if kind == "email" else value.strip()


def index(kind: str, value: str) -> str:
    message = f"{kind}\x00{normalise(kind, value)}".encode()
    return hmac.new(keyring.current().blind_key, message, hashlib.sha256).hexdigest()
