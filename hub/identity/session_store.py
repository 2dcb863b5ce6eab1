"""Server-side browser sessions, one store per kind of login (no Flask here).

Members' login sessions (hub.identity.login, table login_sessions) and the ops console's
(hub.identity.ops_users, table ops_sessions) are kept alike. The browser's cookie is a random
256-bit secret of which only the SHA-256 is stored (a value that size needs no slow hash), so
a copy of the database lets nobody pose as the browser; every start makes a new one, so a
cookie planted before a login is worth nothing after it. A session is live until the first of:
its absolute expiry (`expires_at`), `idle` without a request (for a kind with an idle
timeout), its end (logout); and only while its owner passes `owner_live` (an ops user not
disabled). A request only reads the session; `last_seen_at` is written again once `seen_every`
has passed since.

Each kind has its own table (and cookie): a token is looked up only in its store's table, so
one kind's cookie means nothing to the other.
"""
from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from hub.db import utcnow
from hub.digest import sha256_hex  # what the table keeps of a cookie

L = TypeVar("L")  # what a store hands out for a live session (login.Login, ops_users.OpsLogin)


@dataclass(frozen=True, eq=False)  # eq=False: SQL expressions do not compare to a bool
class SessionStore(Generic[L]):
    """The sessions of one kind of login, handed out as `L` (made by `as_login` from the row
    and its owner's). `model` has the columns id, created_at, last_seen_at, expires_at and
    ended_at, plus `owner_key` and `token_column`. Every `now` defaults to the current time."""

    model: type[Any]  # the session table
    owner: type[Any]  # who logs in
    owner_key: InstrumentedAttribute  # the session's foreign key to `owner`
    token_column: InstrumentedAttribute  # where the cookie's token_hash is kept
    as_login: Callable[[Any, Any], L]  # (session row, owner row) -> what callers get
    seen_every: timedelta  # how stale last_seen_at may get before a request writes it again
    idle: timedelta | None = None  # the idle timeout (from last_seen_at); None: none
    owner_live: ColumnElement[bool] | None = None  # what the owner must be (e.g. not disabled)

    def _live(self, session: Session, condition: ColumnElement[bool], now: datetime) -> tuple[Any, Any] | None:
        model = self.model
        where = [condition, model.ended_at.is_(None), model.expires_at > now]
        if self.idle is not None:
            where.append(model.last_seen_at > now - self.idle)
        if self.owner_live is not None:
            where.append(self.owner_live)
        found = session.execute(
            select(model, self.owner).join(self.owner, self.owner.id == self.owner_key).where(*where)
        ).first()
        return None if found is None else (found[0], found[1])

    def load(self, session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> L | None:
        """The login of this session, or None if it is unknown, expired or ended."""
        found = self._live(session, self.model.id == session_id, now or utcnow())
        return None if found is None else self.as_login(*found)

    def from_cookie(self, session: Session, token: str, *, now: datetime | None = None) -> tuple[L, bool] | None:
        """The login the browser's cookie stands for, and whether its last_seen_at is due to be
        written (`seen`); None if there is none. Only reads, so a page view needs no write."""
        now = now or utcnow()
        found = self._live(session, self.token_column == sha256_hex(token), now)
        if found is None:
            return None
        row, owner = found
        return self.as_login(row, owner), now - row.last_seen_at >= self.seen_every

    def start(self, session: Session, owner: Any, *, lifetime: timedelta, renewing: uuid.UUID | None = None,
              now: datetime | None = None, **columns: Any) -> tuple[L, str]:
        """A new session of `owner` for `lifetime`, with the kind's own `columns` set: (login,
        cookie value). The cookie is always new. `renewing`: a session id; if that session is
        live and the owner's, it is restarted in place (its id stays); another owner's live
        session is refused (ValueError: the caller ends it first)."""
        now = now or utcnow()
        row = None
        if renewing is not None:
            found = self._live(session, self.model.id == renewing, now)
            if found is not None and getattr(found[0], self.owner_key.key) != owner.id:
                raise ValueError("another owner's live session: end it first")
            row = found[0] if found is not None else None
        if row is None:
            row = self.model(id=uuid.uuid4(), created_at=now, **{self.owner_key.key: owner.id})
            session.add(row)
        token = secrets.token_urlsafe(32)
        setattr(row, self.token_column.key, sha256_hex(token))
        row.last_seen_at = now
        row.expires_at = now + lifetime
        for name, value in columns.items():
            setattr(row, name, value)
        session.flush()
        return self.as_login(row, owner), token

    def seen(self, session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> None:
        """Record a request (what the idle timeout counts from)."""
        session.execute(update(self.model).where(self.model.id == session_id).values(last_seen_at=now or utcnow()))

    def end(self, session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> bool:
        """Mark the session ended (idempotent): whether this call ended it."""
        model = self.model
        return session.execute(
            update(model).where(model.id == session_id, model.ended_at.is_(None)).values(ended_at=now or utcnow())
        ).rowcount == 1

    def end_all(self, session: Session, owner_id: uuid.UUID, *, now: datetime | None = None) -> list[uuid.UUID]:
        """Mark every session of the owner ended: the ids of those that were not yet (expired
        ones included)."""
        model = self.model
        return list(session.scalars(
            update(model).where(self.owner_key == owner_id, model.ended_at.is_(None))
            .values(ended_at=now or utcnow()).returning(model.id)
        ))
