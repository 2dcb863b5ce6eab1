"""The ASGI application for uvicorn and gunicorn: `hub.asgi:app`."""
import gc
import logging

from hub.app import create_app
from hub.observability import logs

logs.configure(logging.INFO)  # after the server's own set-up: HUB_LOG_FORMAT for every line
app = create_app()

# The app's start-up leaves ~140,000 long-lived objects (the spec, connexion's and SQLAlchemy's
# structures) that every full garbage collection would scan again: ~50 ms with the GIL held,
# a stall of every request of the worker, seen as the p99 of bench/earn.py. Frozen, they are
# left out of collections; garbage made by requests is collected as before.
gc.freeze()
