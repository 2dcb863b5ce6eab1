"""Posting to the ledger.

All functions take the caller's session and never commit: a list of transfers given to
`post` is linked (committed together or not at all) because it is one database transaction.

Balances of cached accounts change through one conditional UPDATE per account, in ascending
account id order (rule 9), so the row lock and the no-overdraft check are one atomic step
(rule 4) and opposite movements cannot deadlock.

A closed account (its member erased: `close`) takes no more movements: every balance update
has `NOT closed` in its WHERE. That costs the hot path nothing, and is race-free: an update
that waited for the erasure's row lock re-evaluates its WHERE on the committed row (PostgreSQL,
READ COMMITTED), updates nothing, and the post fails with AccountClosed before anything of
it is written.
"""
from __future__ import annotations

import functools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import BigInteger, bindparam, case, func, insert, literal, select, text, union, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import SelectBase

from hub.db import (
    as_columns, bind_values, executemany, insert_many, one_of, run as run_once, unnest_rows, utcnow, values_shape,
)
from hub.ledger.errors import (
    AccountClosed,
    InsufficientFunds,
    InvalidTransfer,
    PendingAlreadyResolved,
    PendingExpired,
    PendingNotFound,
)
from hub.ledger.models import (
    PENDING,
    POST_PENDING,
    POSTED,
    VOID_PENDING,
    Account,
    Transfer,
)
from hub.observability import metrics

_accounts = Account.__table__
_transfers = Transfer.__table__


@dataclass(frozen=True)
class AccountInfo:
    """The parts of an account that never change after it is opened."""

    id: int
    ledger: uuid.UUID
    cached: bool
    no_overdraft: bool


@dataclass(frozen=True)
class TransferSpec:
    debit: int
    credit: int
    amount: int
    code: str
    ledger: uuid.UUID
    caused_by: str
    ref_type: str | None = None
    ref_id: str | None = None
    meta: dict | None = None


@dataclass(frozen=True)
class Balance:
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def posted(self) -> int:
        """Credit-normal balance (what a member holds)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass
class _Delta:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def need(self) -> int:
        """How much available balance the account must have for the deltas to leave it >= 0."""
        return self.debits_pending + self.debits_posted - self.credits_posted


# Account attributes are immutable, so a process-wide cache is always right. Bounded: member
# accounts are many (callers that read them anyway pass them as `known` instead).
_info_cache: dict[int, AccountInfo] = {}
_INFO_CACHE_SIZE = 50_000


def open_account(
    session: Session, ledger: uuid.UUID, code: str, *, cached: bool, no_overdraft: bool
) -> int:
    account = Account(ledger=ledger, code=code, cached=cached, no_overdraft=no_overdraft)
    session.add(account)
    session.flush()
    return account.id


def account_info(
    session: Session, ids: Iterable[int], known: Iterable[AccountInfo] = ()
) -> dict[int, AccountInfo]:
    """Attributes of these accounts; `known` are ones the caller already read from the
    database (saves a query per unseen member account on the earn path)."""
    wanted = set(ids)
    found = {a.id: a for a in known if a.id in wanted}
    missing = [i for i in wanted if i not in found and i not in _info_cache]
    if missing:
        rows = session.connection().execute(
            select(_accounts.c.id, _accounts.c.ledger, _accounts.c.cached, _accounts.c.no_overdraft)
            .where(_accounts.c.id.in_(missing))
        )
        for row in rows:
            if len(_info_cache) >= _INFO_CACHE_SIZE:
                _info_cache.pop(next(iter(_info_cache)), None)  # oldest first
            _info_cache[row.id] = AccountInfo(row.id, row.ledger, row.cached, row.no_overdraft)
    for i in wanted:
        if i not in found and i in _info_cache:
            found[i] = _info_cache[i]
    unknown = wanted - found.keys()
    if unknown:
        raise InvalidTransfer(f"unknown accounts {sorted(unknown)}")
    return found


def _check(spec: TransferSpec, infos: dict[int, AccountInfo]) -> None:
    if not isinstance(spec.amount, int) or isinstance(spec.amount, bool) or spec.amount <= 0:
        raise InvalidTransfer(f"amount must be a positive integer, got {spec.amount!r}")
    if spec.debit == spec.credit:
        raise InvalidTransfer("debit and credit accounts must differ")
    for account_id in (spec.debit, spec.credit):
        if infos[account_id].ledger != spec.ledger:
            raise InvalidTransfer(f"account {account_id} is not on ledger {spec.ledger}")


_UPDATE_BALANCE = text(
    "UPDATE ledger_accounts SET"
    " debits_pending = debits_pending + :dp,"
    " debits_posted = debits_posted + :dpo,"
    " credits_pending = credits_pending + :cp,"
    " credits_posted = credits_posted + :cpo"
    " WHERE id = :id AND NOT closed"
)
_UPDATE_BALANCE_GUARDED = text(
    _UPDATE_BALANCE.text + " AND credits_posted - debits_posted - debits_pending >= :need"
)


# A run of unguarded balance updates on PostgreSQL: first lock the rows in ascending id
# order (the lock order of rule 9: a sorted FOR NO KEY UPDATE, the lock an UPDATE takes),
# then update them all from arrays. A thousand pipelined UPDATEs cost PostgreSQL and psycopg
# several times more. Only rows already locked by this transaction are updated, so the
# second statement waits for no lock and cannot take locks out of order.
_LOCK_IN_ORDER = text(
    "SELECT id FROM ledger_accounts WHERE id = ANY(CAST(:ids AS BIGINT[])) AND NOT closed ORDER BY id"
    " FOR NO KEY UPDATE"
)
_UPDATE_MANY = text(
    "UPDATE ledger_accounts AS a SET"
    " debits_pending = a.debits_pending + v.dp,"
    " debits_posted = a.debits_posted + v.dpo,"
    " credits_pending = a.credits_pending + v.cp,"
    " credits_posted = a.credits_posted + v.cpo"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:dp AS BIGINT[]), CAST(:dpo AS BIGINT[]),"
    " CAST(:cp AS BIGINT[]), CAST(:cpo AS BIGINT[])) AS v(id, dp, dpo, cp, cpo)"
    " WHERE a.id = v.id"
)


def _update_many(conn, run: list[dict]) -> int:
    """Apply a run of unguarded updates (distinct accounts, ascending ids); rows updated."""
    columns = as_columns(run, ("id", "dp", "dpo", "cp", "cpo"))
    locked, _ = run_once(conn, _LOCK_IN_ORDER, {"ids": columns["id"]})
    if len(locked) != len(run):
        return len(locked)  # an account is missing or closed: the caller refuses the post
    return run_once(conn, _UPDATE_MANY, {"ids": columns.pop("id"), **columns})[1]


def _apply(session: Session, deltas: dict[int, _Delta], infos: dict[int, AccountInfo]) -> None:
    """Apply balance deltas to cached accounts in ascending id order (the lock order).

    An update that could overdraw an account is guarded and checked on its own. A run of
    consecutive unguarded ones (credits: a batch of earns) goes together instead of a round
    trip per account: on PostgreSQL as two set-based statements (`_update_many`), elsewhere
    as one executemany in that same order.
    """
    conn = session.connection()
    run: list[dict] = []

    def flush_run() -> None:
        if run:
            if len(run) == 1:
                updated = run_once(conn, _UPDATE_BALANCE, run[0])[1]
            elif conn.dialect.name == "postgresql":
                updated = _update_many(conn, run)
            else:
                updated = executemany(conn, _UPDATE_BALANCE, run)  # all ints
            if updated != len(run):
                _refuse(conn, [params["id"] for params in run], InvalidTransfer("an account to update is missing"))
            run.clear()

    for account_id in sorted(deltas):
        info = infos[account_id]
        if not info.cached:
            continue
        d = deltas[account_id]
        params = {
            "id": account_id,
            "dp": d.debits_pending,
            "dpo": d.debits_posted,
            "cp": d.credits_pending,
            "cpo": d.credits_posted,
        }
        need = d.need() if info.no_overdraft else 0
        if need <= 0:
            run.append(params)
            continue
        flush_run()
        if run_once(conn, _UPDATE_BALANCE_GUARDED, {**params, "need": need})[1] != 1:
            _refuse(conn, [account_id], InsufficientFunds(account_id))
    flush_run()


_CLOSED = select(_accounts.c.id).where(_accounts.c.id.in_(bindparam("ids", expanding=True)), _accounts.c.closed)


def _refuse(conn, account_ids: list[int], otherwise: Exception) -> NoReturn:
    """Why a balance update updated nothing: a closed account, else `otherwise`. Only ever
    run when refusing (a fresh statement, so it sees the erasure that closed it)."""
    closed = conn.execute(_CLOSED, {"ids": account_ids}).scalars().first()
    if closed is not None:
        raise AccountClosed(closed)
    raise otherwise


def close(session: Session, account_ids: Sequence[int]) -> None:
    """Close accounts: no balance update applies to them any more (an erased member's).
    Their rows are locked FOR UPDATE first (in id order), which also blocks a zero-point
    purchase's `require_open` until this transaction ends."""
    ids = sorted(account_ids)
    if ids:
        session.execute(select(_accounts.c.id).where(_accounts.c.id.in_(ids)).order_by(_accounts.c.id)
                        .with_for_update())
        session.execute(update(_accounts).where(_accounts.c.id.in_(ids)).values(closed=True))


def require_open(session: Session, account_ids: Iterable[int]) -> None:
    """Refuse (AccountClosed) if any of these accounts is closed, waiting for a closing in
    progress: for a write about an account that moves no points (a purchase earning none).
    FOR KEY SHARE waits only for `close`'s FOR UPDATE, never for a balance update."""
    ids = sorted(set(account_ids))
    if ids:
        conn = session.connection()
        open_ = conn.execute(select(_accounts.c.id).where(_accounts.c.id.in_(ids), ~_accounts.c.closed)
                             .with_for_update(read=True, key_share=True)).scalars().all()
        if len(open_) != len(ids):
            _refuse(conn, ids, InvalidTransfer("an account is missing"))


@dataclass(frozen=True)
class Gate:
    """Writes that must grant `total` for a post to be made, made in the post's own
    statement (PostgreSQL data-modifying CTEs) when it can be one: a rated earn takes its
    counters and posts in one round trip.

    `rows`: a SELECT over them in the session's SQL dialect, whose last column, `granted`,
    sums what they granted. The same object for the same shape: the post's statement is
    built and cached on it. `params`: its parameters, named apart from the post's own. When
    the gate is met and the post is refused all the same (a closed account, a short
    balance), its writes stay in the transaction, which the caller rolls back on the error."""

    rows: SelectBase
    params: dict
    total: int

    def __post_init__(self):
        if self.total <= 0:  # with no rows, a total of 0 would be met: the post made unseen
            raise ValueError("a gate must grant a positive total")


@functools.lru_cache(maxsize=64)
def _apply_and_insert_statement(guarded: bool, gate: SelectBase | None = None):
    """What `_apply` then `_insert` do for one transfer of one cached account, as one
    PostgreSQL statement: the conditional UPDATE (a data-modifying CTE) and the INSERT of the
    transfer, which inserts nothing when the UPDATE updated no row.

    With a gate's rows, the statement makes the gate's writes first and returns their rows,
    each with the transfer's id, which is NULL when they granted less than the gate's total
    (the UPDATE's condition: then nothing of the transfer is written)."""
    a, t = _accounts, _transfers
    account = (
        update(a)
        .where(a.c.id == bindparam("id"), ~a.c.closed)
        .values(
            debits_pending=a.c.debits_pending + bindparam("dp", type_=BigInteger),
            debits_posted=a.c.debits_posted + bindparam("dpo", type_=BigInteger),
            credits_pending=a.c.credits_pending + bindparam("cp", type_=BigInteger),
            credits_posted=a.c.credits_posted + bindparam("cpo", type_=BigInteger),
        )
        .returning(a.c.id)
    )
    if guarded:
        available = a.c.credits_posted - a.c.debits_posted - a.c.debits_pending
        account = account.where(available >= bindparam("need", type_=BigInteger))
    if gate is not None:
        gate = gate.cte("gate")
        granted = select(func.coalesce(func.sum(gate.c.granted), 0)).scalar_subquery()
        account = account.where(granted == bindparam("gate_total", type_=BigInteger))
    account = account.cte("account")
    columns = list(_ROW_COLUMNS)
    values = select(*(bindparam(c, type_=t.c[c].type) for c in columns)).select_from(account)
    transfer = insert(t).from_select(columns, values).returning(t.c.id)
    if gate is None:
        return transfer
    return select(gate, select(transfer.cte("transfer").c.id).scalar_subquery())


_ROW_COLUMNS = (
    "ledger", "debit_account_id", "credit_account_id", "amount", "code", "phase", "caused_by",
    "ref_type", "ref_id", "metadata", "created_at", "pending_id", "timeout_at",
)


def _apply_and_insert(conn, account_id: int, d: _Delta, info: AccountInfo, row: dict) -> int:
    need = d.need() if info.no_overdraft else 0
    inserted, _ = run_once(conn, _apply_and_insert_statement(need > 0), _apply_params(account_id, d, need, row))
    if not inserted:
        _refuse_update(conn, account_id, need)
    return inserted[0][0]


def _gated_apply_and_insert(conn, account_id: int, d: _Delta, info: AccountInfo, row: dict,
                            gate: Gate) -> tuple[int | None, list[tuple]]:
    """_apply_and_insert behind a gate: (the transfer's id, None if the gate fell short; the
    gate's rows, without the id)."""
    need = d.need() if info.no_overdraft else 0
    params = _apply_params(account_id, d, need, row)
    if clash := gate.params.keys() & params.keys():
        raise ValueError(f"a gate's parameters named as the post's: {sorted(clash)}")
    params.update(gate.params, gate_total=gate.total)
    rows, _ = run_once(conn, _apply_and_insert_statement(need > 0, gate.rows), params)
    gated = [r[:-1] for r in rows]
    transfer_id = rows[0][-1] if rows else None
    if transfer_id is None and _granted(gated) == gate.total:
        _refuse_update(conn, account_id, need)
    return transfer_id, gated


def _apply_params(account_id: int, d: _Delta, need: int, row: dict) -> dict:
    params = {"id": account_id, "dp": d.debits_pending, "dpo": d.debits_posted,
              "cp": d.credits_pending, "cpo": d.credits_posted, **row}
    if need > 0:
        params["need"] = need
    return params


def _refuse_update(conn, account_id: int, need: int) -> NoReturn:
    _refuse(conn, [account_id], InsufficientFunds(account_id) if need > 0
            else InvalidTransfer("an account to update is missing"))


def _granted(rows: list[tuple]) -> int:
    return sum(r[-1] for r in rows)


def _row(spec: TransferSpec, phase: str, now: datetime, **extra) -> dict:
    return {
        "ledger": spec.ledger,
        "debit_account_id": spec.debit,
        "credit_account_id": spec.credit,
        "amount": spec.amount,
        "code": spec.code,
        "phase": phase,
        "caused_by": spec.caused_by,
        "ref_type": spec.ref_type,
        "ref_id": spec.ref_id,
        "metadata": spec.meta,  # the column's name (the ORM attribute is `meta`)
        "created_at": now,
        "pending_id": extra.get("pending_id"),
        "timeout_at": extra.get("timeout_at"),
    }


# Core inserts on the table, built once: the ORM's bulk insert adds nothing here but CPU.
_INSERT_ONE = insert(_transfers).returning(_transfers.c.id)
_INSERT_MANY = insert(_transfers).returning(_transfers.c.id, sort_by_parameter_order=True)
_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('ledger_transfers', 'id')) FROM generate_series(1, :n)"
)


# Up to this many rows (a conversion's two legs), one multi-row INSERT built once: one round
# trip where the sequence and the COPY take two, and few enough parameters for psycopg's
# parse cache. RETURNING's order is not promised to be VALUES', so each id comes back with
# its row's accounts, which tell the rows apart (_distinct_legs).
_FEW_ROWS = 3


def _insert_few_statement(n: int):
    values = [{c: bindparam(f"{c}_{k}", type_=_transfers.c[c].type) for c in _ROW_COLUMNS} for k in range(n)]
    return insert(_transfers).values(values).returning(_transfers.c.id, _transfers.c.debit_account_id,
                                                       _transfers.c.credit_account_id)


_INSERT_FEW = {n: _insert_few_statement(n) for n in range(2, _FEW_ROWS + 1)}


def _insert(session: Session, rows: list[dict]) -> list[int]:
    """Insert transfers; their ids in the order of `rows`."""
    conn = session.connection()
    if len(rows) == 1:
        ((transfer_id,),), _ = run_once(conn, _INSERT_ONE, rows[0])
        return [transfer_id]
    if conn.dialect.name == "postgresql" and len(rows) <= _FEW_ROWS and _distinct_legs(rows):
        returned, _ = run_once(conn, _INSERT_FEW[len(rows)],
                               {f"{c}_{k}": row[c] for k, row in enumerate(rows) for c in _ROW_COLUMNS})
        by_leg = {(debit, credit): transfer_id for transfer_id, debit, credit in returned}
        return [by_leg[row["debit_account_id"], row["credit_account_id"]] for row in rows]
    if conn.dialect.name == "postgresql" and len(rows) > _FEW_ROWS:
        # Many rows with RETURNING become one statement with 13 parameters a row, which
        # psycopg parses in Python uncached (most of a 1000-item batch's time). Taking the
        # ids from the sequence first lets the insert be a COPY instead.
        ids = sorted(conn.execute(_NEXT_IDS, {"n": len(rows)}).scalars())
        insert_many(conn, _transfers, [{**row, "id": i} for row, i in zip(rows, ids)])
        return ids
    return list(conn.execute(_INSERT_MANY, rows).scalars())


def _distinct_legs(rows: list[dict]) -> bool:
    """Whether each row moves between its own pair of accounts (how _INSERT_FEW's answer is
    matched back to the rows)."""
    return len({(row["debit_account_id"], row["credit_account_id"]) for row in rows}) == len(rows)


def post(
    session: Session, specs: Sequence[TransferSpec], known: Iterable[AccountInfo] = ()
) -> list[int]:
    """Post transfers immediately. Several specs are linked: all are applied or none.

    `known`: attributes of some of the accounts, read by the caller in this transaction.
    """
    return _create(session, specs, POSTED, known=known)[0]


def post_gated(
    session: Session, spec: TransferSpec, gate: Gate, known: Iterable[AccountInfo] = ()
) -> tuple[int | None, list[tuple]]:
    """Make `gate`'s writes, then post `spec` if they granted the gate's total: (the
    transfer's id, None if they granted less; the gate's rows). One statement for an earn on
    PostgreSQL; otherwise the gate's rows are read first, and the post is made after them."""
    ids, rows = _create(session, [spec], POSTED, known=known, gate=gate)
    return (ids[0] if ids else None), rows


def reserve(
    session: Session, specs: Sequence[TransferSpec], timeout: timedelta, known: Iterable[AccountInfo] = ()
) -> list[int]:
    """Create pending transfers (reservations) that must be posted or voided before `timeout`.

    `known`: as for `post`."""
    if timeout <= timedelta(0):
        raise InvalidTransfer("a pending transfer needs a positive timeout")
    return _create(session, specs, PENDING, timeout, known)[0]


def _create(
    session: Session,
    specs: Sequence[TransferSpec],
    phase: str,
    timeout: timedelta | None = None,
    known: Iterable[AccountInfo] = (),
    gate: Gate | None = None,
) -> tuple[list[int], list[tuple]]:
    """The transfers' ids (none when the gate fell short), and the gate's rows."""
    if not specs:
        return [], []
    infos = account_info(session, {a for s in specs for a in (s.debit, s.credit)}, known)
    deltas: dict[int, _Delta] = defaultdict(_Delta)
    for spec in specs:
        _check(spec, infos)
        if phase == PENDING:
            deltas[spec.debit].debits_pending += spec.amount
            deltas[spec.credit].credits_pending += spec.amount
        else:
            deltas[spec.debit].debits_posted += spec.amount
            deltas[spec.credit].credits_posted += spec.amount
    now = utcnow()
    timeout_at = now + timeout if timeout else None
    rows = [_row(s, phase, now, timeout_at=timeout_at) for s in specs]
    cached = [a for a in deltas if infos[a].cached]
    conn = session.connection()
    gated: list[tuple] = []
    if len(rows) == 1 and len(cached) == 1 and conn.dialect.name == "postgresql":
        # One transfer moving one cached account (an earn, a return): its balance update and
        # its insert as one statement, a round trip fewer on the hottest path.
        (account_id,) = cached
        if gate is None:
            ids = [_apply_and_insert(conn, account_id, deltas[account_id], infos[account_id], rows[0])]
        else:
            made, gated = _gated_apply_and_insert(conn, account_id, deltas[account_id], infos[account_id],
                                                  rows[0], gate)
            ids = [] if made is None else [made]
    else:
        if gate is not None:
            gated, _ = run_once(conn, gate.rows, gate.params)
            if _granted(gated) != gate.total:
                return [], gated
        _apply(session, deltas, infos)
        ids = _insert(session, rows)
    if ids:
        metrics.transfers_made(session, rows)  # counted when the transaction commits
    return ids, gated


# What resolving a reservation reads of it, with its two accounts' attributes (Core, one
# statement, no ORM identity map): a member account the process has not seen costs no
# second read (the relay resolves reservations the API made).
_debit, _credit = _accounts.alias("debit"), _accounts.alias("credit")


def _pending_statement(shape: str):
    """The reservations named by "ids" (shaped as hub.db.one_of), in id order."""
    return (
        select(
            _transfers.c.id, _transfers.c.ledger, _transfers.c.debit_account_id, _transfers.c.credit_account_id,
            _transfers.c.amount, _transfers.c.code, _transfers.c.ref_type, _transfers.c.ref_id,
            _transfers.c.timeout_at,
            _debit.c.ledger, _debit.c.cached, _debit.c.no_overdraft,
            _credit.c.ledger, _credit.c.cached, _credit.c.no_overdraft,
        )
        .join_from(_transfers, _debit, _debit.c.id == _transfers.c.debit_account_id)
        .join(_credit, _credit.c.id == _transfers.c.credit_account_id)
        .where(one_of(_transfers.c.id, "ids", shape), _transfers.c.phase == PENDING)
        .order_by(_transfers.c.id)
    )


_PENDINGS = {shape: _pending_statement(shape) for shape in ("one", "in", "array")}


@dataclass(frozen=True)
class _Pending:
    id: int
    ledger: uuid.UUID
    debit_account_id: int
    credit_account_id: int
    amount: int
    code: str
    ref_type: str | None
    ref_id: str | None
    timeout_at: datetime | None
    accounts: tuple[AccountInfo, AccountInfo]  # debit, credit


def _load_pendings(session: Session, pending_ids: Sequence[int]) -> list[_Pending]:
    """The reservations, in ascending id order, read in one statement (a wave of the relay's
    outcomes resolves several at once). One named twice would be resolved twice: refused."""
    twice = [pending_id for pending_id, count in Counter(pending_ids).items() if count > 1]
    if twice:
        raise PendingAlreadyResolved(f"pending transfer {twice[0]} is named twice")
    ids = sorted(pending_ids)
    conn = session.connection()
    shape = values_shape(conn, ids, by_key=True)
    rows, _ = run_once(conn, _PENDINGS[shape], {"ids": bind_values(shape, ids)})
    if len(rows) != len(ids):
        missing = sorted(set(ids) - {row[0] for row in rows})
        raise PendingNotFound(f"no pending transfer {missing[0]}")
    return [_Pending(*row[:9], accounts=(AccountInfo(row[2], *row[9:12]), AccountInfo(row[3], *row[12:15])))
            for row in rows]


def _reserved_accounts_statement(shape: str):
    mine = (_transfers.c.ref_type == bindparam("ref_type"), one_of(_transfers.c.ref_id, "refs", shape),
            _transfers.c.phase == PENDING)
    moved = union(select(_transfers.c.debit_account_id).where(*mine),
                  select(_transfers.c.credit_account_id).where(*mine))
    return (select(_accounts.c.id).where(_accounts.c.id.in_(moved), _accounts.c.cached)
            .order_by(_accounts.c.id).with_for_update())


_RESERVED_ACCOUNTS = {shape: _reserved_accounts_statement(shape) for shape in ("one", "in", "array")}


def lock_reserved_accounts(session: Session, ref_type: str, ref_ids: Sequence[str]) -> list[int]:
    """Lock the cached accounts that these references' reservations move, in ascending id
    order: the order in which every balance update takes them. A caller about to resolve the
    reservations one reference at a time takes them all first, and so holds them in that
    same order (the relay's waves, hub.rewards.relay). Their ids, ascending."""
    conn = session.connection()
    refs = sorted(set(ref_ids))
    shape = values_shape(conn, refs, by_key=True)
    rows, _ = run_once(conn, _RESERVED_ACCOUNTS[shape], {"ref_type": ref_type, "refs": bind_values(shape, refs)})
    return [account_id for (account_id,) in rows]


def _insert_resolution(insert_for_dialect):
    """Insert a resolving transfer unless its reservation already has one. The unique
    pending_id decides, even between concurrent resolutions (the second waits for the first
    to commit, then inserts nothing), without a savepoint's two extra round trips."""
    return (
        insert_for_dialect(_transfers)
        .on_conflict_do_nothing(index_elements=["pending_id"])
        .returning(_transfers.c.id)
    )


# ON CONFLICT is spelled per dialect in SQLAlchemy; the hub runs on these two. Several
# resolutions go as one statement, each returned row naming its reservation (a conflict
# returns none for it): on PostgreSQL an INSERT ... SELECT of the rows bound as arrays
# (`unnest_rows`), on SQLite a multi-row INSERT (SQLAlchemy's "insertmanyvalues").
_INSERT_RESOLUTION = {"postgresql": _insert_resolution(postgresql.insert), "sqlite": _insert_resolution(sqlite.insert)}
_INSERT_RESOLUTIONS_UNNESTED = (
    postgresql.insert(_transfers).from_select(list(_ROW_COLUMNS), select(*unnest_rows(_transfers, _ROW_COLUMNS).c))
    .on_conflict_do_nothing(index_elements=["pending_id"]).returning(_transfers.c.id, _transfers.c.pending_id)
)
_INSERT_RESOLUTIONS_SQLITE = _INSERT_RESOLUTION["sqlite"].returning(_transfers.c.pending_id)


def _resolve(session: Session, resolutions: Sequence[tuple[_Pending, int]], phase: str, caused_by: str) -> list[int]:
    """Resolve each (reservation, amount posted) with a transfer of `phase`; their ids. The
    balance changes are applied together, so every lock is taken in ascending account order."""
    infos = account_info(session, {a for p, _ in resolutions for a in (p.debit_account_id, p.credit_account_id)},
                         known=[a for p, _ in resolutions for a in p.accounts])
    deltas: dict[int, _Delta] = defaultdict(_Delta)
    conn = session.connection()
    now = utcnow()
    rows = []
    for pending, amount in resolutions:
        deltas[pending.debit_account_id].debits_pending -= pending.amount
        deltas[pending.credit_account_id].credits_pending -= pending.amount
        if phase == POST_PENDING:
            deltas[pending.debit_account_id].debits_posted += amount
            deltas[pending.credit_account_id].credits_posted += amount
        spec = TransferSpec(
            debit=pending.debit_account_id,
            credit=pending.credit_account_id,
            amount=amount,
            code=pending.code,
            ledger=pending.ledger,
            caused_by=caused_by,
            ref_type=pending.ref_type,
            ref_id=pending.ref_id,
        )
        rows.append(_row(spec, phase, now, pending_id=pending.id))
    if len(rows) == 1:
        inserted, _ = run_once(conn, _INSERT_RESOLUTION[conn.dialect.name], rows[0])
        made = {rows[0]["pending_id"]: transfer_id for (transfer_id,) in inserted}
    elif conn.dialect.name == "postgresql":
        inserted, _ = run_once(conn, _INSERT_RESOLUTIONS_UNNESTED, as_columns(rows, _ROW_COLUMNS))
        made = {pending_id: transfer_id for transfer_id, pending_id in inserted}
    else:
        made = {pending_id: transfer_id for transfer_id, pending_id in conn.execute(_INSERT_RESOLUTIONS_SQLITE, rows)}
    for pending, _ in resolutions:
        if pending.id not in made:
            raise PendingAlreadyResolved(f"pending transfer {pending.id} is already resolved")
    metrics.transfers_made(session, rows)
    _apply(session, deltas, infos)
    return [made[pending.id] for pending, _ in resolutions]


def _check_live(pending: _Pending) -> None:
    if pending.timeout_at is not None and pending.timeout_at <= utcnow():
        raise PendingExpired(f"pending transfer {pending.id} timed out")


def post_pending(
    session: Session, pending_id: int, caused_by: str, amount: int | None = None
) -> int:
    """Post a reservation, wholly or in part (the rest is released)."""
    (pending,) = _load_pendings(session, [pending_id])
    amount = pending.amount if amount is None else amount
    if not 0 < amount <= pending.amount:
        raise InvalidTransfer(f"post amount must be 1..{pending.amount}")
    _check_live(pending)
    return _resolve(session, [(pending, amount)], POST_PENDING, caused_by)[0]


def post_pending_many(session: Session, pending_ids: Sequence[int], caused_by: str) -> list[int]:
    """Post several reservations in full, linked: all or none (one transaction, balance locks
    in ascending account order, resolutions in ascending pending id order, so two resolvers
    of the same set cannot deadlock). Every one is checked before anything is written, so
    one that timed out refuses them all and leaves the transaction clean. The resolving
    transfers' ids, in ascending order of `pending_ids`."""
    pendings = _load_pendings(session, pending_ids)
    for pending in pendings:
        _check_live(pending)
    return _resolve(session, [(p, p.amount) for p in pendings], POST_PENDING, caused_by)


def void_pending(session: Session, pending_id: int, caused_by: str) -> int:
    """Release a reservation. Allowed after its timeout too: that is how it expires."""
    return void_pending_many(session, [pending_id], caused_by)[0]


def void_pending_many(session: Session, pending_ids: Sequence[int], caused_by: str) -> list[int]:
    """Release several reservations, linked (in the same orders as `post_pending_many`)."""
    pendings = _load_pendings(session, pending_ids)
    return _resolve(session, [(p, p.amount) for p in pendings], VOID_PENDING, caused_by)


def available_locked(session: Session, account_ids: Sequence[int]) -> dict[int, int]:
    """What each member account can give up now (posted, less reservations, never below
    zero), its row locked (in id order) so that a transfer taking at most that cannot
    overdraw it. For taking points back (a return's reversal, a bonus clawed back)."""
    rows = session.execute(
        select(Account.id, Account.credits_posted - Account.debits_posted - Account.debits_pending)
        .where(Account.id.in_(list(account_ids))).order_by(Account.id).with_for_update()
    ).all()
    return {account_id: max(held, 0) for account_id, held in rows}


def balance(session: Session, account_id: int) -> Balance:
    """The balance of any account: cached, or folded from transfers for system accounts."""
    (info,) = account_info(session, [account_id]).values()
    if info.cached:
        row = session.execute(
            select(
                Account.debits_pending,
                Account.debits_posted,
                Account.credits_pending,
                Account.credits_posted,
            ).where(Account.id == account_id)
        ).one()
        return Balance(*row)
    return fold(session, [account_id])[account_id]


def fold(session: Session, account_ids: Sequence[int] | None = None) -> dict[int, Balance]:
    """Balances computed from transfers alone (the truth that cached balances must equal).

    posted = sum of posted and post_pending transfers; pending = sum of pending transfers
    that no post/void has resolved.
    """
    resolver = Transfer.__table__.alias("resolver")
    unresolved = ~select(resolver.c.id).where(resolver.c.pending_id == Transfer.id).exists()
    posted = Transfer.phase.in_((POSTED, POST_PENDING))
    pending = (Transfer.phase == PENDING) & unresolved
    sides = []
    for side, account_col in (("debit", Transfer.debit_account_id), ("credit", Transfer.credit_account_id)):
        q = select(
            account_col.label("account_id"),
            func.sum(_when(pending, side == "debit")).label("dp"),
            func.sum(_when(posted, side == "debit")).label("dpo"),
            func.sum(_when(pending, side == "credit")).label("cp"),
            func.sum(_when(posted, side == "credit")).label("cpo"),
        ).group_by(account_col)
        if account_ids is not None:
            q = q.where(account_col.in_(account_ids))
        sides.append(q)
    both = union_all(*sides).subquery()
    rows = session.execute(
        select(
            both.c.account_id,
            func.sum(both.c.dp),
            func.sum(both.c.dpo),
            func.sum(both.c.cp),
            func.sum(both.c.cpo),
        ).group_by(both.c.account_id)
    )
    result = {r[0]: Balance(*(int(v or 0) for v in r[1:])) for r in rows}
    for account_id in account_ids or ():
        result.setdefault(account_id, Balance(0, 0, 0, 0))
    return result


def _when(condition, applies: bool):
    if not applies:
        return literal(0)
    return case((condition, Transfer.amount), else_=0)
