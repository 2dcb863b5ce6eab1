"""Idempotency-Key handling (design.md, "API conventions"; Stripe's and brandur's designs).

The stored response commits in the same transaction as the work it describes, so a key is
either unused or bound to a finished, committed result: there is no window where work is
committed without its key or the reverse. A concurrent duplicate is detected with a
transaction-scoped advisory lock on PostgreSQL (409 at once); on SQLite, writes are already
serialized, so the duplicate waits and then receives the replay.

Only successful responses are stored: a refused request wrote nothing, so repeating it
re-executes it (it may succeed once the cause is fixed, e.g. the member now exists). They
are sealed (hub.crypto): a response may name a member's email or phone, or a voucher code.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, String, Text, UniqueConstraint, bindparam, insert, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub import crypto
from hub.db import Base, BigId, Database, UTCDateTime, run as run_once, utcnow
from hub.errors import Conflict, Invalid


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)  # the response's JSON, sealed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


SEAL_PURPOSE = "idempotency-response"


# Core statements, straight to the driver (db.run): every creating POST with a key runs them.
_keys = IdempotencyKey.__table__
_STORED = select(_keys.c.fingerprint, _keys.c.status, _keys.c.body).where(
    _keys.c.owner == bindparam("owner"), _keys.c.key == bindparam("key")
)
# PostgreSQL: the lock and the lookup in one round trip. The lookup's snapshot may predate the
# lock (a duplicate that commits and unlocks in between is then not seen); the unique
# (owner, key) still stops that second run: its insert fails, the transaction is retried
# (db.is_retryable) and the retry replays the stored outcome.
_LOCK_AND_STORED = text(
    "SELECT pg_try_advisory_xact_lock(:id), k.fingerprint, k.status, k.body FROM (SELECT 1) AS one"
    " LEFT JOIN idempotency_keys AS k ON k.owner = :owner AND k.key = :key"
)
_STORE = insert(_keys)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict
    replayed: bool = False


def fingerprint(method: str, path: str, body: object) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def _lock_id(owner: str, key: str) -> int:
    digest = hashlib.blake2b(f"{owner}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def run(
    db: Database,
    owner: str,
    key: str | None,
    request_fingerprint: str,
    work: Callable[[Session], tuple[int, dict]],
    redact: tuple[str, ...] = (),
) -> Outcome:
    """Run `work` once per (owner, key); replay the stored outcome for a repeat.

    Fields named in `redact` (secrets shown once) are never stored, so a replay lacks them.
    """
    if key is None:
        return Outcome(*db.write(work))

    def attempt(session: Session) -> Outcome:
        conn = session.connection()
        if db.dialect == "postgresql":
            ((got, *found),), _ = run_once(conn, _LOCK_AND_STORED, {"id": _lock_id(owner, key), "owner": owner,
                                                                   "key": key})
            if not got:
                raise Conflict(
                    "a request with this Idempotency-Key is still in progress; retry later",
                    slug="idempotency-key-in-use",
                )
            stored = [found] if found[0] is not None else []
        else:
            stored, _ = run_once(conn, _STORED, {"owner": owner, "key": key})
        if stored:
            ((stored_fingerprint, stored_status, stored_body),) = stored
            if stored_fingerprint != request_fingerprint:
                raise Invalid(
                    "this Idempotency-Key was used with a different request",
                    slug="idempotency-key-reused",
                )
            return Outcome(stored_status, json.loads(crypto.unseal(SEAL_PURPOSE, stored_body)), replayed=True)
        status, body = work(session)
        if 200 <= status < 300:
            kept = {k: v for k, v in body.items() if k not in redact}
            run_once(conn, _STORE, {
                "owner": owner, "key": key, "fingerprint": request_fingerprint, "status": status,
                "body": crypto.seal(SEAL_PURPOSE, json.dumps(kept, separators=(",", ":")).encode()),
                "created_at": utcnow(),
            })
        return Outcome(status, body)

    return db.write(attempt)
