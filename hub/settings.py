"""One typed settings object, read from HUB_* environment variables.

Every setting has a working default so that `make run` needs no configuration: an SQLite file
under instance/, no broker, and a secret key generated once and kept in instance/.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

INSTANCE_DIR = Path(os.environ.get("HUB_INSTANCE_DIR", Path.cwd() / "instance"))


def _instance_secret() -> str:
    """The development secret: made once, kept readable only by its owner."""
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _env(name: str, default: str) -> str:
    return os.environ.get(f"HUB_{name}", default)


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    secret_key: str
    issuer: str
    access_token_ttl: int
    db_pool_size: int
    workers: int
    host: str
    port: int
    access_log: bool = False
    problem_base: str = "https://coalition-hub.dev/problems/"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            database_url=_env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'hub.sqlite3'}"),
            broker_url=_env("BROKER_URL", ""),
            secret_key=os.environ.get("HUB_SECRET_KEY") or _instance_secret(),
            issuer=_env("ISSUER", "http://127.0.0.1:8000"),
            access_token_ttl=int(_env("ACCESS_TOKEN_TTL", "3600")),
            db_pool_size=int(_env("DB_POOL_SIZE", "10")),
            workers=int(_env("WORKERS", "1")),
            host=_env("HOST", "127.0.0.1"),
            port=int(_env("PORT", "8000")),
            access_log=_env("ACCESS_LOG", "").lower() in ("1", "true", "yes", "on"),
        )
