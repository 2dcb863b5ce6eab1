"""What every handler needs: the caller, the database, and idempotent writes.

The idempotent write (`create`) takes the request's method, path and Idempotency-Key as a
plain `Call` and answers with a plain `Reply`, so one handler body serves both ways in: Flask
(through connexion, `created` below) and the lean ASGI path of the hot operations
(hub/api/lean.py), which runs without Flask.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, current_app, json, request
from sqlalchemy import Select
from sqlalchemy.orm import Session

from hub import idempotency
from hub.actor import Actor
from hub.api import runtime


def db():
    return runtime.current().db


@dataclass(frozen=True)
class Call:
    """What a creating handler needs of the HTTP request, besides its body and token."""

    method: str
    full_path: str  # path, "?", query string: what Flask's request.full_path holds
    idempotency_key: str | None


@dataclass(frozen=True)
class Reply:
    """A JSON answer, before any framework turns it into a response."""

    status: int
    body: dict
    headers: dict | None = None


def create(
    call: Call,
    actor: Actor,
    body: dict,
    work: Callable[[Session], tuple[int, dict]],
    redact: tuple[str, ...] = (),
    member_fields: tuple[str, ...] = idempotency.MEMBER_FIELDS,
    read: Callable[[], tuple[Select, dict] | None] | None = None,
) -> Reply:
    """Run a creating POST once per Idempotency-Key and answer with its (stored) outcome.
    `read` names work's first read, to make with the key's lock (idempotency.run)."""
    key = call.idempotency_key
    # The fingerprint serialises the whole body (1000 items for a batch): only worth it when
    # there is a key to bind it to.
    fingerprint = "" if key is None else idempotency.fingerprint(call.method, call.full_path, body)
    # Keys are the caller's own. Every member signed in on a brand comes with that brand's
    # client_id, so a member's keys are scoped to the member: otherwise one member's request
    # could replay another's stored answer (a body without the member in it, e.g. a transfer).
    owner = actor.client_id if actor.member_id is None else actor.ref
    outcome = idempotency.run(db(), owner, key, fingerprint, work, redact, member_fields, read)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return Reply(outcome.status, outcome.body, headers)


def flask_call() -> Call:
    return Call(request.method, request.full_path, request.headers.get("Idempotency-Key"))


def created(
    actor: Actor, body: dict, work: Callable[[Session], tuple[int, dict]], redact: tuple[str, ...] = (),
    member_fields: tuple[str, ...] = idempotency.MEMBER_FIELDS,
):
    """`create` for a Flask handler."""
    return flask_reply(create(flask_call(), actor, body, work, redact, member_fields))


def flask_reply(reply: Reply) -> Response:
    return ok(reply.body, reply.status, reply.headers)


def ok(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response. Explicit, because the spec also declares problem+json responses."""
    return current_app.response_class(
        json.dumps(body), status=status, headers=headers, mimetype="application/json"
    )
