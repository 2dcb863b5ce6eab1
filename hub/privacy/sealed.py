"""`Sealed`: a column whose values are encrypted in the database (hub.privacy.keyring) and
plain in Python. The purpose (its table and column) is bound into every value.

A sealed column cannot be compared in SQL (a value seals differently every time, so `==`
would silently match nothing): look it up by its blind index (hub.privacy.blind) instead.
"""
from __future__ import annotations

from sqlalchemy import Text, type_coerce
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from hub.privacy import keyring

_ALLOWED = {operators.is_, operators.is_not}


class Sealed(TypeDecorator):
    impl = Text
    cache_ok = True

    class Comparator(TypeDecorator.Comparator):
        def operate(self, op, *other, **kwargs):
            if op not in _ALLOWED:
                raise TypeError("a sealed column cannot be compared in SQL: use its blind index")
            return super().operate(op, *other, **kwargs)

    comparator_factory = Comparator

    def __init__(self, purpose: str):
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value, dialect):
        return None if value is None else keyring.current().seal(self.purpose, value.encode())

    def process_result_value(self, value, dialect):
        return self.open(value)

    def open(self, value: str | None) -> str | None:
        """A value of this column read `as_stored`, opened."""
        return None if value is None else keyring.current().unseal(self.purpose, value).decode()


def as_stored(column):
    """A sealed column selected without opening it: for statements executed by hub.db.run,
    which processes no results on PostgreSQL (open the value with `column.type.open`)."""
    return type_coerce(column, Text)
