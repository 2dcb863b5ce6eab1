"""JWT signing keys: kept in the database with the private half encrypted, cached briefly
in each process so that a rotation done elsewhere is picked up within `refresh` seconds.

The newest key signs. A key that a newer one replaced stays published (at the JWKS URI, and
for verifying) for `publish_for` seconds after its replacement: tokens signed with it, up to
`refresh` seconds after the rotation, must verify until they expire. Then it is dropped."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

from authlib.jose import JsonWebKey
from joserfc.jwk import KeySet
from sqlalchemy import select

from hub import crypto
from hub.audit import trail
from hub.db import Database, utcnow
from hub.identity.models import SigningKey
from hub.privacy.keyring import MasterKeyError, SealError

ALG = "RS256"
SEAL_PURPOSE = "signing-key"


class KeyStoreError(RuntimeError):
    """The signing keys cannot be used (a configuration problem, not a request's)."""


class KeyStore:
    def __init__(self, db: Database, secret_key: str, refresh: float = 60.0,
                 token_lifetime: float = 3600.0):
        self.db = db
        self.secret_key = secret_key  # derives the pairwise sid of logout tokens (oidc/logout.py)
        self.refresh = refresh
        # How long a replaced key stays published: the longest token it may have signed,
        # issued as late as `refresh` seconds after the rotation (with a minute's slack).
        self.publish_for = timedelta(seconds=token_lifetime + refresh + 60)
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._sealed = ""
        self._signing: tuple[dict, KeySet] | None = None
        self._public: dict = {"keys": []}
        self._kids: set[str] = set()

    def rotate(self, by: str | None = None) -> str:
        """Add a new key; it signs from now on. Older keys stay published for verification.
        A rotation someone asked for (`by`) goes in the audit trail; the first key, made on
        first use, is no one's action."""
        key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
        private = key.as_dict(is_private=True, alg=ALG, use="sig")
        public = key.as_dict(alg=ALG, use="sig")
        sealed = crypto.seal(SEAL_PURPOSE, json.dumps(private).encode())

        def add(s):
            s.add(SigningKey(kid=private["kid"], alg=ALG, private_jwk_sealed=sealed, public_jwk=public))
            if by:
                trail.record(s, actor=by, action="signing_key.rotate", target=f"signing_key:{private['kid']}")

        self.db.write(add)
        self._loaded_at = float("-inf")
        return private["kid"]

    def _load(self) -> None:
        with self.db.read() as session:
            rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        if not rows:
            self.rotate()
            return self._load()
        cutoff = utcnow() - self.publish_for
        # rows[i] signed until rows[i + 1] was created; the newest signs now.
        published = [r for r, successor in zip(rows, rows[1:]) if successor.created_at > cutoff]
        published.append(rows[-1])
        self._sealed = rows[-1].private_jwk_sealed
        self._signing = None  # decrypted on first use: verifying needs only public keys
        self._public = {"keys": [r.public_jwk for r in reversed(published)]}
        self._kids = {r.kid for r in published}
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh:
            with self._lock:
                if time.monotonic() - self._loaded_at > self.refresh:
                    self._load()

    def signing_jwks(self) -> dict:
        """The private key that signs new tokens (a one-key set, so the kid is set)."""
        return self._signing_pair()[0]

    def signing_key(self) -> KeySet:
        """The same key imported, once per load: importing an RSA private key validates it,
        which costs ~40 ms, far more than signing with it (~0.5 ms)."""
        return self._signing_pair()[1]

    def _signing_pair(self) -> tuple[dict, KeySet]:
        self._fresh()
        signing = self._signing
        if signing is None:
            try:
                private = crypto.unseal(SEAL_PURPOSE, self._sealed)
            except (SealError, MasterKeyError) as exc:
                raise KeyStoreError(
                    f"the stored signing key does not open ({exc}); were HUB_DATA_KEYS or HUB_SECRET_KEY "
                    "changed? Restore them, or run `hub keys rotate` after setting the new ones"
                ) from exc
            jwks = {"keys": [json.loads(private)]}
            signing = self._signing = (jwks, KeySet.import_key_set(jwks))
        return signing

    def public_jwks(self) -> dict:
        self._fresh()
        return self._public

    def expect(self, kid: str | None) -> None:
        """Reload now if a token names a key this process has not seen (another process may
        have just created or rotated it); at most once a second, so junk kids cost nothing."""
        self._fresh()
        if kid and kid not in self._kids and time.monotonic() - self._loaded_at > 1:
            with self._lock:
                self._load()
