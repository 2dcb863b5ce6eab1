"""The brand site's server-side state, in this process's memory (a demo: one process, lost on
restart): login sessions keyed by a random cookie value and findable by the hub's `sid` and
`sub` (back-channel logout ends them), Authlib's per-request state (PKCE verifier, nonce),
and the logout tokens already seen (`jti`, so a replayed one is refused)."""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field


@dataclass
class BrandSession:
    sid: str | None  # the hub's login session (the ID token's `sid`)
    sub: str  # the member, as this partner knows them (pairwise)
    name: str
    email: str
    id_token: str  # for RP-initiated logout (id_token_hint)
    token: dict  # access token (for GET /v1/me) and its expiry
    shared: bool = True  # whether the member shares their name and points with this brand
    created_at: float = field(default_factory=time.time)


class SessionStore:
    def __init__(self):
        self._lock = threading.Lock()
        self._sessions: dict[str, BrandSession] = {}

    def start(self, session: BrandSession) -> str:
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[key] = session
        return key

    def get(self, key: str | None) -> BrandSession | None:
        if not key:
            return None
        with self._lock:
            return self._sessions.get(key)

    def end(self, key: str | None) -> None:
        with self._lock:
            self._sessions.pop(key or "", None)

    def end_matching(self, sid: str | None, sub: str | None) -> int:
        """Back-channel logout: end the sessions of this hub session (and subject, when both
        are given), or every session of the subject when there is no sid. How many ended."""
        with self._lock:
            doomed = [key for key, s in self._sessions.items()
                      if (sid is None or s.sid == sid) and (sub is None or s.sub == sub)]
            for key in doomed:
                del self._sessions[key]
        return len(doomed)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


class MemoryCache:
    """The cache Authlib's Flask client keeps its authorization state in (get/set/delete),
    so the PKCE code_verifier and nonce never travel in the (signed, readable) cookie."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, str]] = {}

    def get(self, key: str):
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.time():
                self._items.pop(key, None)
                return None
            return item[1]

    def set(self, key: str, value: str, expires_in: int | None = None) -> None:
        with self._lock:
            now = time.time()
            for old in [k for k, (exp, _) in self._items.items() if exp < now]:
                del self._items[old]
            self._items[key] = (now + (expires_in or 3600), value)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class SeenTokens:
    """`jti`s of logout tokens accepted in the last `ttl` seconds."""

    def __init__(self, ttl: float = 600.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def first_time(self, jti: str) -> bool:
        with self._lock:
            now = time.time()
            self._seen = {k: t for k, t in self._seen.items() if t > now - self.ttl}
            if jti in self._seen:
                return False
            self._seen[jti] = now
            return True
