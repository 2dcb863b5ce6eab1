"""Work connexion 3 repeats on every request that only needs doing once.

- It builds a new JSON-schema validator for every request body (connexion/validators/json.py),
  which more than halved the throughput of a validated POST. The schema object of an
  operation never changes, so its validator is built once.
- Its security handlers inspect the token-info function's signature (inspect.signature)
  on every request, twice. A function's signature does not change, so that is cached too.
- Its Flask operations build a new FlaskDecorator and re-decorate the handler (parameter and
  response decorators, inspect.signature again) on every request: `decorate_once` does it
  at start-up instead.
"""
from __future__ import annotations

import functools

from connexion.apps.flask import FlaskOperation
from connexion.datastructures import MediaTypeDict
from connexion.decorators import FlaskDecorator
from connexion.json_schema import Draft4RequestValidator
from connexion.security import SECURITY_HANDLERS, OAuthSecurityHandler
from connexion.utils import inspect_function_arguments
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator
from jsonschema import Draft4Validator

# Where the parsed request body is left in the ASGI scope (read by hub/api/lean.py).
BODY_KEY = "hub.json_body"

_compiled: dict[int, tuple[dict, Draft4RequestValidator]] = {}


class CachedJSONRequestBodyValidator(JSONRequestBodyValidator):
    async def _parse(self, stream, scope):
        # The lean path (hub/api/lean.py) hands this parsed body to the handler instead of
        # parsing the bytes again: the object validated is the object handled.
        body = await super()._parse(stream, scope)
        scope.setdefault("extensions", {})[BODY_KEY] = body
        return body

    @property
    def _validator(self):
        hit = _compiled.get(id(self._schema))
        if hit is None or hit[0] is not self._schema:
            hit = (
                self._schema,
                Draft4RequestValidator(self._schema, format_checker=Draft4Validator.FORMAT_CHECKER),
            )
            _compiled[id(self._schema)] = hit
        return hit[1]


def validator_map() -> dict:
    # Keep it a MediaTypeDict: a plain dict does not match "*/*json" and skips validation.
    body = MediaTypeDict(VALIDATOR_MAP["body"])
    for media_type, cls in body.items():
        if cls is JSONRequestBodyValidator:
            body[media_type] = CachedJSONRequestBodyValidator
    return {**VALIDATOR_MAP, "body": body}


@functools.lru_cache(maxsize=256)
def _accepts_kwarg(func, keyword: str) -> bool:
    arguments, has_kwargs = inspect_function_arguments(func)
    return has_kwargs or keyword in arguments


class CachedOAuthSecurityHandler(OAuthSecurityHandler):
    _accepts_kwarg = staticmethod(_accepts_kwarg)


def security_map() -> dict:
    return {**SECURITY_HANDLERS, "oauth2": CachedOAuthSecurityHandler}


class _DecoratedOnce:
    """What FlaskOperation.__call__ does (connexion/apps/flask.py, decorators/main.py), with
    the handler decorated once. The URI parser stays per request: it is the operation's."""

    def __init__(self, operation: FlaskOperation):
        self._decorator = FlaskDecorator(
            pythonic_params=operation.pythonic_params, jsonifier=operation.jsonifier
        )
        self._handler = self._decorator.decorate(operation._fn)
        functools.update_wrapper(self, operation._fn)

    def __call__(self, *args, **kwargs):
        decorator = self._decorator
        return self._handler(decorator.framework.get_request(uri_parser=decorator.uri_parser))


def decorate_once(flask_app) -> None:
    """Swap connexion's per-request decoration of API handlers for a one-time one."""
    for endpoint, view in list(flask_app.view_functions.items()):
        if isinstance(view, FlaskOperation):
            flask_app.view_functions[endpoint] = _DecoratedOnce(view)
