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

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, TypeDecorator, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
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
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


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
