"""Key rotation (`hub keys rotate-data`, docs/encryption.md): re-wrap data keys under the
current master key, start a new data key, and seal every value again under it.

Batch by batch, each in its own transaction, so it runs while the hub serves: a value is
replaced only if it is still the one read (a concurrent write wins, and is sealed by the
writer). Run again at any time: it resumes with what is not yet under the newest data key.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Table, Text, func, select, type_coerce, update

from hub.audit import trail
from hub.db import Base, Database
from hub.privacy.keyring import FORMAT, Keyring, KeyRow
from hub.privacy.models import DataKey
from hub.privacy.sealed import Sealed, as_stored

_data_keys = DataKey.__table__


@dataclass(frozen=True)
class SealedColumn:
    table: Table
    name: str
    purpose: str


def sealed_columns() -> list[SealedColumn]:
    """Every column that holds sealed values: the `Sealed` ones, and those hub.crypto fills."""
    import hub.models  # noqa: F401  (registers every table)
    from hub import idempotency
    from hub.identity import accounts, keys, mail
    from hub.notify import webhook_endpoints
    from hub.rewards import redemptions

    tables = Base.metadata.tables
    found = [SealedColumn(table, column.name, column.type.purpose)
             for table in tables.values() for column in table.columns if isinstance(column.type, Sealed)]
    explicit = [
        ("idempotency_keys", "body", idempotency.SEAL_PURPOSE),
        ("member_accounts", "totp_secret_sealed", accounts.TOTP_PURPOSE),
        ("outgoing_mail", "body_sealed", mail.PURPOSE),
        ("redemptions", "recipient_sealed", redemptions.SEAL_PURPOSE),
        ("redemptions", "delivery_sealed", redemptions.SEAL_PURPOSE),
        ("signing_keys", "private_jwk_sealed", keys.SEAL_PURPOSE),
        ("webhook_endpoints", "secret_sealed", webhook_endpoints.SEAL_PURPOSE),
        ("webhook_endpoints", "previous_secret_sealed", webhook_endpoints.SEAL_PURPOSE),
    ]
    return found + [SealedColumn(tables[t], c, p) for t, c, p in explicit]


def rewrap(db: Database, ring: Keyring) -> int:
    """Wrap every data key under the current master key; how many were not."""
    with db.engine.connect() as conn:
        rows = [KeyRow(*r) for r in conn.execute(
            select(_data_keys.c.id, _data_keys.c.kek_id, _data_keys.c.wrapped)
            .where(_data_keys.c.kek_id != ring.current_kek))]
    for row in rows:
        wrapped = ring.wrap(row.id, ring.unwrap(row))
        db.write(lambda s, row=row, wrapped=wrapped: s.execute(
            update(_data_keys).where(_data_keys.c.id == row.id, _data_keys.c.kek_id == row.kek_id)
            .values(kek_id=ring.current_kek, wrapped=wrapped)))
    return len(rows)


def reseal(db: Database, ring: Keyring, batch: int = 500) -> tuple[int, int]:
    """Seal every value not under the current data key again: (resealed, skipped because
    changed meanwhile)."""
    current = ring.current_key()
    done = skipped = 0
    for col in sealed_columns():
        (key,) = col.table.primary_key.columns
        stored = as_stored(col.table.c[col.name])
        after = None
        while True:
            q = (select(key, stored).where(stored.is_not(None), ~stored.startswith(f"{FORMAT}.{current}."))
                 .order_by(key).limit(batch))
            with db.read() as s:
                rows = s.execute(q if after is None else q.where(key > after)).all()
            if not rows:
                break
            changed = db.write(lambda s, rows=rows: sum(
                s.execute(update(col.table).where(key == pk, stored == old).values(
                    {col.name: type_coerce(ring.seal(col.purpose, ring.unseal(col.purpose, old)), Text)})).rowcount
                for pk, old in rows))
            done += changed
            skipped += len(rows) - changed
            after = rows[-1][0]
    return done, skipped


def rotate(db: Database, ring: Keyring, *, by: str, new_key: bool = True, batch: int = 500) -> dict:
    rewrapped = rewrap(db, ring)
    if new_key:
        with db.engine.begin() as conn:
            ring.create_key(conn)
    resealed, skipped = reseal(db, ring, batch)
    report = {"data_key": ring.current_key(), "rewrapped": rewrapped, "resealed": resealed, "skipped": skipped}
    # Many transactions make a rotation: the trail records it once it is done (a resumed
    # rotation is a second entry).
    db.write(lambda s: trail.record(s, actor=by, action="data_key.rotate", target=f"data_key:{report['data_key']}",
                                    after={**report, "new_key": new_key}))
    return report


def status(db: Database) -> list[dict]:
    """Each data key (newest first): the master key wrapping it and how many values it seals."""
    uses: Counter = Counter()
    with db.read() as s:
        for col in sealed_columns():
            stored = as_stored(col.table.c[col.name])
            dek = func.substr(stored, len(FORMAT) + 2, 16)
            uses.update(dict(s.execute(select(dek, func.count()).where(stored.is_not(None)).group_by(dek)).all()))
        keys = s.execute(select(_data_keys.c.id, _data_keys.c.kek_id, _data_keys.c.created_at)
                         .order_by(_data_keys.c.created_at.desc(), _data_keys.c.id.desc())).all()
    return [{"id": k, "master_key": kek, "created_at": at, "values": uses.get(k, 0)} for k, kek, at in keys]
