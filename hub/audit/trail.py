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
from hub import pagination
from hub.actor import Actor
from hub.db import insert_once, utcnow
from hub.digest import sha256_hex
from hub.privacy import keyring

CLI = "cli"  # the actor of what the command line did (hub/commands/common.py acts as client "cli")
GENESIS = "0" * 64  # the previous hash of the first entry
HEAD_ID = 1
BATCH = 5000  # entries read per round trip by verify


def reason_digest(reason: str) -> dict[str, str]:
    """What an entry keeps of a free-text reason (which could name a person): its SHA-256, as
    `reason_sha256` in `after`, never the text."""
    return {"reason_sha256": sha256_hex(reason)}


def record(session: Session, *, actor: str, action: str, target: str,
           before: dict | None = None, after: dict | None = None) -> AuditEntry:
    """Append one entry in the caller's transaction: it exists if and only if the action's
    change committed. `before`/`after` must be JSON (strings, integers, booleans, lists,
    objects; no floats, no personal data)."""
    before, after = _plain(before), _plain(after)
    head = _locked_head(session)
    entry = AuditEntry(seq=head.seq + 1, at=utcnow(),
                       actor=actor, action=action, target=target, before=before, after=after,
                       prev_hash=head.hash)
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=entry.seq, hash=entry.hash))
    session.flush()
    return entry


def who(actor: Actor) -> str:
    """How the trail names an API caller (its Actor.ref), or the command line."""
    return CLI if actor.client_id == CLI else actor.ref


def _plain(value: dict | None) -> dict | None:
    """`value` as the database will give it back (the hash covers what verify will read):
    JSON with no floats, whose text may not survive the round trip exactly."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_refuse), parse_float=_refuse)


def _refuse(value):
    raise TypeError(f"an audit entry holds JSON without floats, not {value!r}")


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
    head_hash: str = GENESIS  # the last entry's hash, when the chain is whole

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(session: Session, expect: tuple[int, str] | None = None) -> Verdict:
    """Walk the whole chain in seq order: gapless, each prev_hash the previous hash, each hash
    recomputed, and the head's entry present with the head's hash. The head is read first:
    entries appended while verify runs follow it and are checked like the rest.

    `expect`: a head (seq, hash) recorded earlier outside the database: it must still be in
    the chain. Without it, someone who can write to the database could delete the newest
    entries and rewind the head to the last one kept, which needs no key."""
    key = _key()
    anchor_seq, anchor_hash = expect or (0, GENESIS)
    head_seq, head_hash = head(session)
    expected_seq, prev = 1, GENESIS
    count = 0
    for entry in _entries(session):
        if entry.seq != expected_seq:
            return Verdict(count, f"entry {expected_seq} is missing (found {entry.seq} next)")
        if entry.prev_hash != prev:
            return Verdict(count, f"entry {entry.seq} does not follow entry {entry.seq - 1}")
        if not hmac.compare_digest(entry.hash, entry_hash(entry, key)):
            return Verdict(count, f"entry {entry.seq} was altered")
        if entry.seq == head_seq and entry.hash != head_hash:
            return Verdict(count, f"entry {entry.seq} is not the one the head names")
        if entry.seq == anchor_seq and entry.hash != anchor_hash:
            return Verdict(count, f"entry {entry.seq} is not the one the expected head names")
        prev, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    if count < head_seq:
        return Verdict(count, f"the trail ends at entry {count} but its head names entry {head_seq}"
                              " (entries deleted from the end)")
    if count < anchor_seq:
        return Verdict(count, f"the trail ends at entry {count} but the expected head is entry {anchor_seq}"
                              " (entries deleted from the end, head rewound)")
    return Verdict(count, None, prev)


def head(session: Session) -> tuple[int, str]:
    """The last entry's seq and hash: print it somewhere the database's writers cannot
    change (docs/audit.md), and a later verify against it shows the trail kept its past."""
    found = session.get(AuditHead, HEAD_ID)
    return (found.seq, found.hash) if found else (0, GENESIS)


def entries(session: Session, *, cursor: str | None = None, limit: int = 50, action: str | None = None,
            actor: str | None = None, target: str | None = None) -> tuple[list[AuditEntry], str | None]:
    """A page of entries, newest first; `target` matches a prefix ("partner:" or
    "partner:KOPI"), `action` and `actor` whole values."""
    q = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit + 1)
    before = pagination.id_cursor(cursor)
    if before is not None:
        q = q.where(AuditEntry.seq < before)
    if action:
        q = q.where(AuditEntry.action == action)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if target:
        q = q.where(AuditEntry.target.startswith(target, autoescape=True))
    rows = list(session.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, pagination.encode(rows[-1].seq) if more else None


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


def view(entry: AuditEntry) -> dict:
    """An entry as the API, the CLI and the ops console show it."""
    return {"seq": entry.seq, "at": _instant(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "before": entry.before, "after": entry.after, "hash": entry.hash}
