"""Engine, sessions and the unit of work.

Write transactions on SQLite start with BEGIN IMMEDIATE (SQLite ignores SELECT ... FOR UPDATE,
so taking the write lock up front is how a check-then-write stays atomic there). On PostgreSQL
the ledger relies on row locks from conditional UPDATEs, taken in account-id order.
Serialization failures and deadlocks are retried by `Database.write`.
"""
from __future__ import annotations

import functools
import random
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import (
    JSON,
    VARCHAR,
    BigInteger,
    DateTime,
    Integer,
    Select,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.dml import Insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

T = TypeVar("T")

# SQLSTATEs that mean "try the whole transaction again".
_RETRYABLE_PG = {"40001", "40P01", "23505"}
MAX_ATTEMPTS = 5


class Base(DeclarativeBase):
    pass


def make_engine(url: str, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
    _ping_when_idle(engine)
    return engine


# pool_pre_ping costs a round trip on every checkout, i.e. on every request. Ping only a
# connection that sat in the pool for a while: one in steady use has just proven itself, and
# on a disconnect error SQLAlchemy invalidates the whole pool anyway.
PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        record.info["hub_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        idle_since = record.info.get("hub_idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("stale pooled connection") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("hub_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_retryable(exc: BaseException) -> bool:
    """Serialization failures, deadlocks, a busy SQLite, unique violations, and errors that
    say they are retryable.

    Services check for an existing row before inserting one; a unique violation means a
    concurrent transaction inserted it first, and on retry the check finds it.
    """
    if getattr(exc, "retryable", False):  # a refusal caused by a concurrent commit (ledger.AccountClosed)
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in _RETRYABLE_PG:
            return True
        message = str(exc.orig)
        if isinstance(exc, OperationalError) and "database is locked" in message:
            return True
        if isinstance(exc, IntegrityError) and "UNIQUE constraint failed" in message:
            return True
    return False


class Database:
    def __init__(self, url: str, pool_size: int = 10):
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.dialect = self.engine.dialect.name
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(hub_write=True), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction; commit, or roll back and retry if it is retryable."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            session = self._writer()
            try:
                result = work(session)
                session.commit()
                return result
            except Exception as exc:
                session.rollback()
                if attempt == MAX_ATTEMPTS or not is_retryable(exc):
                    raise
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
            finally:
                session.close()
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


class Gated:
    """A Database whose transactions each take one of `slots` first, for a worker's conversion
    saga: dozens of threads, each holding a connection only for a short outcome transaction.
    Bounding how many run at once bounds the connections they need, so the pool can keep them
    all open: past the pool's size, SQLAlchemy opens an overflow connection for a checkout and
    closes it on return, a new PostgreSQL backend every few transactions. A thread waiting for
    a slot holds no connection. Never nest: a transaction's work must not start another
    through the same Gated (the key ring's own reads use the engine directly)."""

    def __init__(self, db: Database, slots: threading.BoundedSemaphore):
        self.db, self.slots = db, slots

    def write(self, work: Callable[[Session], T]) -> T:
        with self.slots:
            return self.db.write(work)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.slots, self.db.read() as session:
            yield session


# From how many values `one_of` binds one array on PostgreSQL (psycopg caches the parsing of
# statements with at most 50 parameters), unless the match is by key.
MANY_VALUES = 50


def values_shape(conn: Connection, values, *, by_key: bool = False) -> str:
    """How `one_of` should bind these values: "one"; on PostgreSQL "array" for many values,
    or for any number when the match is `by_key` (see `one_of`); else "in"."""
    if len(values) == 1:
        return "one"
    if conn.dialect.name != "postgresql":
        return "in"
    return "array" if by_key or len(values) > MANY_VALUES else "in"


def one_of(column, name: str, shape: str):
    """`column` matches one of the values bound as `name`, shaped by `values_shape`:

    - "one": `column = :name`, the parameter being the value itself (the hot case: one
      purchase, one order).
    - "in": `column IN (:name...)`, the parameter a list. SQLAlchemy renders it anew on every
      execution and psycopg parses the result in Python (uncached past 50 parameters): about
      0.13 ms more of the client's CPU than an array for a dozen values.
    - "array" (PostgreSQL): `column = ANY(:name)`, one array parameter: one statement
      whatever the number of values, which `run` sends prepared. For a few values only
      `by_key`: when the column has an index of its own that the plan looks the values up
      in (a primary key; the outbox's key; a transfer's reference). Elsewhere PostgreSQL's
      generic plan for a prepared statement may take a wider index and filter each of its
      rows by the array (hub/programs/earning.py, `_EXISTING_BY_ARRAY`).
    """
    if shape == "one":
        return column == bindparam(name)
    if shape == "array":
        return column == any_(bindparam(name, type_=array_of(column.type)))
    return column.in_(bindparam(name, expanding=True))


def array_of(item_type) -> ARRAY:
    """An array of `item_type` to bind a list as, without its length: PostgreSQL cuts a value
    cast to varchar(n) short, so a longer one would match a row it is not (or be stored cut),
    where it should match none (or be refused)."""
    if type(item_type) in (String, VARCHAR) and item_type.length is not None:
        item_type = type(item_type)()
    return ARRAY(item_type)


def unnest_rows(table, columns: tuple[str, ...], **types):
    """Rows given as one array per column (PostgreSQL; bound by `as_columns`), as a derived
    table `v` of `columns`, typed as `table`'s unless `types` says otherwise: an INSERT ...
    SELECT from it, or an UPDATE ... FROM it, is one statement whatever the number of rows,
    which `run` sends prepared. A multi-row VALUES is rendered, and parsed by psycopg and by
    PostgreSQL, anew for each number of rows; an executemany runs a statement per row."""
    arrays = func.unnest(*[bindparam(c, type_=array_of(types.get(c, table.c[c].type))) for c in columns])
    return arrays.table_valued(*columns).render_derived(name="v")


def as_columns(rows: Sequence[dict], columns: Sequence[str]) -> dict[str, list]:
    """The parameters of `unnest_rows`: each column's values, in the rows' order."""
    return {c: [row[c] for row in rows] for c in columns}


def bind_values(shape: str, values: list):
    """The parameter for `one_of` of this shape."""
    return values[0] if shape == "one" else values


_compiled_sql: dict[tuple, str] = {}


def executemany(conn: Connection, statement, rows: list[dict]) -> int:
    """Execute `statement` once for each row, in order; the number of rows affected.

    On PostgreSQL the rows go straight to psycopg's executemany (one parse, pipelined):
    SQLAlchemy's processing of each row's parameters was most of the cost of a 1000-item
    batch. So the values must need no SQLAlchemy type processing: ints, strs, UUIDs, None,
    timezone-aware datetimes, psycopg Jsonb. Elsewhere SQLAlchemy executes it.
    """
    if conn.dialect.name != "postgresql":
        return conn.execute(statement, rows).rowcount
    key = (statement, tuple(rows[0]))
    sql = _compiled_sql.get(key)
    if sql is None:
        sql = str(statement.compile(dialect=conn.dialect, column_keys=list(rows[0])))
        _compiled_sql[key] = sql
    for row in rows:
        for value in row.values():
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError("naive datetime given to executemany")
    with _driver_cursor(conn, sql, rows) as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def insert_many(conn: Connection, table, rows: list[dict]) -> None:
    """Insert `rows` (dicts with the same keys) into `table`.

    On PostgreSQL with COPY: for a 1000-purchase batch it costs a fraction of a pipelined
    INSERT per row, in psycopg (rows formatted in C) and in PostgreSQL (no statement per
    row). The values must need no SQLAlchemy type processing, as for `executemany`, except
    JSON documents, which it binds as SQLAlchemy's JSONB would.
    Elsewhere SQLAlchemy inserts them.
    """
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    names = list(rows[0])
    for row in rows:
        for value in row.values():
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError("naive datetime given to insert_many")
    # JSON columns go as psycopg's Jsonb: what SQLAlchemy's JSONB type would bind (None
    # too, stored as JSON null).
    documents = {n for n in names if isinstance(table.c[n].type.dialect_impl(conn.dialect), JSONB)}
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    with _driver_cursor(conn, sql, None) as cursor:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([Jsonb(row[n]) if n in documents else row[n] for n in names])


@contextmanager
def _driver_cursor(conn: Connection, sql: str, params, *, kept: bool = False) -> Iterator:
    """A psycopg cursor on `conn`'s connection (in its transaction), whose errors are raised
    as SQLAlchemy raises them (IntegrityError and so on, a lost connection invalidated), so
    that `is_retryable` and the callers see the same exceptions as through SQLAlchemy.

    `kept`: the connection's own cursor for `run`, made once and kept with the connection
    (in its pool record's `info`, which SQLAlchemy clears when the connection is closed or
    invalidated): a cursor per statement cost about as much as psycopg's execution. A
    connection serves one thread at a time, so its cursor does too."""
    info = conn.connection.info
    cursor = info.get(_KEPT_CURSOR) if kept else None
    if cursor is None or cursor.closed:
        cursor = conn.connection.driver_connection.cursor()
        if kept:
            info[_KEPT_CURSOR] = cursor
    try:
        yield cursor
    except conn.dialect.loaded_dbapi.Error as exc:
        conn._handle_dbapi_exception(exc, sql, params, cursor, None)  # always raises
    finally:
        if not kept:
            cursor.close()


_KEPT_CURSOR = "hub.cursor"


class _Raw:
    """A statement compiled once for psycopg: its SQL (with SQLAlchemy's bind casts), the bind
    processors of its parameters, and the processed values of its own literals."""

    __slots__ = ("sql", "query", "processors", "constants", "ok")

    def __init__(self, statement, dialect, keys: list[str]):
        # A plain INSERT takes its columns from the parameters' names, as conn.execute()
        # would. Any other statement must not: given column keys, an UPDATE (also one inside
        # a CTE) would SET every column that a parameter happens to be named after.
        plain_insert = isinstance(statement, Insert) and statement.select is None and not statement._values
        compiled = statement.compile(dialect=dialect, column_keys=keys if plain_insert else None)
        # Expanding IN lists are rendered per execution: those stay with SQLAlchemy.
        self.ok = not compiled.post_compile_params and not compiled.literal_execute_params
        self.sql = str(compiled)
        # Given bytes, psycopg skips encoding the text (and hashing it anew) on every execution.
        self.query = self.sql.encode("utf-8") if self.sql.isascii() else self.sql
        processors = compiled._bind_processors
        self.processors = [(k, processors[k]) for k in keys if k in processors]
        self.constants = {
            k: processors[k](v) if k in processors else v
            for k, v in compiled.construct_params(dict.fromkeys(keys), _check=False).items()
            if k not in keys
        }


_raw: dict[tuple, _Raw] = {}


def run(conn: Connection, statement, params: dict) -> tuple[list[tuple], int]:
    """Execute `statement` once: (rows, rowcount).

    On PostgreSQL it goes straight to psycopg, as SQLAlchemy would send it (the same SQL, the
    values through the same bind processors) but compiled once per statement and set of
    parameter names: SQLAlchemy's per-execution machinery (cache key, execution context,
    result set-up) cost more CPU than psycopg's execution of the prepared statement, four
    statements per purchase. Rows come back as psycopg reads them: tuples, with no result
    processing (a FixedDecimal column is its string). Elsewhere, and for statements with
    expanding IN parameters, SQLAlchemy executes it.
    """
    if conn.dialect.name == "postgresql":
        key = (statement, tuple(params))
        raw = _raw.get(key)
        if raw is None:
            raw = _raw[key] = _Raw(statement, conn.dialect, list(params))
        if raw.ok:
            values = {**raw.constants, **params}
            for name, process in raw.processors:
                values[name] = process(values[name])
            with _driver_cursor(conn, raw.sql, values, kept=True) as cursor:
                cursor.execute(raw.query, values)
                # A result with columns has rows to fetch (`description` would build a Column
                # object per column on every call to say the same). `run` is never used in
                # pipeline mode, where no result would be there yet.
                return (cursor.fetchall() if cursor.pgresult.nfields else []), cursor.rowcount
    result = conn.execute(statement, params)
    return (result.all() if result.returns_rows else []), result.rowcount


def side_by_side(*reads: Select) -> Select:
    """Independent reads in one round trip: one row, each read's columns in turn, each its
    statement's row or NULLs when it has none (each is outer-joined to one row). Each must
    have at most one row, and its first column be NOT NULL: NULL there says "no row". Their
    parameters share one namespace. A read that is itself side by side is taken apart (its
    reads joined directly, not nested). Cached: `run` compiles each statement once."""
    return _side_by_side(tuple(part for read in reads for part in _sides.get(read, (read,))))


_sides: dict[Select, tuple[Select, ...]] = {}


@functools.cache
def _side_by_side(reads: tuple[Select, ...]) -> Select:
    joined = select(literal_column("1").label("one")).subquery("one")
    parts = []
    for n, read in enumerate(reads):
        part = read.subquery(f"r{n}")
        joined = joined.outerjoin(part, true())
        parts.append(part)
    statement = select(*(c for part in parts for c in part.c)).select_from(joined)
    _sides[statement] = reads
    return statement


# A transaction's reads made ahead, with another statement's round trip (`prefetch`).
_PREFETCHED = "hub.prefetched"


def prefetch(session: Session, statement, params: dict, row: tuple) -> None:
    """Keep `row` as what `statement` with `params` reads in this transaction: read ahead,
    with another statement (`side_by_side`), by code that knew the read before the work
    that needs it ran (hub.idempotency with the key's lock). Taken by `prefetched`."""
    session.info.setdefault(_PREFETCHED, []).append((statement, params, row))


def prefetched(session: Session, statement, params: dict) -> tuple | None:
    """The row kept by `prefetch` for this statement and these parameters, taken (once);
    None if there is none (the caller reads it then)."""
    kept = session.info.get(_PREFETCHED) or []
    for i, (read, read_params, row) in enumerate(kept):
        if read is statement and read_params == params:
            del kept[i]
            return row
    return None


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC, on SQLite (which keeps no zone) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


# Big integer keys that still autoincrement on SQLite (which only does so for INTEGER).
BigId = BigInteger().with_variant(Integer, "sqlite")
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def insert_once(table, index_elements, *returning) -> dict:
    """INSERT ... ON CONFLICT (index_elements) DO NOTHING RETURNING ..., per dialect name
    (SQLAlchemy spells ON CONFLICT per dialect; the hub runs on these two). No row back: the
    row was there already."""
    return {
        name: dialect.insert(table).on_conflict_do_nothing(index_elements=list(index_elements)).returning(*returning)
        for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
    }


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class FixedDecimal(TypeDecorator):
    """An exact decimal kept as its canonical string, so SQLite never turns it into a float."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("FixedDecimal columns take Decimal values")
        return format(value.normalize(), "f")

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)
