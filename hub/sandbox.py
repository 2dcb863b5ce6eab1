"""The reward providers' sandbox: every partners.<name>.sandbox fake in one HTTP server.

Each fake is mounted at /<name> (/tango, /tremendous, /globalgiving, and /lcp: the partner-
hosted program's API), which is where the connectors' default base_url points
(http://127.0.0.1:8090/<name>/...). In-process:

    server, url = start(port=0, pending_delay=0.1)   # a free port; url = "http://127.0.0.1:<port>"
    ...
    server.shutdown()

or `serve()` to run it in the foreground (the `hub sandbox` command).
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

DEFAULT_PORT = 8090


def fakes(**options: Any) -> dict[str, Any]:
    """name -> a fresh WSGI app for every partners.<name> package that ships a sandbox.

    Options reach every fake: pending_delay (s before a "+pending" order settles, default 1),
    timeout_sleep (s a "+timeout" answer waits, default 3), and fake-specific ones such as
    webhook_url (Tremendous posts signed events there)."""
    import partners

    apps = {}
    for info in pkgutil.iter_modules(partners.__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"partners.{info.name}.sandbox")
        except ModuleNotFoundError as exc:
            if exc.name != f"partners.{info.name}.sandbox":
                raise
            continue
        apps[module.NAME] = module.create_app(**options)
    return apps


def build_app(**options: Any) -> DispatcherMiddleware:
    """The combined WSGI app; `.mounts` maps "/<name>" to each fake (to reach its state)."""
    return DispatcherMiddleware(_not_found, {f"/{name}": app for name, app in fakes(**options).items()})


def start(host: str = "127.0.0.1", port: int = 0, **options: Any) -> tuple[BaseWSGIServer, str]:
    """Serve the sandbox from a daemon thread; port 0 picks a free one. Stop with .shutdown()."""
    server = make_server(host, port, build_app(**options), threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, name="reward-sandbox", daemon=True).start()
    return server, f"http://{host}:{server.server_port}"


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, threads: int = 32, **options: Any) -> None:
    """Serve the sandbox in the foreground until interrupted.

    Under gunicorn, one worker process (the fakes keep their order books in memory) with
    `threads` threads: it answers a request for about half the CPU of werkzeug's development
    server (~0.65 against ~1.3 ms for a Tango order), and bench/relay.py counts the sandbox's
    CPU as part of a redemption's."""
    from gunicorn.app.base import BaseApplication

    class Sandbox(BaseApplication):
        def load_config(self) -> None:
            config = {"bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": threads,
                      # gunicorn's control socket is one path per user: not this helper's to take
                      # (`hub serve` may be a gunicorn too).
                      "control_socket_disable": True}
            for key, value in config.items():
                self.cfg.set(key, value)

        def load(self):
            return build_app(**options)

    Sandbox().run()


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log in tests
        pass


def _not_found(environ, start_response):
    return Response('{"error": "no such sandbox; try /tango, /tremendous or /globalgiving"}', 404,
                    mimetype="application/json")(environ, start_response)
