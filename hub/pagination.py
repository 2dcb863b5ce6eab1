"""Opaque cursors for keyset pagination: base64url of a small JSON value."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone

from sqlalchemy import and_, or_

from hub.errors import Invalid


def encode(value) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str | None):
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..."
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor") from exc


def text_position(value, max_length: int = 64) -> str:
    """A position a cursor holds as text (a code, a period, a uuid), checked: one we issued
    is a short string without NUL (which PostgreSQL refuses in a query)."""
    if not isinstance(value, str) or len(value) > max_length or "\x00" in value:
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor")
    return value


def by_text(session, q, column, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """A page of `q` in the order of `column`, a unique text column (a code), and the cursor
    of the next page (None on the last)."""
    after = decode(cursor)
    if after is not None:
        q = q.where(column > text_position(after))
    rows = list(session.execute(q.order_by(column).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(getattr(rows[-1], column.key))


# Ids are BIGINTs: a cursor beyond them is not one we issued (and would overflow the query).
MAX_ID = 2**63 - 1


def id_cursor(cursor: str | None) -> int | None:
    """The position of a page of rows keyed by a big integer id, or None for the first page."""
    before = decode(cursor)
    # bool is an int to Python, but never a position we issue.
    if before is None or (type(before) is int and 0 < before <= MAX_ID):
        return before
    raise Invalid("cursor is not one this API issued", slug="invalid-cursor")


def newest_first(session, q, at, row_id, cursor: str | None, limit: int, position) -> tuple[list, str | None]:
    """A page of the statement `q`, newest first by the columns (`at`, `row_id`): a creation
    time, and a unique id to order rows created at the same instant. `position(row)` is that
    row's (time, id); the cursor carries the last row's, so rows added since the first page
    do not shift the next one (no row shows twice)."""
    return _keyset(session, q, at, row_id, cursor, limit, position, newest=True)


def oldest_first(session, q, at, row_id, cursor: str | None, limit: int, position) -> tuple[list, str | None]:
    """As `newest_first`, oldest first (a queue: what waited longest comes first)."""
    return _keyset(session, q, at, row_id, cursor, limit, position, newest=False)


def _keyset(session, q, at, row_id, cursor, limit, position, *, newest: bool) -> tuple[list, str | None]:
    if newest:
        q = q.order_by(at.desc(), row_id.desc())
    else:
        q = q.order_by(at, row_id)
    q = q.limit(limit + 1)
    after = _position(cursor)
    if after is not None:
        when, last = after
        if newest:
            q = q.where(or_(at < when, and_(at == when, row_id < last)))
        else:
            q = q.where(or_(at > when, and_(at == when, row_id > last)))
    rows = list(session.execute(q))
    more = len(rows) > limit
    rows = rows[:limit]
    if not more:
        return rows, None
    when, last = position(rows[-1])
    return rows, encode([when.isoformat(), str(last)])


def _position(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a `newest_first` or `oldest_first` cursor carries. Anything else is
    refused here, not in the query: a naive time or a string that is no UUID failed there as
    a 500."""
    value = decode(cursor)
    if value is None:
        return None
    try:
        when, last = value
        when, last = datetime.fromisoformat(when), uuid.UUID(last)
        if when.tzinfo is None:
            raise ValueError("a naive time")
        return when.astimezone(timezone.utc), last  # out of range in UTC: OverflowError
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise Invalid("cursor is not one this API issued", slug="invalid-cursor") from exc
