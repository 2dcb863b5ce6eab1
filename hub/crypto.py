"""Encryption at rest for secrets the hub must be able to read back (signing keys).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from HUB_SECRET_KEY by HKDF, so the
raw setting is never used directly as a cipher key.
"""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


@lru_cache(maxsize=8)
def _fernet(secret_key: str, purpose: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"hub:{purpose}".encode()
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(secret_key: str, purpose: str, plaintext: bytes) -> str:
    return _fernet(secret_key, purpose).encrypt(plaintext).decode()


def unseal(secret_key: str, purpose: str, token: str) -> bytes:
    return _fernet(secret_key, purpose).decrypt(token.encode())
