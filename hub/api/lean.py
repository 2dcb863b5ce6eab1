"""The lean path: the hot POSTs (the ROUTES below: purchases, batches, redemptions, quotes and
conversions) without the framework.

WHY: py-spy profiles of `bench/earn.py` put about 60% of a worker's CPU per purchase in the
framework stack: connexion's middleware chain (error middlewares, Swagger UI, three starlette
routers, context), a2wsgi's hand-offs between the event loop and a worker thread (one per
message), Flask's dispatch and connexion's Flask decorators. The earning itself was ~30%.

WHAT STAYS THE SAME: for these operations this module composes connexion's own per-operation
pieces, built once at start-up from the same spec, security map, validator map and error
handlers as the connexion app:

  ExceptionMiddleware (with the app's error handlers: problems.framework_problem, ...)
    -> SecurityOperation (Bearer token -> hub.api.security.token_info, scope check)
      -> RequestValidationOperation (Idempotency-Key header, media type, body schema, strict)
        -> [ResponseValidationOperation, when the app validates responses]
          -> LeanEndpoint: the handler in a worker thread

and the handler is the one the Flask route runs (`hub.api.transactions.post_purchase`,
`post_batch`, `hub.api.redemptions.post`, `hub.api.conversions.post_quote` and `post`), its
errors mapped by the same
`problems.handler_problem`. So tokens, scopes, problem types, statuses and details,
Idempotency-Key handling and response bodies are those of the connexion path, by construction;
tests/integration/test_lean_path.py compares the two.

WHAT IS SKIPPED: connexion's routing (a request is taken only on an exact method and path, with
no query string and no root path; anything else goes to connexion unchanged), the Swagger UI
middleware, connexion's context variables (these handlers do not read them), a2wsgi and Flask.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from connexion import utils
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.request_validation import RequestValidationOperation
from connexion.middleware.response_validation import ResponseValidationOperation
from connexion.middleware.security import SecurityOperation
from connexion.resolver import Resolver
from connexion.security import SecurityHandlerFactory
from jsonschema import Draft4Validator
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.api import conversions, problems, redemptions, transactions
from hub.api.common import Call, Reply
from hub.api.validation import BODY_KEY, CachedJSONRequestBodyValidator
from hub.observability import context
from hub.observability.middleware import operation_label

# (method, path under the API's base path) -> the handler both paths run.
ROUTES: dict[tuple[str, str], Callable[[Call, dict, dict], Reply]] = {
    ("post", "/transactions"): transactions.post_purchase,
    ("post", "/transactions/batch"): transactions.post_batch,
    ("post", "/redemptions"): redemptions.post,
    ("post", "/conversions/quotes"): conversions.post_quote,
    ("post", "/conversions"): conversions.post,
}


class LeanEndpoint:
    """The last ASGI app of the chain: run the handler in a worker thread, send its reply.

    One thread hop per request (a2wsgi made one per ASGI message). The pool is bounded by the
    database pool size: more threads would only wait for (or overflow) connections.
    """

    def __init__(self, handler: Callable[[Call, dict, dict], Reply], executor: ThreadPoolExecutor):
        self.handler = handler
        self.executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The request body validator parsed and validated the body; the handler gets that
        # same object (an unparsed body cannot get here: the body is required).
        body = scope["extensions"][BODY_KEY]
        token_info = scope["extensions"]["connexion_context"]["token_info"]
        call = Call("POST", scope["path"] + "?", _header(scope, b"idempotency-key"))
        loop = asyncio.get_running_loop()
        # In the request's context: the thread's log records and outbox messages carry its id.
        status, headers, content, media_type = await loop.run_in_executor(
            self.executor, contextvars.copy_context().run, self._run, call, body, token_info
        )
        await Response(content, status, headers, media_type)(scope, receive, send)

    def _run(self, call: Call, body: dict, token_info: dict):
        # Serialising in the worker thread too: a batch's answer is ~0.5 MB of JSON.
        try:
            reply = self.handler(call, body, token_info)
        except Exception as exc:  # what Flask's error handlers do (hub/app.py)
            status, problem = problems.handler_problem(exc)
            return status, None, json.dumps(problem).encode(), problems.MEDIA_TYPE
        # json.dumps as Flask's (sort_keys off in create_app): the same bytes.
        return reply.status, reply.headers, json.dumps(reply.body).encode(), "application/json"


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header as Flask (through a2wsgi) reads it: latin-1, repeats joined by ","."""
    values = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == name]
    return ",".join(values) if values else None


class _Validation(RequestValidationOperation):
    """connexion's RequestValidationOperation with its per-request set-up done once.

    connexion builds a URI parser, a ParameterValidator and a body validator, and looks up the
    media type, schema and validator class on every request (~4% of a worker's CPU). Neither
    depends on the request here: LeanRoutes lets only `Content-Type: application/json` in, for
    which connexion's own checks give mime type application/json, encoding utf-8, the media
    type accepted (the operations consume only that) and CachedJSONRequestBodyValidator.
    What runs per request is what connexion runs: the parameter check (strict: no query
    parameter; the Idempotency-Key header against its schema), then the body check.
    """

    MIME_TYPE = "application/json"

    def __init__(self, next_app: ASGIApp, *, operation, strict_validation: bool, validator_map: dict):
        super().__init__(
            next_app, operation=operation, strict_validation=strict_validation,
            validator_map=validator_map,
        )
        self.validate_mime_type(self.MIME_TYPE)  # fails at start-up if the spec changes
        self._parameters = self._validator_map["parameter"](
            operation.parameters,
            uri_parser=operation._uri_parser_class(operation.parameters, operation.body_definition()),
            strict_validation=strict_validation,
            security_query_params=self.security_query_params,
        )
        self._body = dict(
            schema=operation.body_schema(self.MIME_TYPE),
            required=operation.request_body.get("required", False),
            nullable=utils.is_nullable(operation.body_definition(self.MIME_TYPE)),
            strict_validation=strict_validation,
            uri_parser=operation.uri_parser_class(operation.parameters, operation.body_definition()),
        )
        self._body_validator = self._validator_map["body"][self.MIME_TYPE]
        assert self._body["schema"] and self._body_validator is CachedJSONRequestBodyValidator
        # connexion builds a validator for each parameter on every request (and deep-copies
        # its schema): the header parameters' are built once here. The lean operations take
        # nothing but headers (checked: a spec change fails at start-up).
        assert all(param["in"] == "header" for param in operation.parameters)
        self._header_checks = [
            (param["name"].lower().encode("latin-1"), utils.is_nullable(param), bool(param.get("required")),
             Draft4Validator(param.get("schema", param), format_checker=Draft4Validator.FORMAT_CHECKER))
            for param in operation.parameters
        ]

    def _headers_valid(self, scope: Scope) -> bool:
        """Whether connexion's parameter check would pass, by the same validators (connexion's
        ParameterValidator.validate_parameter). False means "ask connexion", which then
        raises: a header that is missing, repeated or invalid is reported in its words."""
        for name, nullable, required, validator in self._header_checks:
            values = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == name]
            if len(values) > 1:
                return False
            value = values[0] if values else None
            if nullable and utils.is_null(value):
                continue
            if value is None:
                if required:
                    return False
            elif not validator.is_valid(value):
                return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._headers_valid(scope):
            self._parameters.validate(scope)  # connexion's own check: raises its 400, as always
        validator = self._body_validator(encoding="utf-8", **self._body)
        receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


class LeanRoutes:
    """The lean chains by (method, path). Only the plain case is taken: exact path, no query
    string (these operations have none, so connexion refuses any), no root path, and one
    Content-Type header that is exactly application/json. Anything else goes to connexion,
    which answers it as it always did."""

    def __init__(self, chains: dict[tuple[str, str], tuple[str, ASGIApp]]):
        self.chains = chains  # (method, path) -> (operation name for the metrics, chain)

    def match(self, scope: Scope) -> ASGIApp | None:
        if scope["type"] != "http" or scope["query_string"] or scope.get("root_path"):
            return None
        named = self.chains.get((scope["method"], scope["path"]))
        if named is None:
            return None
        content_types = [v for k, v in scope["headers"] if k.lower() == b"content-type"]
        if content_types != [b"application/json"]:
            return None
        context.name_operation(named[0])
        return named[1]


def build(connexion_app, pool_size: int) -> LeanRoutes:
    """The lean chains of ROUTES, from the connexion app's own API, options and handlers."""
    (api,) = connexion_app.middleware.apis  # openapi/hub.yaml at /v1
    spec, options = api.specification, api.kwargs
    base_path = spec.base_path if api.base_path is None else api.base_path  # as connexion's
    executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="hub-lean")
    security = SecurityHandlerFactory(options["security_map"])
    resolver = options["resolver"] or Resolver()
    chains = {}
    for (method, path), handler in ROUTES.items():
        operation = spec.operation_cls.from_spec(
            spec, path=path, method=method, resolver=resolver,
            uri_parser_class=options["uri_parser_class"],
        )
        app: ASGIApp = LeanEndpoint(handler, executor)
        if options["validate_responses"]:
            app = ResponseValidationOperation(
                app, operation=operation, validator_map=options["validator_map"]
            )
        app = _Validation(
            app, operation=operation, strict_validation=options["strict_validation"],
            validator_map=options["validator_map"],
        )
        app = SecurityOperation.from_operation(
            operation, next_app=app, security_handler_factory=security
        )
        guarded = ExceptionMiddleware(app)
        for exc_class, handler_fn in connexion_app.middleware.error_handlers:
            guarded.add_exception_handler(exc_class, handler_fn)
        chains[(method.upper(), base_path + path)] = (operation_label(operation.operation_id), guarded)
    return LeanRoutes(chains)
