"""Security headers on every response the hub serves: pages, the API (connexion's path and the
lean path alike), the OAuth/OIDC endpoints, problems raised by connexion's middleware and
health checks. One ASGI wrapper around the whole app (HubApp.__call__), so no route, blueprint
or error path can miss them.

- Everything: nosniff, no Referer (account links carry one-time tokens), never framed
  (frame-ancestors and X-Frame-Options for old browsers), no powerful browser features, and HSTS
  when the issuer is https. Cache-Control: no-store unless the response chose its own (the
  public discovery document and keys do): pages, tokens and API answers are private.
- HTML pages: a strict Content-Security-Policy. The templates have no inline script or style,
  so none is allowed (no nonce needed). No form-action: Chrome applies it to the redirects
  after a form, and the consent and login forms end in a redirect to the brand's site.
- Swagger UI (/v1/ui/, connexion's page) has inline script and style of its own: it gets
  them, and nothing else, allowed.
- Anything else (JSON, problems): default-src 'none'.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_PREFIX = "/v1/ui"
HSTS = "max-age=31536000; includeSubDomains"

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
}


def headers_for(path: str, content_type: str, https: bool) -> dict[str, str]:
    """The security headers of one response (lower-case names)."""
    if path.startswith(DOCS_PREFIX):
        csp = DOCS_CSP
    elif content_type.startswith("text/html"):
        csp = PAGE_CSP
    else:
        csp = API_CSP
    found = {**COMMON, "content-security-policy": csp}
    if https:
        found["strict-transport-security"] = HSTS
    return found


class SecurityHeaders:
    """ASGI wrapper: sets the headers on each response's start message (replacing any the
    route set itself; Cache-Control is kept when the route chose one)."""

    def __init__(self, app: ASGIApp, *, https: bool):
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _merge(list(message.get("headers", [])), path, self.https)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _merge(raw: list[tuple[bytes, bytes]], path: str, https: bool) -> list[tuple[bytes, bytes]]:
    content_type = next((v.decode("latin-1") for k, v in raw if k.lower() == b"content-type"), "")
    wanted = headers_for(path, content_type, https)
    names = {name.encode() for name in wanted}
    kept = [(k, v) for k, v in raw if k.lower() not in names]
    kept += [(name.encode(), value.encode()) for name, value in wanted.items()]
    if not any(k.lower() == b"cache-control" for k, _ in kept):
        kept.append((b"cache-control", b"no-store"))
    return kept
