"""The Celery application: broker and results on Redis, acks after the work, JSON only.

Redis may be one server or a primary its Sentinels name (`sentinel://`, worker.redis_urls): the
broker, the results and beat then all follow the primary. A URL no client could use stops the
process here, at its start, with one line naming the variable. On RabbitMQ,
DISPATCH_QUORUM_QUEUES declares the queues as quorum queues (replicated on a cluster).
"""

from __future__ import annotations

import redis
from celery import Celery
from celery.signals import setup_logging, worker_ready
from kombu import Exchange, Queue

from worker import broker, results, tracebacks
from worker.delivery.deadletters import ENTRIES as DEAD_LETTERS
from worker.delivery.parking import PARKED
from worker.delivery.ratelimit import breaker_key, number_key
from worker.delivery.reach import reach_key
from worker.delivery.senders import senders
from worker.ops import logs, metrics
from worker.recovery.nodes import NODE, WORKERS
from worker.redis_conn import get_redis, sentinel_kwargs
from worker.redis_urls import AMQP_SCHEMES, RedisUrlError, check_deployment, is_sentinel, scheme_of, sentinels
from worker.settings import Settings, get_settings

RELEASED_QUEUE = "whatsapp.released"  # parked intents whose turn has come: served first
QUEUE = "whatsapp"  # messages apps enqueue one by one
CAMPAIGN_QUEUE = "campaign"  # campaign runs and their chunks
QUEUES = (RELEASED_QUEUE, QUEUE, CAMPAIGN_QUEUE)  # in the order workers read them


def check(settings: Settings) -> None:
    """RedisUrlError for a deployment no process could run: a URL no client reads, or quorum
    queues asked of a broker that is not RabbitMQ."""
    check_deployment(settings.redis_url, settings.broker_url, settings.result_backend)
    if settings.quorum_queues and scheme_of(settings.celery_broker_url) not in AMQP_SCHEMES:
        raise RedisUrlError("DISPATCH_QUORUM_QUEUES: quorum queues are RabbitMQ's; the broker is Redis")


def queues(settings: Settings) -> tuple[Queue, ...]:
    """The project's queues. Quorum queues sit on topic exchanges: RabbitMQ's native delayed
    delivery (how a countdown waits without global QoS, which quorum queues lack) routes through
    them, and cannot route to a direct exchange."""
    if not settings.quorum_queues:
        return tuple(Queue(name) for name in QUEUES)
    return tuple(
        Queue(
            name, Exchange(name, type="topic"), routing_key=name, queue_arguments={"x-queue-type": "quorum"}
        )
        for name in QUEUES
    )


def sentinel_options(settings: Settings) -> dict[str, object]:
    """What kombu's and Celery's Sentinel clients read beside a `sentinel://` URL."""
    return {"master_name": settings.sentinel_master, "sentinel_kwargs": sentinel_kwargs(settings)}


def redbeat_options(settings: Settings) -> dict[str, object]:
    """RedBeat's connection: beat rides out a Redis restart of up to a minute instead of exiting;
    through Sentinels (its `redis-sentinel://` form), the Sentinels, the primary's name and password."""
    options: dict[str, object] = {
        "retry_period": 60,
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "health_check_interval": 10,
    }
    url = settings.state_redis_url
    if is_sentinel(url):
        target = sentinels(url, "REDIS_URL")
        options.update(
            sentinels=list(target.hosts),
            service_name=settings.sentinel_master,
            sentinel_kwargs=sentinel_kwargs(settings),
            db=target.db,
        )
        if target.password:
            options["password"] = target.password
        if target.username:
            options["username"] = target.username
    return options


def make_app() -> Celery:
    settings = get_settings()
    try:
        check(settings)
    except RedisUrlError as exc:
        raise SystemExit(f"whatsapp-dispatch: cannot start: {exc}") from None
    broker.install()
    results.install()
    tracebacks.install()
    app = Celery("worker", broker=settings.celery_broker_url, backend=settings.celery_result_backend)
    app.conf.update(
        include=["worker.tasks", "worker.lifecycle", "worker.campaigns.schedule"],
        task_default_queue=QUEUE,
        task_queues=queues(settings),
        # Quorum queues: any queue Celery declares itself (an app's status tasks' `celery`) too.
        task_default_queue_type="quorum" if settings.quorum_queues else "classic",
        task_create_missing_queue_type="quorum" if settings.quorum_queues else "classic",
        task_create_missing_queue_exchange_type="topic" if settings.quorum_queues else None,
        worker_detect_quorum_queues=True,
        task_routes={
            "worker.tasks.run_campaign": {"queue": CAMPAIGN_QUEUE},
            "worker.tasks.send_campaign_chunk": {"queue": CAMPAIGN_QUEUE},
            "worker.tasks.sweep_campaign_runs": {"queue": CAMPAIGN_QUEUE},
            "worker.tasks.sync_templates": {"queue": CAMPAIGN_QUEUE},
        },
        beat_schedule={
            "sweep-campaign-runs": {
                "task": "worker.tasks.sweep_campaign_runs",
                "schedule": settings.sweep_interval,
            },
            "sync-templates": {
                "task": "worker.tasks.sync_templates",
                "schedule": settings.template_sync_interval,
            },
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=settings.result_expires,
        # At-least-once delivery of the task message; the idempotency record makes the send at-most-once.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=False,
        # Must exceed the longest countdown a task can be given (DISPATCH_REQUEUE_MAX_WAIT), or Redis
        # re-delivers the waiting message while the first copy still sits in a worker.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Sweep for messages of dead workers every DISPATCH_RESTORE_INTERVAL seconds.
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
            # Workers read the queues in QUEUES' order: intents due now, transactional, campaigns.
            "queue_order_strategy": "priority",
            **(sentinel_options(settings) if is_sentinel(settings.celery_broker_url) else {}),
            # RabbitMQ: a publish returns once the broker has taken it (publisher confirms).
            **({"confirm_publish": True} if settings.quorum_queues else {}),
        },
        result_backend_transport_options=sentinel_options(settings)
        if is_sentinel(settings.celery_result_backend)
        else {},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for Redis to come back, however long
        # A producer retries a publish for about 15 s, then raises EnqueueError: never a silent drop.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": publish_retries(settings),
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
        worker_hijack_root_logger=False,
        # Task events cost a Redis publish each; Flower turns them on at run time (`enable_events`).
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
        # celery beat: schedules and its lock in Redis, so a second beat never fires a run twice.
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=redbeat_url(settings.state_redis_url),
        redbeat_key_prefix="wa:redbeat:",
        redbeat_redis_options=redbeat_options(settings),
        beat_max_loop_interval=settings.beat_interval,
        redbeat_lock_timeout=max(30, int(settings.beat_interval * 5)),
    )
    return app


def publish_retries(settings: Settings) -> int:
    """DISPATCH_PUBLISH_MAX_RETRIES as rounds: kombu counts each address of a broker URL it tries
    as a retry, and sleeps only after trying them all, so with three Sentinels ten retries were
    three rounds, about 2 s: less than a failover (found in tests/faults/test_failover.py)."""
    url = settings.celery_broker_url
    addresses = len(sentinels(url, "CELERY_BROKER_URL").hosts) if is_sentinel(url) else 1
    return settings.publish_max_retries * addresses


def redbeat_url(url: str) -> str:
    """RedBeat reads Sentinels from its options when its URL starts with `redis-sentinel`."""
    return "redis-sentinel://" if is_sentinel(url) else url


app = make_app()


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    """Celery's own records go through the same JSON renderer as ours."""
    logs.configure()


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    """Prometheus metrics on DISPATCH_METRICS_PORT (0: off)."""
    settings = get_settings()
    if settings.metrics_port:
        metrics.serve(
            settings.metrics_port,
            settings.metrics_addr,
            metrics.QueueDepth(get_redis(), QUEUES, PARKED),
            send_state(settings, get_redis()),
        )


def send_state(settings: Settings, client: redis.Redis) -> metrics.SendState:
    """The shared state the workers' metrics read from Redis: each sender's breaker, parked line
    and messaging limit, the dead letters and the heartbeats."""
    watched = [
        metrics.WatchedSender(
            name,
            breaker=breaker_key(each.phone_number_id),
            line=f"{number_key(each.phone_number_id)}:park",  # worker.delivery.ratelimit's line
            reach=reach_key(each.waba_id),
            daily_limit=each.daily_limit,
        )
        for name, each in sorted(senders(settings).items())
    ]
    liveness = metrics.Liveness(WORKERS, NODE, settings.heartbeat_timeout)
    return metrics.SendState(client, watched, DEAD_LETTERS, liveness)
