"""JWT signing keys: kept in the database with the private half encrypted, cached briefly
in each process so that a rotation done elsewhere is picked up within `refresh` seconds."""
from __future__ import annotations

import json
import threading
import time

from authlib.jose import JsonWebKey
from sqlalchemy import select

from hub import crypto
from hub.db import Database
from hub.identity.models import SigningKey

ALG = "RS256"
_PURPOSE = "signing-key"


class KeyStore:
    def __init__(self, db: Database, secret_key: str, refresh: float = 60.0):
        self.db = db
        self.secret_key = secret_key
        self.refresh = refresh
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._signing: dict | None = None
        self._public: dict = {"keys": []}

    def rotate(self) -> str:
        """Add a new key; it signs from now on. Older keys stay published for verification."""
        key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
        private = key.as_dict(is_private=True, alg=ALG, use="sig")
        public = key.as_dict(alg=ALG, use="sig")
        sealed = crypto.seal(self.secret_key, _PURPOSE, json.dumps(private).encode())
        self.db.write(
            lambda s: s.add(
                SigningKey(kid=private["kid"], alg=ALG, private_jwk_sealed=sealed, public_jwk=public)
            )
        )
        self._loaded_at = float("-inf")
        return private["kid"]

    def _load(self) -> None:
        with self.db.read() as session:
            rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        if not rows:
            self.rotate()
            return self._load()
        newest = rows[-1]
        private = json.loads(crypto.unseal(self.secret_key, _PURPOSE, newest.private_jwk_sealed))
        self._signing = {"keys": [private]}
        self._public = {"keys": [r.public_jwk for r in rows]}
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh:
            with self._lock:
                if time.monotonic() - self._loaded_at > self.refresh:
                    self._load()

    def signing_jwks(self) -> dict:
        """The private key that signs new tokens (a one-key set, so the kid is set)."""
        self._fresh()
        return self._signing

    def public_jwks(self) -> dict:
        self._fresh()
        return self._public
