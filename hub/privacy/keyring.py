"""Envelope encryption at rest (docs/encryption.md).

Master keys (KEKs) come from settings (HUB_DATA_KEYS, first = current) and never reach the
database. Data keys (DEKs) are random AES-256 keys, kept in `data_keys` only wrapped by a
KEK. A sealed value names its format and DEK, so values sealed before a rotation stay
readable. Its associated data binds the format, the DEK id and the purpose (the column, or
the secret's kind), so a ciphertext copied to another column does not open; it does not bind
the row, so one moved between rows of the same column (two members' TOTP secrets) still opens.
Only someone who can already write the database can do that (docs/encryption.md, "Limits"):

    hv1.<dek id>.<base64url(nonce 12 bytes | AES-256-GCM ciphertext and tag)>

One keyring per process, installed at start-up (app, worker, CLI) by `install`.
"""
from __future__ import annotations

import base64
import binascii
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from hub.db import utcnow
from hub.privacy.models import DataKey
from hub.settings import Settings

FORMAT = "hv1"
DERIVED = "derived"  # the KEK derived from HUB_SECRET_KEY (the default, and a HUB_DATA_KEYS entry)
# How often a process looks for a newer data key (one made by `hub keys rotate-data`).
REFRESH_SECONDS = 60.0
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_data_keys = DataKey.__table__


class MasterKeyError(Exception):
    """A key problem an operator must fix (a missing or malformed master key)."""


class SealError(ValueError):
    """A sealed value that does not open: tampered with, moved from another column (not from
    another row of the same column), or sealed under a data key this hub does not have."""


def _derive(secret_key: str, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(secret_key.encode())


def _b64decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_master_keys(text: str, secret_key: str) -> dict[str, bytes]:
    """HUB_DATA_KEYS ("id:base64(32 bytes)" or `derived`, comma-separated, current first) as
    an ordered {id: key}; unset: the one KEK derived from HUB_SECRET_KEY."""
    entries = [e.strip() for e in text.split(",") if e.strip()] or [DERIVED]
    keys: dict[str, bytes] = {}
    for entry in entries:
        if entry == DERIVED:
            keys[DERIVED] = _derive(secret_key, "hub:data-kek")
            continue
        kid, _, encoded = entry.partition(":")
        if not _KEY_ID.match(kid) or kid == DERIVED:
            raise MasterKeyError(f"HUB_DATA_KEYS: {kid!r} is not a key id (letters, digits, - and _, at most 32)")
        try:
            key = _b64decode(encoded)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise MasterKeyError(f"HUB_DATA_KEYS: key {kid!r} must be 32 bytes, base64-encoded")
        if kid in keys:
            raise MasterKeyError(f"HUB_DATA_KEYS: key id {kid!r} is given twice")
        keys[kid] = key
    return keys


def index_key(text: str, secret_key: str) -> bytes:
    """HUB_INDEX_KEY (base64, 32 bytes) or, unset, one derived from HUB_SECRET_KEY."""
    if not text:
        return _derive(secret_key, "hub:blind-index")
    try:
        key = _b64decode(text)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise MasterKeyError("HUB_INDEX_KEY must be 32 bytes, base64-encoded")
    return key


def _wrap_ad(dek_id: str) -> bytes:
    return f"{FORMAT}.dek.{dek_id}".encode()


@dataclass(frozen=True)
class KeyRow:
    id: str
    kek_id: str
    wrapped: str


class Keyring:
    """The KEKs and the blind-index key of this process, and the DEKs it has unwrapped."""

    def __init__(self, engine: Engine | None, master_keys: dict[str, bytes], blind_key: bytes,
                 refresh: float = REFRESH_SECONDS):
        self.engine = engine
        self.refresh = refresh
        self.master_keys = master_keys
        self.current_kek = next(iter(master_keys))
        self.blind_key = blind_key
        self._deks: dict[str, AESGCM] = {}
        self._current: str | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    # --- data keys -------------------------------------------------------------------

    def wrap(self, dek_id: str, key: bytes) -> str:
        nonce = os.urandom(12)
        kek = AESGCM(self.master_keys[self.current_kek])
        return _b64encode(nonce + kek.encrypt(nonce, key, _wrap_ad(dek_id)))

    def unwrap(self, row: KeyRow) -> bytes:
        kek = self.master_keys.get(row.kek_id)
        if kek is None:
            raise MasterKeyError(f"data key {row.id} is wrapped by master key {row.kek_id!r}, which "
                                 f"HUB_DATA_KEYS does not hold: add it back (after the current key)")
        raw = _b64decode(row.wrapped)
        try:
            return AESGCM(kek).decrypt(raw[:12], raw[12:], _wrap_ad(row.id))
        except InvalidTag:
            where = ("HUB_SECRET_KEY changed since it was made" if row.kek_id == DERIVED
                     else "HUB_DATA_KEYS holds another key under that id")
            raise MasterKeyError(f"master key {row.kek_id!r} does not open data key {row.id}: {where}") from None

    def create_key(self, conn: Connection) -> str:
        """A new data key, wrapped by the current KEK; it seals from now on."""
        dek_id = secrets.token_hex(8)
        key = AESGCM.generate_key(bit_length=256)
        conn.execute(insert(_data_keys).values(id=dek_id, kek_id=self.current_kek,
                                               wrapped=self.wrap(dek_id, key), created_at=utcnow()))
        with self._lock:
            self._deks[dek_id] = AESGCM(key)
            self._current, self._checked = dek_id, time.monotonic()
        return dek_id

    def ensure_key(self) -> str:
        """The current data key, made if the database has none yet (start-up, outside any
        transaction of the caller's)."""
        with self.engine.begin() as conn:
            newest = self._newest(conn)
            if newest is None:
                return self.create_key(conn)
        self._deks[newest.id] = AESGCM(self.unwrap(newest))  # a missing master key fails here, at start-up
        self._current, self._checked = newest.id, time.monotonic()
        return newest.id

    @staticmethod
    def _newest(conn: Connection) -> KeyRow | None:
        row = conn.execute(select(_data_keys.c.id, _data_keys.c.kek_id, _data_keys.c.wrapped)
                           .order_by(_data_keys.c.created_at.desc(), _data_keys.c.id.desc()).limit(1)).first()
        return KeyRow(*row) if row else None

    def _load(self, dek_id: str) -> AESGCM:
        with self.engine.connect() as conn:
            row = conn.execute(select(_data_keys.c.id, _data_keys.c.kek_id, _data_keys.c.wrapped)
                               .where(_data_keys.c.id == dek_id)).first()
        if row is None:
            raise SealError(f"sealed under data key {dek_id}, which this database does not have")
        return AESGCM(self.unwrap(KeyRow(*row)))

    def _dek(self, dek_id: str) -> AESGCM:
        dek = self._deks.get(dek_id)
        if dek is None:
            dek = self._load(dek_id)
            with self._lock:
                self._deks[dek_id] = dek
        return dek

    def current_key(self) -> str:
        """The data key new values are sealed with: the newest, looked up again now and then
        so that every process follows a rotation."""
        if self._current is None or time.monotonic() - self._checked > self.refresh:
            with self.engine.connect() as conn:
                newest = self._newest(conn)
            if newest is None:
                raise MasterKeyError("no data key yet: the keyring is installed at start-up (hub.privacy.keyring.install)")
            with self._lock:
                self._current, self._checked = newest.id, time.monotonic()
        return self._current

    # --- values ----------------------------------------------------------------------

    def seal(self, purpose: str, plaintext: bytes) -> str:
        dek_id = self.current_key()
        nonce = os.urandom(12)
        sealed = self._dek(dek_id).encrypt(nonce, plaintext, f"{FORMAT}.{dek_id}.{purpose}".encode())
        return f"{FORMAT}.{dek_id}.{_b64encode(nonce + sealed)}"

    def unseal(self, purpose: str, token: str) -> bytes:
        dek_id = key_of(token)
        raw = _b64decode(token.rsplit(".", 1)[1])
        try:
            return self._dek(dek_id).decrypt(raw[:12], raw[12:], f"{FORMAT}.{dek_id}.{purpose}".encode())
        except InvalidTag:
            raise SealError(f"a sealed {purpose} value does not open: altered, or moved from elsewhere") from None


def key_of(token: str) -> str:
    """The id of the data key a sealed value was sealed with."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != FORMAT:
        raise SealError("not a sealed value")
    return parts[1]


_installed: Keyring | None = None


def install(settings, engine: Engine) -> Keyring:
    """Make this process's keyring from settings and make sure a data key exists."""
    keyring = Keyring(engine, parse_master_keys(settings.data_keys, settings.secret_key),
                      index_key(settings.index_key, settings.secret_key))
    keyring.ensure_key()
    return use(keyring)


def for_migration(conn: Connection) -> Keyring:
    """A keyring for a migration that seals existing values: from the environment's
    settings (the hub's keys), on the migration's connection, never refreshed (the
    migration's transaction is the only writer), with a data key made if none exists."""
    settings = Settings.from_env()
    ring = Keyring(None, parse_master_keys(settings.data_keys, settings.secret_key),
                   index_key(settings.index_key, settings.secret_key), refresh=math.inf)
    ring.create_key(conn)
    return ring


def use(keyring: Keyring) -> Keyring:
    global _installed
    _installed = keyring
    return keyring


def current() -> Keyring:
    if _installed is None:
        raise MasterKeyError("no keyring installed: the app, worker and CLI install one at start-up")
    return _installed
