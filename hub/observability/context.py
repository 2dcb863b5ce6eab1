"""The request id: one per API request, taken from a valid incoming X-Request-Id or made here,
and carried (by the outbox, hub/notify/outbox.py) into the tasks the request caused and onto
their outgoing HTTP calls. It lives in a context variable: every log record made while it is
bound carries it (logs.py), whichever thread or task made the record."""
from __future__ import annotations

import contextlib
import re
import secrets
from contextvars import ContextVar

HEADER = "X-Request-Id"
# Short and plain, so that a client's id is safe in a log line, a header and a label-free
# metric alike: letters, digits and . _ : - only, at most 64 characters.
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestState:
    """What the API knows of the request being served: its id, and (once routed) the name of
    its operation for the metrics (middleware.py)."""

    __slots__ = ("id", "operation")

    def __init__(self, request_id: str | None):
        self.id = request_id
        self.operation: str | None = None


_CURRENT: ContextVar[RequestState | None] = ContextVar("hub_request", default=None)


def accept(value: str | bytes | None) -> str:
    """The client's id if it is a valid one, else a new one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _VALID.fullmatch(value):
        return value
    return new()


def new() -> str:
    return secrets.token_hex(16)


def valid(value) -> bool:
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def current() -> str | None:
    state = _CURRENT.get()
    return state.id if state is not None else None


def name_operation(name: str) -> None:
    """Name the operation being served (for routes the middleware cannot see routed)."""
    state = _CURRENT.get()
    if state is not None and state.operation is None:
        state.operation = name


def begin(request_id: str | None):
    """Bind a new request state; returns (state, token for `end`)."""
    state = RequestState(request_id)
    return state, _CURRENT.set(state)


def end(token) -> None:
    _CURRENT.reset(token)


@contextlib.contextmanager
def bound(request_id: str | None):
    """Run a block under `request_id` (a task's item, its provider call): its log records and
    the outbox messages it writes carry the id. An invalid or empty id binds none."""
    _, token = begin(request_id if valid(request_id) else None)
    try:
        yield
    finally:
        end(token)
