"""One typed settings object, read from HUB_* environment variables.

Every setting has a working default so that `make run` needs no configuration: an SQLite file
under instance/, no broker, and a secret key generated once and kept in instance/.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from hub.hardening import redaction

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


def _flag(value: str) -> bool | None:
    """An on/off setting that may be left unset ("")."""
    return None if not value else value.lower() in ("1", "true", "yes", "on")


# What one major unit of a currency is worth in coalition units; prices provider rewards
# (a USD 10 gift card costs 10 x 16000 units, paid in any program's points at its point value).
DEFAULT_UNIT_RATES = "IDR=1,USD=16000,EUR=17500,SGD=12000,GBP=20500"


def parse_unit_rates(text: str) -> dict[str, Decimal]:
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {code.strip().upper(): Decimal(rate) for code, rate in pairs}


def _provider_config() -> dict[str, dict[str, str]]:
    """HUB_PROVIDER_<NAME>_<KEY>=value -> {name: {key: value}} (over each connector's defaults)."""
    config: dict[str, dict[str, str]] = {}
    for name, value in os.environ.items():
        if name.startswith("HUB_PROVIDER_") and name.count("_") >= 3:
            provider, key = name[len("HUB_PROVIDER_"):].lower().split("_", 1)
            config.setdefault(provider, {})[key] = value
    return config


def parse_rate_limits(text: str) -> dict[str, tuple[int, int]]:
    """HUB_RATE_LIMITS, "rule=limit/seconds,...": overrides of the rules of
    hub/identity/ratelimit.py (e.g. "oauth-ip=6000/60" behind a partner's gateway)."""
    overrides = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        limit, _, window = value.partition("/")
        overrides[name.strip()] = (int(limit), int(window))
    return overrides


_SECRET_FIELDS = ("secret_key", "data_keys", "index_key")  # never shown by repr


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
    # `hub serve` behind a reverse proxy: the addresses (or CIDR networks) whose
    # X-Forwarded-For and X-Forwarded-Proto it believes, so rate limits count the real client
    # (docs/deploy.md). Only the proxy's own address: anyone else could forge the headers.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    beat_schedule: str = ""  # Celery beat's schedule file (`hub beat`, `hub worker --beat`)
    problem_base: str = "https://coalition-hub.dev/problems/"
    unit_rates: dict[str, Decimal] = field(default_factory=lambda: parse_unit_rates(DEFAULT_UNIT_RATES))
    # How long a redemption's points stay reserved while the relay works on it. It must
    # outlast every retry and lookup (design.md, rule 5); after it, the order needs review.
    redemption_hold: int = 7 * 24 * 3600
    providers: dict[str, dict[str, str]] = field(default_factory=dict)
    # Conversions (hub/exchange): how long a quote may be executed, and how long the local leg
    # of a conversion with a partner-hosted program stays reserved while its remote leg is
    # relayed (it must outlast the partner's slowest settlement, such as a nightly batch).
    quote_ttl: int = 300
    # Settlement (docs/settlement.md): a month can close this many minutes after it ends.
    settlement_grace_minutes: int = 15
    conversion_hold: int = 7 * 24 * 3600
    # The relay (hub/rewards/relay.py): a claim's lease must outlast a lookup plus an order
    # with their timeouts; the outbox republishes a message with no outcome after its lease.
    relay_lease: float = 60.0
    relay_backoff_base: float = 2.0
    relay_backoff_cap: float = 600.0
    relay_max_attempts: int = 12
    outbox_lease: float = 60.0
    task_queue: str = "hub"  # the broker queue the relay's tasks go through
    # Member login sessions (hub/identity/login.py): how long one lasts, and whether its cookie
    # is Secure. None: Secure unless the issuer is plain http on this machine (`make run`);
    # turning it off for any other issuer is refused (login_cookie_secure).
    login_session_ttl: int = 14 * 24 * 3600
    cookie_secure: bool | None = None
    # The OpenID provider (hub/identity/oidc): ID tokens are read once by the client, so they
    # live briefly; refresh tokens (offline_access) are rotated on every use.
    id_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 24 * 3600
    # Partner webhooks (hub/notify/webhook_*.py, docs/webhooks.md). Endpoint URLs must be
    # https and resolve to public addresses; each flag lifts one rule. None (unset): lifted
    # only while the issuer is plain http on this machine (`make run`, tests), never elsewhere.
    # Every delivery's HTTP request has a (connect, read) timeout; a delivery's lease must
    # outlast both. After a rotation the old secret also signs for `rotation_window` seconds.
    # `breaker_failures` failed attempts in a row to one endpoint pause its deliveries (in
    # that worker process) for `breaker_reset` seconds, so a dead endpoint holds no workers.
    webhooks_allow_http: bool | None = None
    webhooks_allow_private: bool | None = None
    webhooks_timeout_connect: float = 5.0
    webhooks_timeout_read: float = 15.0
    webhooks_lease: float = 60.0
    webhooks_rotation_window: int = 24 * 3600
    webhooks_breaker_failures: int = 5
    webhooks_breaker_reset: float = 60.0
    # Retention (hub/privacy/retention.py, docs/privacy.md): days after which the daily job
    # deletes outgoing mail; used or expired one-time tokens, link requests, OIDC codes and
    # refresh tokens; ended or expired login sessions; idempotency keys (a client retries
    # within minutes); webhook events with no delivery still pending (and their deliveries);
    # done outbox messages (their payloads name members, e.g. back-channel logout subjects).
    retention_mail_days: int = 30
    retention_tokens_days: int = 7
    retention_sessions_days: int = 30
    retention_idempotency_days: int = 7
    retention_webhooks_days: int = 30
    retention_outbox_days: int = 7
    # Encryption at rest (hub/privacy, docs/encryption.md). `data_keys`: the master keys that
    # wrap the data keys, "id:base64(32 bytes)" comma-separated, current first (`derived`:
    # the one derived from secret_key, which is also the default). `index_key`: base64 of 32
    # bytes keying the blind indexes of emails and phones (default: derived from secret_key;
    # it cannot change without recomputing every index).
    data_keys: str = ""
    index_key: str = ""
    # Rate limits (hub/identity/ratelimit.py, docs/security.md): overrides of its rules, by name.
    # Counted in Redis when the broker is Redis (shared by every process), else in memory.
    rate_limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Observability (hub/observability, docs/observability.md). /metrics is served when
    # `metrics` is on; None (unset): only for an http://localhost issuer (`make run`, tests).
    # With `metrics_token`, only to a scraper sending it as a Bearer token (on or unset).
    # `worker_metrics_port`: a Celery worker serves its own /metrics there (0: none).
    metrics: bool | None = None
    metrics_token: str = ""
    worker_metrics_port: int = 0

    @property
    def _local_issuer(self) -> bool:
        issuer = urlsplit(self.issuer)
        return issuer.scheme == "http" and issuer.hostname in ("127.0.0.1", "localhost", "::1")

    @property
    def webhooks_http_allowed(self) -> bool:
        return self._local_issuer if self.webhooks_allow_http is None else self.webhooks_allow_http

    @property
    def webhooks_private_allowed(self) -> bool:
        return self._local_issuer if self.webhooks_allow_private is None else self.webhooks_allow_private

    @property
    def metrics_served(self) -> bool:
        return self._local_issuer if self.metrics is None else self.metrics

    @property
    def login_cookie_secure(self) -> bool:
        local = self._local_issuer
        if self.cookie_secure is False and not local:
            raise ValueError("HUB_COOKIE_SECURE may be off only for an http://localhost issuer")
        return (not local) if self.cookie_secure is None else self.cookie_secure

    def __repr__(self) -> str:
        """Safe to log: the keys hidden, URLs' passwords and secret-named provider settings
        redacted (hub/hardening/redaction.py)."""
        shown = (f"{f.name}={redaction.REDACTED if f.name in _SECRET_FIELDS else redaction.redact(repr(getattr(self, f.name)))}"
                 for f in fields(self))
        return f"Settings({', '.join(shown)})"

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
            forwarded_allow_ips=_env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
            beat_schedule=_env("BEAT_SCHEDULE", str(INSTANCE_DIR / "celerybeat-schedule")),
            unit_rates=parse_unit_rates(_env("UNIT_RATES", DEFAULT_UNIT_RATES)),
            redemption_hold=int(_env("REDEMPTION_HOLD", str(7 * 24 * 3600))),
            providers=_provider_config(),
            quote_ttl=int(_env("QUOTE_TTL", "300")),
            settlement_grace_minutes=int(_env("SETTLEMENT_GRACE_MINUTES", "15")),
            conversion_hold=int(_env("CONVERSION_HOLD", str(7 * 24 * 3600))),
            relay_lease=float(_env("RELAY_LEASE", "60")),
            relay_backoff_base=float(_env("RELAY_BACKOFF_BASE", "2")),
            relay_backoff_cap=float(_env("RELAY_BACKOFF_CAP", "600")),
            relay_max_attempts=int(_env("RELAY_MAX_ATTEMPTS", "12")),
            outbox_lease=float(_env("OUTBOX_LEASE", "60")),
            task_queue=_env("TASK_QUEUE", "hub"),
            login_session_ttl=int(_env("LOGIN_SESSION_TTL", str(14 * 24 * 3600))),
            cookie_secure=_flag(_env("COOKIE_SECURE", "")),
            id_token_ttl=int(_env("ID_TOKEN_TTL", "600")),
            refresh_token_ttl=int(_env("REFRESH_TOKEN_TTL", str(30 * 24 * 3600))),
            webhooks_allow_http=_flag(_env("WEBHOOKS_ALLOW_HTTP", "")),
            webhooks_allow_private=_flag(_env("WEBHOOKS_ALLOW_PRIVATE", "")),
            webhooks_timeout_connect=float(_env("WEBHOOKS_TIMEOUT_CONNECT", "5")),
            webhooks_timeout_read=float(_env("WEBHOOKS_TIMEOUT_READ", "15")),
            webhooks_lease=float(_env("WEBHOOKS_LEASE", "60")),
            webhooks_rotation_window=int(_env("WEBHOOKS_ROTATION_WINDOW", str(24 * 3600))),
            webhooks_breaker_failures=int(_env("WEBHOOKS_BREAKER_FAILURES", "5")),
            webhooks_breaker_reset=float(_env("WEBHOOKS_BREAKER_RESET", "60")),
            retention_mail_days=int(_env("RETENTION_MAIL_DAYS", "30")),
            retention_tokens_days=int(_env("RETENTION_TOKENS_DAYS", "7")),
            retention_sessions_days=int(_env("RETENTION_SESSIONS_DAYS", "30")),
            retention_idempotency_days=int(_env("RETENTION_IDEMPOTENCY_DAYS", "7")),
            retention_webhooks_days=int(_env("RETENTION_WEBHOOKS_DAYS", "30")),
            retention_outbox_days=int(_env("RETENTION_OUTBOX_DAYS", "7")),
            data_keys=_env("DATA_KEYS", ""),
            index_key=_env("INDEX_KEY", ""),
            rate_limits=parse_rate_limits(_env("RATE_LIMITS", "")),
            metrics=_flag(_env("METRICS", "")),
            metrics_token=_env("METRICS_TOKEN", ""),
            worker_metrics_port=int(_env("WORKER_METRICS_PORT", "0")),
        )
