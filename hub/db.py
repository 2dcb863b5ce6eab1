"""Engine, sessions and the unit of work.

Write transactions on SQLite start with BEGIN IMMEDIATE (SQLite ignores SELECT ... FOR UPDATE,
so taking the write lock up front is how a check-then-write stays atomic there). On PostgreSQL
the ledger relies on row locks from conditional UPDATEs, taken in account-id order.
Serialization failures and deadlocks are retried by `Database.write`.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from decimal import Decimal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
    """Serialization failures, deadlocks, a busy SQLite, and unique violations.

    Services check for an existing row before inserting one; a unique violation means a
    concurrent transaction inserted it first, and on retry the check finds it.
    """
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


# From how many values `one_of` binds one array on PostgreSQL (psycopg caches the parsing of
# statements with at most 50 parameters).
MANY_VALUES = 50


def one_of(column, name: str, as_array: bool):
    """`column IN (:name...)`, or with `as_array` (PostgreSQL only) `column = ANY(:name)`.

    One array parameter instead of one per value: psycopg would otherwise parse a statement
    with a thousand parameters in Python, uncached, for every batch. Not for a few values:
    PostgreSQL re-plans `= ANY(array)` on every execution, but reuses the plan of `IN`.
    """
    if as_array:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


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
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


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
