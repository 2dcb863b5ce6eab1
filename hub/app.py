"""create_app(): the connexion FlaskApp serving openapi/hub.yaml at /v1."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from pathlib import Path

import connexion
import redis
from connexion.context import UNBOUND_MESSAGE
from connexion.exceptions import ProblemException
from connexion.options import SwaggerUIOptions
from flask import Response, request
from sqlalchemy import text
from starlette.exceptions import HTTPException
from werkzeug.exceptions import HTTPException as WerkzeugHTTPException

from hub.api import lean, problems, runtime
from hub.api.oauth import init_oauth
from hub.api.validation import decorate_once, security_map, validator_map
from hub.db import Database
from hub.errors import DomainError
from hub.exchange import hosted
from hub.hardening.headers import SecurityHeaders
from hub.identity.keys import KeyStore
from hub.identity.oidc.issue import LOGOUT_TOKEN_TTL
from hub.identity.ratelimit import Limited, limiter_for
from hub.identity.tokens import TokenVerifier
from hub.ledger import LedgerError
from hub.observability import context, logs, metrics
from hub.observability.middleware import Observed
from hub.privacy import keyring
from hub.rewards.registry import configured_providers
from hub.settings import Settings
from hub.web import init_web

SPEC_DIR = Path(__file__).resolve().parents[1] / "openapi"


class HubApp(connexion.FlaskApp):
    """connexion's FlaskApp, with the hot operations taken first by the lean path
    (hub/api/lean.py: the same security, validation, handlers and problems, without the
    framework's routing, Flask and a2wsgi). Everything else goes through connexion."""

    lean: lean.LeanRoutes | None = None
    # route() behind the security headers, behind the request id and metrics
    observed: Observed | None = None

    async def __call__(self, scope, receive, send) -> None:
        await (self.observed or self.route)(scope, receive, send)

    async def route(self, scope, receive, send) -> None:
        chain = self.lean.match(scope) if self.lean is not None else None
        if chain is not None:
            await chain(scope, receive, send)
        else:
            await self.middleware(scope, receive, send)


def create_app(settings: Settings | None = None, *, validate_responses: bool = False) -> HubApp:
    settings = settings or Settings.from_env()
    logs.install()  # records redacted (hub.hardening.redaction) and carrying the request id
    db = Database(settings.database_url, settings.db_pool_size)
    keyring.install(settings, db.engine)
    # Replaced signing keys stay published as long as the longest-lived token they signed.
    keys = KeyStore(db, settings.secret_key,
                    token_lifetime=max(settings.access_token_ttl, settings.id_token_ttl, LOGOUT_TOKEN_TTL))
    audience = settings.issuer.rstrip("/") + "/v1"
    hub = runtime.Hub(settings, db, keys, TokenVerifier(keys, settings.issuer, audience),
                      configured_providers(settings), hosted.configured(settings.providers),
                      limiter_for(settings.broker_url, settings.rate_limits))
    runtime.install(hub)

    app = HubApp(
        __name__, specification_dir=SPEC_DIR, validator_map=validator_map(), security_map=security_map()
    )
    app.add_api(
        "hub.yaml",
        strict_validation=True,
        validate_responses=validate_responses,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/ui"),
    )
    app.add_error_handler(ProblemException, problems.framework_problem)
    app.add_error_handler(HTTPException, problems.framework_problem)
    app.add_error_handler(UnicodeDecodeError, problems.undecodable_request)
    app.add_error_handler(RecursionError, problems.too_deep_request)
    app.add_error_handler(Exception, problems.framework_unexpected)

    flask_app = app.app
    decorate_once(flask_app)
    flask_app.json.sort_keys = False
    flask_app.register_error_handler(DomainError, problems.domain_error)
    flask_app.register_error_handler(LedgerError, problems.ledger_error)
    flask_app.register_error_handler(Limited, problems.rate_limited)  # the pages answer their own
    flask_app.register_error_handler(UnicodeEncodeError, problems.unencodable_text)
    flask_app.register_error_handler(Exception, _unexpected)
    init_oauth(flask_app, hub, audience)
    init_web(flask_app, hub)  # the member account pages (/account/...)

    @flask_app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @flask_app.get("/readyz")
    def readyz():
        checks = _readiness(db, settings.broker_url)
        ok = all(v in ("ok", "not configured") for v in checks.values())
        return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503

    @flask_app.get("/metrics")
    def prometheus_metrics():
        status = metrics.access(settings, request.headers.get("Authorization"))
        if status == 404:
            return problems.flask_response(404, "not-found", "Not found", "no such resource")
        if status == 401:
            return problems.flask_response(401, "unauthenticated", "Unauthenticated", "a metrics token is required")
        return Response(metrics.render(db), content_type=metrics.CONTENT_TYPE)

    @flask_app.before_request
    def name_route():  # the metrics' operation for pages and OAuth (API operations are named by connexion)
        if request.url_rule is not None:
            context.name_operation(request.url_rule.rule)

    app.lean = lean.build(app, settings.db_pool_size)
    secured = SecurityHeaders(app.route, https=settings.issuer.startswith("https://"))
    app.observed = Observed(secured)
    return app


def _unexpected(exc: Exception):
    # Werkzeug HTTP errors (404, 405 on non-API routes) keep connexion's handling.
    if isinstance(exc, WerkzeugHTTPException):
        raise exc
    if isinstance(exc, RuntimeError) and str(exc) == UNBOUND_MESSAGE:
        # connexion's router matched no operation but Flask's did: connexion mounts the API
        # with a pattern that stops at a newline, so /v1/members/a%0Ab skips its routing (and
        # validation and auth), and the handler's wrapper fails for want of the operation
        # before the handler runs. To connexion, that URL names no operation: a 404.
        return problems.flask_response(404, "not-found", "Not found", "no such resource")
    return problems.unexpected(exc)


READINESS_TIMEOUT = 2.0  # seconds for each check
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hub-readyz")


def _readiness(db: Database, broker_url: str) -> dict[str, str]:
    """Each check in its own thread, each given READINESS_TIMEOUT: a hung database or broker
    is reported as such instead of holding the probe (the check's own timeouts end it)."""
    futures = {"database": _checks.submit(_check_database, db), "broker": _checks.submit(_check_broker, broker_url)}
    results = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=READINESS_TIMEOUT)
        except FutureTimeout:
            results[name] = "failed: timeout"
    return results


def _check_database(db: Database) -> str:
    try:
        with db.read() as session:
            session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # readiness reports any failure instead of raising it
        return f"failed: {type(exc).__name__}"


def _check_broker(url: str) -> str:
    if not url:
        return "not configured"
    try:
        redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping()
        return "ok"
    except redis.RedisError as exc:
        return f"failed: {type(exc).__name__}"
