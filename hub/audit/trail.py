"""Append to the audit trail and check it.

Each entry's hash is HMAC-SHA256, under a key derived from the hub's blind-index key (so
from HUB_INDEX_KEY or HUB_SECRET_KEY), of the previous hash and the entry's canonical JSON.
Someone who can write to the database but does not hold the key cannot edit, insert or
delete an entry and recompute the chain after it: `verify` names the first entry that does
not check out.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.audit.models import AuditEntry, AuditHead
from hub.db import insert_once, utcnow
from hub.privacy import keyring

GENESIS = "0" * 64  # the previous hash of the first entry
HEAD_ID = 1
BATCH = 5000  # entries read per round trip by verify


def record(session: Session, *, actor: str, action: str, target: str,
           before: dict | None = None, after: dict | None = None) -> AuditEntry:
    """Append one entry in the caller's transaction: it exists if and only if the action's
    change committed. `before`/`after` must be JSON (strings, integers, booleans, lists,
    objects; no floats, no personal data)."""
    head = _locked_head(session)
    entry = AuditEntry(seq=head.seq + 1, at=utcnow(),
                       actor=actor, action=action, target=target, before=before, after=after,
                       prev_hash=head.hash)
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=entry.seq, hash=entry.hash))
    session.flush()
    return entry


def _locked_head(session: Session) -> AuditHead:
    conn = session.connection()
    conn.execute(insert_once(AuditHead.__table__, ["id"])[conn.dialect.name],
                 {"id": HEAD_ID, "seq": 0, "hash": GENESIS})
    return session.execute(select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()).scalar_one()


def _key() -> bytes:
    return hmac.new(keyring.current().blind_key, b"hub:audit-chain", hashlib.sha256).digest()


def canonical(entry: AuditEntry) -> bytes:
    return json.dumps({
        "seq": entry.seq, "at": _instant(entry.at), "actor": entry.actor, "action": entry.action,
        "target": entry.target, "before": entry.before, "after": entry.after,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _instant(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(entry: AuditEntry, key: bytes | None = None) -> str:
    return hmac.new(key or _key(), entry.prev_hash.encode() + canonical(entry), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verdict:
    entries: int
    problem: str | None  # None: the chain is whole

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(session: Session) -> Verdict:
    """Walk the whole chain in seq order: gapless, each prev_hash the previous hash, each hash
    recomputed, and the head naming the last entry."""
    key = _key()
    expected_seq, prev = 1, GENESIS
    count = 0
    for entry in _entries(session):
        if entry.seq != expected_seq:
            return Verdict(count, f"entry {expected_seq} is missing (found {entry.seq} next)")
        if entry.prev_hash != prev:
            return Verdict(count, f"entry {entry.seq} does not follow entry {entry.seq - 1}")
        if not hmac.compare_digest(entry.hash, entry_hash(entry, key)):
            return Verdict(count, f"entry {entry.seq} was altered")
        prev, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    head = session.get(AuditHead, HEAD_ID)
    last_seq, last_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if (last_seq, last_hash) != (count, prev):
        return Verdict(count, f"the trail ends at entry {count} but its head names entry {last_seq}")
    return Verdict(count, None)


def _entries(session: Session) -> Iterator[AuditEntry]:
    after = 0
    while True:
        batch = session.execute(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(BATCH)
        ).scalars().all()
        yield from batch
        if len(batch) < BATCH:
            return
        after = batch[-1].seq
        session.expunge_all()
