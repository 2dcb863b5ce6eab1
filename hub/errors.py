"""Domain errors. Each has a stable problem type (slug) and a class of failure; the API layer
turns them into RFC 9457 problem+json. No HTTP or Flask here: `status` is just the class."""
from __future__ import annotations


class DomainError(Exception):
    status = 422
    slug = "unprocessable"
    title = "Request cannot be processed"

    def __init__(self, detail: str, *, slug: str | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        if slug:
            self.slug = slug
        self.extra = extra


class BadRequest(DomainError):
    """Input that breaks the API's schema (where the framework did not check it)."""

    status = 400
    slug = "invalid-request"
    title = "Invalid request"


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Invalid(DomainError):
    status = 422
    slug = "invalid-request"
    title = "Invalid request"


class Gone(DomainError):
    status = 410
    slug = "gone"
    title = "Gone"


class Forbidden(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"
