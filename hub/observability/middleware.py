"""The outermost ASGI layer of the API: a request id for every request (echoed in
X-Request-Id on every response: API, lean path, pages, OAuth, errors) and the request
metrics, by operation.

The operation is connexion's operationId without its "hub.api." prefix (the lean path names
its operations the same way), else the Flask route's rule for pages and OAuth
(hub/app.py names it), else "unmatched": never the raw path, whose ids would make a label
value per member."""
from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from hub.observability import context, metrics

_HEADER = context.HEADER.lower().encode()
_ROUTING = "connexion_routing"  # connexion's scope extension naming the routed operation


def operation_label(operation_id: str) -> str:
    return operation_id.removeprefix("hub.api.")


class Observed:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == _HEADER), None)
        request_id = context.accept(incoming)
        state, token = context.begin(request_id)
        # connexion's routing writes the operation into this dict (shallow copies of the
        # scope share it).
        extensions = scope.setdefault("extensions", {})
        raw_id = request_id.encode()
        status = 500  # if no answer starts, the server answers 500
        started = time.perf_counter()
        observed = False

        def observe() -> None:
            nonlocal observed
            observed = True
            routed = extensions.get(_ROUTING)
            if routed and routed.get("operation_id"):
                operation = operation_label(routed["operation_id"])
            else:
                operation = state.operation or "unmatched"
            metrics.observe_request(operation, status, time.perf_counter() - started)

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_HEADER, raw_id)]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the answer's last part leaves: a client that has it whole (and
                # then reads /metrics) finds it counted.
                observe()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not observed:  # no answer, or an unfinished one
                observe()
            context.end(token)
