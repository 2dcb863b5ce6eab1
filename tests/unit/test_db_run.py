"""hub.db.run: a statement straight to the driver, with the answers SQLAlchemy would give."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import String, any_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.db import array_of, prefetch, prefetched, run, side_by_side, utcnow, values_shape
from hub.programs.models import Member

_members = Member.__table__
_ADD = insert(_members).returning(_members.c.id)
_GET = select(_members.c.id, _members.c.created_at).where(_members.c.id == bindparam("mid"))
_TOUCH = update(_members).where(_members.c.id == bindparam("mid")).values(created_at=bindparam("at"))


@pytest.fixture
def member(db):
    made = uuid.uuid4()
    yield made
    db.write(lambda s: s.execute(delete(Member).where(Member.id == made)))


def test_rows_and_counts_are_those_of_sqlalchemy(db, member):
    with db.engine.connect() as conn, conn.begin():
        assert run(conn, _ADD, {"id": member, "created_at": utcnow()}) == ([(member,)], 1)
        assert [row[0] for row in run(conn, _GET, {"mid": member})[0]] == [member]
        assert run(conn, _GET, {"mid": uuid.uuid4()})[0] == []  # a result with columns, but no row
        assert run(conn, _TOUCH, {"mid": member, "at": utcnow()}) == ([], 1)  # no result columns


def test_a_connection_keeps_one_cursor_across_statements_and_transactions(db, member):
    """On PostgreSQL `run` executes on one cursor per connection. Errors still come as
    SQLAlchemy's; the cursor it closes on one, or a lost connection's, is replaced."""
    pg = db.dialect == "postgresql"

    def kept(conn):
        cursor = conn.connection.info.get("hub.cursor")
        assert (cursor is not None and not cursor.closed) == pg
        return cursor

    with db.engine.connect() as conn:
        with conn.begin():
            run(conn, _ADD, {"id": member, "created_at": utcnow()})
            first = kept(conn)
        with conn.begin():
            assert len(run(conn, _GET, {"mid": member})[0]) == 1
            assert kept(conn) is first
        with pytest.raises(IntegrityError), conn.begin():
            run(conn, _ADD, {"id": member, "created_at": utcnow()})
        with conn.begin():
            assert len(run(conn, _GET, {"mid": member})[0]) == 1
            after_error = kept(conn)
        conn.invalidate()  # a lost connection: its cursor goes with it
        with conn.begin():
            assert len(run(conn, _GET, {"mid": member})[0]) == 1
            assert kept(conn) is not after_error or not pg


def test_side_by_side_reads_two_statements_in_one_row(db, member):
    """Each statement's row, or NULLs for one that has none; one statement, built once."""
    by_id = select(_members.c.id).where(_members.c.id == bindparam("other"))
    both = side_by_side(_GET, by_id)
    assert side_by_side(_GET, by_id) is both
    with db.engine.connect() as conn, conn.begin():
        run(conn, _ADD, {"id": member, "created_at": utcnow()})
        ((found, at, again),), _ = run(conn, both, {"mid": member, "other": member})
        assert found == again == member and at is not None
        assert [tuple(r) for r in run(conn, both, {"mid": uuid.uuid4(), "other": member})[0]] == [(None, None, member)]
        assert [tuple(r) for r in run(conn, both, {"mid": member, "other": uuid.uuid4()})[0]][0][2] is None
        assert [tuple(r) for r in run(conn, both, {"mid": uuid.uuid4(), "other": uuid.uuid4()})[0]] == [(None,) * 3]


def test_side_by_side_of_side_by_side_reads_is_flat(db, member):
    by_id = select(_members.c.id).where(_members.c.id == bindparam("other"))
    pair = side_by_side(_GET, by_id)
    flat = side_by_side(by_id, pair)
    assert flat is side_by_side(by_id, _GET, by_id)
    with db.engine.connect() as conn, conn.begin():
        run(conn, _ADD, {"id": member, "created_at": utcnow()})
        ((first, found, _, again),), _ = run(conn, flat, {"mid": member, "other": member})
        assert first == found == again == member


def test_a_prefetched_row_is_taken_once_and_only_for_its_statement_and_parameters(db):
    by_id = select(_members.c.id).where(_members.c.id == bindparam("other"))
    with db.read() as session:
        prefetch(session, _GET, {"mid": 1}, ("row",))
        assert prefetched(session, by_id, {"mid": 1}) is None
        assert prefetched(session, _GET, {"mid": 2}) is None
        assert prefetched(session, _GET, {"mid": 1}) == ("row",)
        assert prefetched(session, _GET, {"mid": 1}) is None


def test_a_bound_array_of_strings_keeps_their_length(db):
    """PostgreSQL cuts a value cast to varchar(n) short: bound as varchar(2)[], "abc" would
    match "ab". The arrays are bound without the length, so it matches nothing."""
    assert array_of(String(2)).item_type.length is None
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            match = select(bindparam("x", type_=String)).where(
                bindparam("x", type_=String) == any_(bindparam("v", type_=array_of(String(2)))))
            assert run(conn, match, {"x": "ab", "v": ["abc", "zz"]})[0] == []
            assert run(conn, match, {"x": "ab", "v": ["ab", "zz"]})[0] == [("ab",)]
        else:  # no arrays: several values are an IN list
            assert values_shape(conn, ["abc", "zz"], by_key=True) == "in"
