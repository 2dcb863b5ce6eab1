"""RFC 9457 problem+json for every error, with a stable `type` per kind of error."""
from __future__ import annotations

import logging

from connexion.lifecycle import ConnexionResponse
from connexion.problem import problem as connexion_problem
from flask import Response, json

from hub.api import runtime
from hub.errors import DomainError
from hub.identity.ratelimit import Limited
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


def handler_problem(exc: Exception) -> tuple[int, dict]:
    """(status, problem) for an exception raised by a handler. Flask's error handlers below
    and the lean path (hub/api/lean.py) both answer with it, so the two cannot drift."""
    if isinstance(exc, DomainError):
        return exc.status, body(exc.status, exc.slug, exc.title, exc.detail, **exc.extra)
    if isinstance(exc, InsufficientFunds):
        return 409, body(409, "insufficient-points", "Insufficient points", "not enough points available")
    if isinstance(exc, LedgerError):
        return 409, body(409, "ledger-conflict", "Ledger conflict", str(exc))
    if isinstance(exc, UnicodeEncodeError) and exc.reason == "surrogates not allowed":
        # JSON lets a string hold an unpaired surrogate ("\ud800"); Python parses it, but no
        # database can store it, and writing it failed as a 500. Nothing else in the hub makes
        # such strings, so one reaching the database came from the request: a 400, not the
        # hub's fault.
        return 400, body(
            400, "invalid-request", "Invalid request", "the request holds an unpaired UTF-16 surrogate"
        )
    log.exception("unhandled error", exc_info=exc)
    return 500, body(500, "internal-error", "Internal server error", "the hub failed; it has been logged")


def _flask_problem(problem: tuple[int, dict]) -> Response:
    status, content = problem
    return Response(json.dumps(content), status=status, mimetype=MEDIA_TYPE)


def rate_limited(exc: Limited) -> Response:
    """Too many requests to a rate-limited API or OAuth endpoint (hub/identity/ratelimit.py)."""
    response = flask_response(429, "rate-limited", "Too many requests",
                              f"too many requests ({exc.rule.name}); retry after {exc.retry_after} s")
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def domain_error(exc: DomainError) -> Response:
    return _flask_problem(handler_problem(exc))


def ledger_error(exc: LedgerError) -> Response:
    return _flask_problem(handler_problem(exc))


def unencodable_text(exc: UnicodeEncodeError) -> Response:
    return _flask_problem(handler_problem(exc))


def unexpected(exc: Exception) -> Response:
    return _flask_problem(handler_problem(exc))


def framework_problem(_request, exc) -> ConnexionResponse:
    """connexion's own problems (validation, auth, routing) with our stable types."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", 500)
    slug, title = _FRAMEWORK_SLUGS.get(status, ("http-error", "HTTP error"))
    detail = getattr(exc, "detail", None) or title
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status >= 500:
        log.error("framework error %r", exc, exc_info=exc)
    return connexion_problem(status, title, detail, type=type_uri(slug), headers=headers)


def _invalid_request(detail: str) -> ConnexionResponse:
    return connexion_problem(400, "Invalid request", detail, type=type_uri("invalid-request"))


def undecodable_request(_request, exc: UnicodeDecodeError) -> ConnexionResponse:
    """Bytes that are not UTF-8 where text is expected (connexion decodes a JSON body before
    parsing it and lets this escape): malformed input, so a 400 like malformed JSON."""
    log.info("undecodable request: %r", exc)
    return _invalid_request("the request is not valid UTF-8 text")


def too_deep_request(_request, exc: RecursionError) -> ConnexionResponse:
    """A JSON body nested too deeply to parse or validate (e.g. 100,000 `[`): malformed input.
    Only request parsing and validation run in the middleware, so this is the client's."""
    log.info("request nested too deeply: %r", exc)
    return _invalid_request("the request body is nested too deeply")


def framework_unexpected(_request, exc: Exception) -> ConnexionResponse:
    """Anything else escaping connexion's middleware: a 500 with our type, like `unexpected`."""
    log.error("unhandled error in the API middleware", exc_info=exc)
    return connexion_problem(
        500,
        "Internal server error",
        "the hub failed; it has been logged",
        type=type_uri("internal-error"),
    )
