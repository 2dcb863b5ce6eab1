"""Verifying JWT access tokens (RFC 9068) on every API call.

Authlib's JWTBearerTokenValidator checks signature, typ, iss, aud and times. A verified token
is remembered until it expires, so the signature is checked once per token, not per request.
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections import OrderedDict

from authlib.common.errors import AuthlibBaseError
from joserfc.errors import JoseError as JoseRFCError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator

from hub.identity.keys import KeyStore

_CACHE_SIZE = 10_000


class _Validator(JWTBearerTokenValidator):
    def __init__(self, keys: KeyStore, issuer: str, audience: str):
        super().__init__(issuer=issuer, resource_server=audience)
        self.keys = keys

    def get_jwks(self):
        return self.keys.public_jwks()


def jwt_header(token: str) -> dict:
    """The unverified JOSE header: only to pick the key that verifies the token."""
    segment = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class TokenVerifier:
    def __init__(self, keys: KeyStore, issuer: str, audience: str):
        self._keys = keys
        self._validator = _Validator(keys, issuer, audience)
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict | None:
        """The token's claims, or None if it is not a valid, unexpired access token of ours."""
        with self._lock:
            claims = self._cache.get(token)
        if claims is not None:
            if claims["exp"] > time.time():
                return claims
            with self._lock:
                self._cache.pop(token, None)
            return None
        try:
            self._keys.expect(jwt_header(token).get("kid"))
            parsed = self._validator.authenticate_token(token)
            parsed.validate()
            if parsed.header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
                return None
        except (AuthlibBaseError, JoseRFCError, binascii.Error, ValueError, KeyError, TypeError, AttributeError):
            return None  # malformed, forged, expired or for another audience
        claims = dict(parsed)
        with self._lock:
            self._cache[token] = claims
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return claims
