"""The Celery app and its tasks (thin: they call services).

Delivery is at least once: acks_late with task_reject_on_worker_lost puts a task back when
its worker dies, and the outbox republishes anything the broker lost. Every task is
therefore idempotent. With no HUB_BROKER_URL, the broker is an SQLite file under instance/
(kombu's SQLAlchemy transport): the same asynchronous, at-least-once relay, no extra service.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid

from celery import Celery, signals
from celery.schedules import crontab
from sqlalchemy.exc import OperationalError

from hub.notify.dispatcher import REQUEST_IDS_HEADER
from hub.observability import context, logs, metrics
from hub.settings import INSTANCE_DIR, Settings

RELAY_TASK = "hub.relay_redemptions"
CONVERSION_TASK = "hub.relay_conversions"
SYNC_TASK = "hub.sync_catalogs"
NOOP_TASK = "hub.noop"
BACKCHANNEL_LOGOUT_TASK = "hub.backchannel_logout"
WEBHOOK_TASK = "hub.deliver_webhooks"
# Outbox topic -> task name.
TOPICS = {"rewards.relay": RELAY_TASK, "oidc.backchannel_logout": BACKCHANNEL_LOGOUT_TASK,
          "exchange.remote_leg": CONVERSION_TASK, "webhooks.delivery": WEBHOOK_TASK}
# Payloads per task where the default (outbox.PER_MESSAGE, 20) is not the best: a relay task
# runs its orders' calls concurrently, so a larger batch costs no more time, and Celery's work
# per task, the claim and the outcome wave are paid once for all of them.
PER_MESSAGE = {"rewards.relay": 40}


def broker_url(settings: Settings) -> str:
    return settings.broker_url or f"sqla+sqlite:///{INSTANCE_DIR / 'broker.sqlite3'}"


def make_celery(settings: Settings) -> Celery:
    logs.install()  # the worker's logs (task arguments, errors) carry no secret, and the request id
    app = Celery("hub", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        worker_log_format="[%(asctime)s: %(levelname)s/%(processName)s] [%(request_id)s] %(message)s",
        task_default_queue=settings.task_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        beat_schedule={"sync-catalogs": {"task": SYNC_TASK, "schedule": crontab(minute=0, hour="*/6")}},
    )
    if app.conf.broker_url.startswith(("redis://", "rediss://")):
        # A task unacknowledged this long is delivered again (must exceed a task's run).
        app.conf.broker_transport_options = {"visibility_timeout": 600}
    return app


celery = make_celery(Settings.from_env())


# --- observability: request ids, task metrics, logs, the worker's /metrics -----------------

def _header_ids(task) -> list | None:
    """The dispatcher's header of request ids: a worker's request has the message's custom
    headers as attributes; `apply(headers=...)` (tests) keeps them in `request.headers`."""
    request = task.request
    return getattr(request, REQUEST_IDS_HEADER, None) or (request.headers or {}).get(REQUEST_IDS_HEADER)


def _request_ids(task, payloads: list[dict]) -> list[str | None]:
    """The request id of each payload (None for each if the task came without them:
    published by an older dispatcher, or applied directly)."""
    ids = _header_ids(task)
    if isinstance(ids, list) and len(ids) == len(payloads):
        return [i if context.valid(i) else None for i in ids]
    return [None] * len(payloads)


_running: dict[str, tuple[float, object]] = {}  # task id -> (started, request context token)


@signals.task_prerun.connect
def _task_started(task_id, task, **_):
    # The whole task's records carry its payloads' request ids (each item's own: see the tasks).
    ids = sorted({i for i in (_header_ids(task) or ()) if context.valid(i)})
    _, token = context.begin(",".join(ids) or None)
    _running[task_id] = (time.perf_counter(), token)


@signals.task_postrun.connect
def _task_ended(task_id, task, state=None, **_):
    started, token = _running.pop(task_id, (None, None))
    if token is not None:
        context.end(token)
    metrics.TASKS.labels(task.name, (state or "unknown").lower()).inc()
    if started is not None:
        metrics.TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_logs(logger, **_):
    """HUB_LOG_FORMAT=json: Celery's handlers write JSON lines."""
    if logs.log_format() == "json":
        for handler in logger.handlers:
            handler.setFormatter(logs.JsonFormatter())


@signals.worker_init.connect
def _serve_metrics(**_):
    """HUB_WORKER_METRICS_PORT: this worker's metrics (all its pool's processes: `hub worker`
    gives a prefork pool a PROMETHEUS_MULTIPROC_DIR) at http://HUB_HOST:port/metrics."""
    settings = Settings.from_env()
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, settings.host, registry=metrics.counted_registry())
        logging.getLogger(__name__).info("worker metrics on %s:%d", settings.host, settings.worker_metrics_port)


def _per_process(build):
    """`build()` once per worker process (after the fork), its result shared by the threads of
    a threads pool (the lock keeps them from building two)."""
    cached = functools.cache(build)
    lock = threading.Lock()

    @functools.wraps(build)
    def get():
        with lock:
            return cached()
    return get


@_per_process
def _services():
    """The database pool, connectors and relay of this worker process."""
    from hub.db import Database
    from hub.notify.policy import RelayPolicy
    from hub.privacy import keyring
    from hub.rewards import relay
    from hub.rewards.registry import configured_providers

    settings = Settings.from_env()
    db = Database(settings.database_url, _pool_size(settings))
    keyring.install(settings, db.engine)
    providers = configured_providers(settings)
    policy = RelayPolicy.from_settings(settings)
    return settings, db, providers, relay.Relay(db, providers, policy, parallel=_parallel())


def _concurrency() -> int:
    return int(os.environ.get("HUB_WORKER_CONCURRENCY") or 4)


def _task_threads() -> int:
    """Threads that run tasks in this process: all of them share its pool. (`hub worker`
    sets these variables; a prefork child runs one task at a time.)"""
    return _concurrency() if os.environ.get("HUB_WORKER_POOL") == "threads" else 1


def _pool_size(settings: Settings) -> int:
    """Connections this process keeps open, or HUB_DB_POOL_SIZE if larger: one per task
    thread (the relay records its answers on the task's thread) and one per outcome slot of
    the saga's threads (`_saga`), so that in steady use none is opened and closed per
    transaction."""
    return max(settings.db_pool_size, 2 * _task_threads())


def _parallel() -> int:
    """Relay threads per process. Orders (or conversions) of one task call out concurrently,
    up to 4 per task thread in all: four times the calls in flight of one per task, without
    opening hundreds of connections to one provider at once. With every task thread busy
    with a full relay batch, a claimed order may wait about ten calls for a thread: seconds at
    a provider's usual latency, far less than its lease. Should a provider answer every call
    only at its read timeout, an order can outwait its lease; another delivery then takes it
    over as a lost attempt (maybe placed: looked up first) and the provider's reference keeps
    it placed once. The relay's threads hold no database connection (the task's thread
    records their answers); the saga's hold one only for their short transactions, never
    during a remote call."""
    return 4 * _concurrency()


@_per_process
def _saga():
    """The conversion saga of this worker process (its partner connectors and breakers)."""
    from hub.db import Gated
    from hub.exchange import hosted, saga
    from hub.notify.policy import RelayPolicy

    settings, db, _, _ = _services()
    # Its threads take turns at as many outcome slots as the process has task threads: the
    # connections `_pool_size` keeps for them.
    outcomes = Gated(db, threading.BoundedSemaphore(_task_threads()))
    return saga.Saga(outcomes, hosted.configured(settings.providers), RelayPolicy.from_settings(settings),
                     parallel=_parallel())


@celery.task(
    name=RELAY_TASK,
    autoretry_for=(OperationalError,),  # the database itself was unreachable: try again soon
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=None,
)
def relay_redemptions(payloads: list[dict]) -> list[str]:
    """One relay attempt for each outbox payload ({"redemption_id": ...}) of the batch."""
    ids = [uuid.UUID(p["redemption_id"]) for p in payloads]
    return _services()[3].run_many(ids, dict(zip(ids, _request_ids(relay_redemptions, payloads))))


@celery.task(
    name=CONVERSION_TASK,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=None,
)
def relay_conversions(payloads: list[dict]) -> list[str]:
    """One saga attempt for the remote leg of each outbox payload ({"conversion_id": ...})
    of the batch (hub/exchange/saga.py)."""
    return _saga().run_many([uuid.UUID(p["conversion_id"]) for p in payloads])


@celery.task(name=SYNC_TASK)
def sync_catalogs() -> dict:
    from hub.rewards.registry import sync_all

    settings, db, providers, _ = _services()
    return sync_all(db, providers)


@celery.task(name=BACKCHANNEL_LOGOUT_TASK, autoretry_for=(OperationalError,), retry_backoff=True,
             retry_backoff_max=60, max_retries=None)
def backchannel_logout(payloads: list[dict]) -> list[str]:
    """POST a logout token for each outbox payload ({"session_id", "client_id", "subject"}) of
    the batch (hub/identity/oidc/logout.py; the outbox retries a failed one)."""
    from hub.identity.oidc import logout

    settings, db, _, _ = _services()
    return [logout.deliver(db, _signing_keys(), settings.issuer, **payload) for payload in payloads]


@functools.cache
def _signing_keys():
    """The worker's key store (one per process; it reloads after a rotation by itself)."""
    from hub.identity.keys import KeyStore

    settings, db, _, _ = _services()
    return KeyStore(db, settings.secret_key)


@_per_process
def _deliverer():
    """The webhook deliverer of this worker process (its HTTP pool and endpoints' breakers)."""
    from hub.notify.webhook_delivery import Deliverer

    settings, db, _, _ = _services()
    return Deliverer(db, settings)


@celery.task(name=WEBHOOK_TASK, autoretry_for=(OperationalError,), retry_backoff=True,
             retry_backoff_max=60, retry_jitter=True, max_retries=None)
def deliver_webhooks(payloads: list[dict]) -> list[str]:
    """One attempt for each outbox payload ({"delivery_id": ...}) of the batch: sign, POST,
    record (hub/notify/webhook_delivery.py; the outbox brings back the ones to retry)."""
    ids = [uuid.UUID(p["delivery_id"]) for p in payloads]
    return _deliverer().run_many(ids, _request_ids(deliver_webhooks, payloads))


@functools.cache
def _broker_redis():
    """A Redis client on the broker (per process, after the fork), or None on another broker."""
    url = celery.conf.broker_url
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url)


# --- engagement: segments and challenges (hub/rules) -------------------------------------

SEGMENTS_TASK = "hub.segments.refresh"
CHALLENGES_TASK = "hub.challenges.sweep"


@celery.task(name=SEGMENTS_TASK)
def refresh_segments() -> int:
    """Re-evaluate every partner's segments (each in its own transaction)."""
    from hub.rules import segments

    _, db, _, _ = _services()
    return len(segments.refresh_all(db))


@celery.task(name=CHALLENGES_TASK)
def sweep_challenges() -> int:
    """Badges (and bonuses) for challenges reached while a process's cache was stale."""
    from hub.rules import challenges

    _, db, _, _ = _services()
    return db.write(challenges.sweep)


celery.conf.beat_schedule.update({
    "refresh-segments": {"task": SEGMENTS_TASK, "schedule": crontab(minute="*/15")},
    "sweep-challenges": {"task": CHALLENGES_TASK, "schedule": crontab(minute="*/5")},
})


@celery.task(name=NOOP_TASK)
def noop(counter: str | None = None) -> None:
    """Does nothing: the floor of what a task costs on this broker and pool (bench/relay.py
    compares the relay with it). With `counter`, counts itself done on the broker's Redis:
    INCR counter and SET counter:last to the completion time (Unix seconds)."""
    client = _broker_redis() if counter else None
    if client is not None:
        import time

        pipe = client.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.set(f"{counter}:last", repr(time.time()))
        pipe.execute()


# --- tiers and expiry (hub.rules): daily jobs, each idempotent ------------------------------
TIER_REVIEW_TASK = "hub.review_tiers"
EXPIRY_TASK = "hub.expire_points"
EXPIRY_NOTICE_TASK = "hub.notify_expiring"
celery.conf.beat_schedule.update({
    "review-tiers": {"task": TIER_REVIEW_TASK, "schedule": crontab(minute=10, hour=0)},
    "expire-points": {"task": EXPIRY_TASK, "schedule": crontab(minute=20, hour=0)},
    "notify-expiring": {"task": EXPIRY_NOTICE_TASK, "schedule": crontab(minute=0, hour=8)},
})


@celery.task(name=TIER_REVIEW_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def review_tiers() -> dict:
    from hub.rules import tiers

    return tiers.review_due(_services()[1])


@celery.task(name=EXPIRY_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def expire_points() -> dict:
    from hub.rules import expiry

    return expiry.run(_services()[1])


@celery.task(name=EXPIRY_NOTICE_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def notify_expiring() -> int:
    from hub.rules import expiry

    return expiry.notify(_services()[1])


# --- privacy (issue 7): the daily retention job ---------------------------------------------
RETENTION_TASK = "hub.privacy.retention"
celery.conf.beat_schedule.update({
    "privacy-retention": {"task": RETENTION_TASK, "schedule": crontab(minute=40, hour=1)},
})


@celery.task(name=RETENTION_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def privacy_retention() -> dict:
    from hub.privacy import retention

    settings, db, _, _ = _services()
    return retention.run(db, settings)


# --- settlement (issue 9): close last month once it is over ----------------------------------
SETTLEMENT_CLOSE_TASK = "hub.settlement.close"
celery.conf.beat_schedule.update({
    "settlement-close": {"task": SETTLEMENT_CLOSE_TASK, "schedule": crontab(minute=30, hour=2)},
})


@celery.task(name=SETTLEMENT_CLOSE_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def settlement_close() -> dict:
    from hub.settlement import statements

    settings, db, _, _ = _services()
    return statements.close_previous_month(db, settings)
