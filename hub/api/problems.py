"""RFC 9457 problem+json for every error, with a stable `type` per kind of error."""
from __future__ import annotations

import logging

from connexion.lifecycle import ConnexionResponse
from connexion.problem import problem as connexion_problem
from flask import Response, json

from hub.api import runtime
from hub.errors import DomainError
from hub.ledger import InsufficientFunds, LedgerError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

# Errors raised by connexion before a handler runs, by status.
_FRAMEWORK_SLUGS = {
    400: ("invalid-request", "Invalid request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("insufficient-scope", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    500: ("internal-error", "Internal server error"),
}


def type_uri(slug: str) -> str:
    return runtime.current().settings.problem_base + slug


def body(status: int, slug: str, title: str, detail: str, **extra) -> dict:
    return {"type": type_uri(slug), "title": title, "status": status, "detail": detail, **extra}


def flask_response(status: int, slug: str, title: str, detail: str, **extra) -> Response:
    return Response(
        json.dumps(body(status, slug, title, detail, **extra)), status=status, mimetype=MEDIA_TYPE
    )


def domain_error(exc: DomainError) -> Response:
    return flask_response(exc.status, exc.slug, exc.title, exc.detail, **exc.extra)


def ledger_error(exc: LedgerError) -> Response:
    if isinstance(exc, InsufficientFunds):
        return flask_response(422, "insufficient-points", "Insufficient points", "not enough points available")
    return flask_response(409, "ledger-conflict", "Ledger conflict", str(exc))


def unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return flask_response(500, "internal-error", "Internal server error", "the hub failed; it has been logged")


def framework_problem(_request, exc) -> ConnexionResponse:
    """connexion's own problems (validation, auth, routing) with our stable types."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", 500)
    slug, title = _FRAMEWORK_SLUGS.get(status, ("http-error", "HTTP error"))
    detail = getattr(exc, "detail", None) or title
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status >= 500:
        log.error("framework error %r", exc, exc_info=exc)
    return connexion_problem(status, title, detail, type=type_uri(slug), headers=headers)
