"""What every handler needs: the caller, the database, and idempotent writes."""
from __future__ import annotations

from collections.abc import Callable

from flask import Response, current_app, json, request
from sqlalchemy.orm import Session

from hub import idempotency
from hub.actor import Actor
from hub.api import runtime


def db():
    return runtime.current().db


def created(
    actor: Actor, body: dict, work: Callable[[Session], tuple[int, dict]], redact: tuple[str, ...] = ()
):
    """Run a creating POST once per Idempotency-Key and answer with its (stored) outcome."""
    key = request.headers.get("Idempotency-Key")
    # The fingerprint serialises the whole body (1000 items for a batch): only worth it when
    # there is a key to bind it to.
    fingerprint = "" if key is None else idempotency.fingerprint(request.method, request.full_path, body)
    outcome = idempotency.run(db(), actor.client_id, key, fingerprint, work, redact)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return ok(outcome.body, outcome.status, headers)


def ok(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response. Explicit, because the spec also declares problem+json responses."""
    return current_app.response_class(
        json.dumps(body), status=status, headers=headers, mimetype="application/json"
    )
