"""SHA-256 of a text, hex: what the hub keeps of a random token or secret (80-256 random
bits: a plain hash is enough, nothing to guess) and what an audit entry keeps of a free-text
reason. Imports nothing of the hub, so any module may use it."""
from __future__ import annotations

import hashlib


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
