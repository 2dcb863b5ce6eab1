"""Server-rendered pages on the Flask app under connexion: member accounts (hub/web/accounts.py),
the member's dashboard and account linking (hub/web/dashboard.py), what partners may see
(hub/web/sharing.py), the ops console (hub/web/ops/), downloading one's data and deleting one's account (privacy_pages.py),
and the glue the other pages share (login session and CSRF in session.py, i18n.py)."""
from __future__ import annotations

from flask import Flask

from hub.api.runtime import Hub
from hub.identity.accounts import Passwords
from hub.web import accounts, dashboard, i18n, ops, privacy_pages, session, sharing
from hub.web.state import WebState


def init_web(flask_app: Flask, hub: Hub) -> None:
    settings = hub.settings
    flask_app.extensions["hub_web"] = WebState(
        hub=hub,
        passwords=Passwords(),
        limiter=hub.limiter,
        cookie_secure=settings.login_cookie_secure,
    )
    flask_app.context_processor(i18n.template_globals)
    flask_app.context_processor(session.template_globals)
    session.init_app(flask_app)
    i18n.init_app(flask_app)
    flask_app.register_blueprint(accounts.blueprint)
    flask_app.register_blueprint(dashboard.blueprint)
    flask_app.register_blueprint(privacy_pages.blueprint)
    flask_app.register_blueprint(sharing.blueprint)
    flask_app.register_blueprint(ops.blueprint)
