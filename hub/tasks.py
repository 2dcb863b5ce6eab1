"""The Celery app and its tasks (thin: they call services).

Delivery is at least once: acks_late with task_reject_on_worker_lost puts a task back when
its worker dies, and the outbox republishes anything the broker lost. Every task is
therefore idempotent. With no HUB_BROKER_URL, the broker is an SQLite file under instance/
(kombu's SQLAlchemy transport): the same asynchronous, at-least-once relay, no extra service.
"""
from __future__ import annotations

import functools
import os
import threading
import uuid

from celery import Celery
from celery.schedules import crontab
from sqlalchemy.exc import OperationalError

from hub.settings import INSTANCE_DIR, Settings

RELAY_TASK = "hub.relay_redemptions"
CONVERSION_TASK = "hub.relay_conversions"
SYNC_TASK = "hub.sync_catalogs"
NOOP_TASK = "hub.noop"
BACKCHANNEL_LOGOUT_TASK = "hub.backchannel_logout"
# Outbox topic -> task name.
TOPICS = {"rewards.relay": RELAY_TASK, "oidc.backchannel_logout": BACKCHANNEL_LOGOUT_TASK,
          "exchange.remote_leg": CONVERSION_TASK}


def broker_url(settings: Settings) -> str:
    return settings.broker_url or f"sqla+sqlite:///{INSTANCE_DIR / 'broker.sqlite3'}"


def make_celery(settings: Settings) -> Celery:
    app = Celery("hub", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
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


_services_lock = threading.Lock()


def _services():
    """Built once per worker process (after the fork): database pool, connectors, relay.
    Shared by the threads of a threads pool (the lock keeps them from building two)."""
    with _services_lock:
        return _build_services()


@functools.cache
def _build_services():
    from hub.db import Database
    from hub.notify.policy import RelayPolicy
    from hub.rewards import relay
    from hub.rewards.registry import configured_providers

    settings = Settings.from_env()
    # A threads worker shares one pool among its threads: as many connections as threads, or
    # the overflow ones would be opened and closed all the time. (`hub worker` sets these.)
    pool_size = settings.db_pool_size
    if os.environ.get("HUB_WORKER_POOL") == "threads":
        pool_size = max(pool_size, int(os.environ.get("HUB_WORKER_CONCURRENCY") or 0))
    db = Database(settings.database_url, pool_size)
    providers = configured_providers(settings)
    policy = RelayPolicy.from_settings(settings)
    return settings, db, providers, relay.Relay(db, providers, settings.secret_key, policy, parallel=_parallel())


def _parallel() -> int:
    """Relay threads per process. Orders (or conversions) of one task call out concurrently,
    up to 4 per pool thread in all: four times the calls in flight of one per task, without
    opening hundreds of connections to one provider at once (a claimed one waits at most a
    few calls for a thread, far less than its lease). The threads hold a database connection
    only for their short transactions, never during a remote call."""
    return 4 * int(os.environ.get("HUB_WORKER_CONCURRENCY") or 4)


_saga_lock = threading.Lock()


def _saga():
    """The conversion saga of this worker process (its partner connectors and breakers)."""
    with _saga_lock:
        return _build_saga()


@functools.cache
def _build_saga():
    from hub.exchange import hosted, saga
    from hub.notify.policy import RelayPolicy

    settings, db, _, _ = _services()
    return saga.Saga(db, hosted.configured(settings.providers), RelayPolicy.from_settings(settings),
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
    return _services()[3].run_many([uuid.UUID(p["redemption_id"]) for p in payloads])


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


@functools.cache
def _broker_redis():
    """A Redis client on the broker (per process, after the fork), or None on another broker."""
    url = celery.conf.broker_url
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url)


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
