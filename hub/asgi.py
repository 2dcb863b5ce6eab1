"""The ASGI application for uvicorn and gunicorn: `hub.asgi:app`."""
from hub.app import create_app

app = create_app()
