"""The Redis clients for the project's own state (idempotency, limits, breaker, dead letters, ledger).

The workers' client retries a dropped connection with backoff for about 20 seconds, so a Redis
restart or fail-over pauses a send instead of failing it. An app's enqueue gives up as soon as
the publish itself would (DISPATCH_PUBLISH_MAX_RETRIES), so `EnqueueError` comes as promptly.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.retry import Retry

from worker.process_local import process_local
from worker.settings import get_settings


@process_local
def get_redis() -> redis.Redis:
    # A blocking pool: with hundreds of threads a caller waits for a free connection rather than
    # failing with "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        get_settings().state_redis_url,
        max_connections=512,
        timeout=30,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=2,
        health_check_interval=30,
        # Built once: otherwise redis-py reads its version from the package metadata on disk for
        # every connection it opens (hundreds, one per busy thread).
        driver_info=DriverInfo(),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=25),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return redis.Redis(connection_pool=pool)


@process_local
def get_enqueue_redis() -> redis.Redis:
    settings = get_settings()
    return redis.Redis.from_url(
        settings.state_redis_url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.2), retries=settings.publish_max_retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
