"""Encryption at rest for secrets the hub must be able to read back (TOTP secrets, mail
bodies, redemption deliveries, signing keys, webhook secrets).

Envelope encryption under the process's keyring (hub.privacy.keyring): the purpose is bound
to the value, so a value sealed for one purpose does not open as another. Columns that hold
personal data in Python as plain values use hub.privacy.sealed.Sealed instead.
"""
from __future__ import annotations

from hub.privacy import keyring


def seal(purpose: str, plaintext: bytes) -> str:
    return keyring.current().seal(purpose, plaintext)


def unseal(purpose: str, token: str) -> bytes:
    return keyring.current().unseal(purpose, token)
