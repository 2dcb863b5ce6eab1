"""Idempotency-Key handling (design.md, "API conventions"; Stripe's and brandur's designs).

The stored response commits in the same transaction as the work it describes, so a key is
either unused or bound to a finished, committed result: there is no window where work is
committed without its key or the reverse. A concurrent duplicate is detected with a
transaction-scoped advisory lock on PostgreSQL (409 at once); on SQLite, writes are already
serialized, so the duplicate waits and then receives the replay.

Only successful responses are stored: a refused request wrote nothing, so repeating it
re-executes it (it may succeed once the cause is fixed, e.g. the member now exists). They
are sealed (hub.crypto): a response may name a member's email or phone, or a voucher code.

A stored response is linked to every member it names (`idempotency_key_members`; a batch's
reply names many, a transfer's two), so that erasing a member deletes every stored reply
about them, whoever sent the request (hub.privacy.erasure): a repeat then re-executes and
gets today's answer (410 member-erased) instead of the erased member's contact details.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger, ForeignKey, Select, String, Text, UniqueConstraint, Uuid, bindparam, column, func, insert, select, text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub import crypto
from hub.db import (
    Base, BigId, Database, UTCDateTime, executemany, prefetch, run as run_once, side_by_side, utcnow,
)
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


class IdempotencyKeyMember(Base):
    """A member that a stored response names (erasure deletes the response)."""

    __tablename__ = "idempotency_key_members"

    key_id: Mapped[int] = mapped_column(ForeignKey("idempotency_keys.id", ondelete="CASCADE"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, index=True)


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
    "SELECT pg_try_advisory_xact_lock(:id) AS got, k.fingerprint, k.status, k.body FROM (SELECT 1) AS one"
    " LEFT JOIN idempotency_keys AS k ON k.owner = :owner AND k.key = :key"
).columns(column("got"), column("fingerprint"), column("status"), column("body"))
_STORE = insert(_keys).returning(_keys.c.id)
_LINK = insert(IdempotencyKeyMember.__table__)
# PostgreSQL: the stored response and its links to the members it names in one round trip,
# the member ids bound as one array.
_stored = insert(_keys).values({c: bindparam(c) for c in ("owner", "key", "fingerprint", "status", "body",
                                                            "created_at")}).returning(_keys.c.id).cte("stored")
_STORE_AND_LINK = insert(IdempotencyKeyMember.__table__).from_select(
    ["key_id", "member_id"],
    select(_stored.c.id, func.unnest(bindparam("members", type_=ARRAY(Uuid())))).select_from(_stored),
)
# Fields of a response, at any depth, that hold a member id (a purchase, an order, a transfer,
# each result of a batch). A response that is itself a member passes ("id",) instead.
MEMBER_FIELDS = ("member_id", "from_member_id", "to_member_id")


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict
    replayed: bool = False


def fingerprint(method: str, path: str, body: object) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def members_named(body: object, fields: tuple[str, ...]) -> Iterator[uuid.UUID]:
    """The member ids that `fields` hold anywhere in a response body."""
    if isinstance(body, dict):
        for name, value in body.items():
            if name in fields and isinstance(value, str):
                yield uuid.UUID(value)
            else:
                yield from members_named(value, fields)
    elif isinstance(body, list):
        for value in body:
            yield from members_named(value, fields)


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
    member_fields: tuple[str, ...] = MEMBER_FIELDS,
    read: Callable[[], tuple[Select, dict] | None] | None = None,
) -> Outcome:
    """Run `work` once per (owner, key); replay the stored outcome for a repeat.

    Fields named in `redact` (secrets shown once) are never stored, so a replay lacks them.
    The members held in `member_fields` are linked to the stored outcome. `read` names
    work's first read, (statement, parameters) of one row, or None: on PostgreSQL it is
    made with the key's lock, one round trip for both, and work finds its row with
    hub.db.prefetched (called only then: elsewhere work reads it itself).
    """
    if key is None:
        return Outcome(*db.write(work))

    def attempt(session: Session) -> Outcome:
        conn = session.connection()
        if db.dialect == "postgresql":
            params = {"id": _lock_id(owner, key), "owner": owner, "key": key}
            ahead_read = read() if read is not None else None
            if ahead_read is None:
                ((got, *found),), _ = run_once(conn, _LOCK_AND_STORED, params)
            else:
                statement, read_params = ahead_read
                if clash := params.keys() & read_params.keys():
                    raise ValueError(f"a read's parameters named as the key's: {sorted(clash)}")
                ((got, *found),), _ = run_once(conn, side_by_side(_LOCK_AND_STORED, statement),
                                               {**params, **read_params})
                found, ahead = found[:3], tuple(found[3:])
                prefetch(session, statement, read_params, ahead)
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
            row = {
                "owner": owner, "key": key, "fingerprint": request_fingerprint, "status": status,
                "body": crypto.seal(SEAL_PURPOSE, json.dumps(kept, separators=(",", ":")).encode()),
                "created_at": utcnow(),
            }
            members = sorted(set(members_named(kept, member_fields)))
            if members and db.dialect == "postgresql":
                run_once(conn, _STORE_AND_LINK, {**row, "members": members})
            else:
                ((key_id,),), _ = run_once(conn, _STORE, row)
                if members:
                    executemany(conn, _LINK, [{"key_id": key_id, "member_id": m} for m in members])
        return Outcome(status, body)

    return db.write(attempt)
