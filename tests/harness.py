"""Test settings for the local processes of devtools.localstack: credentials, and timings short
enough that faults resolve in seconds. Nothing here mocks HTTP or Redis."""

from __future__ import annotations

import os

from devtools.localstack import (
    BIN,
    ROOT,
    Beat,
    Process,
    RedisServer,
    Sandbox,
    Web,
    Worker,
    free_port,
    tmpdir,
    wait_for,
)

__all__ = [
    "BIN",
    "PHONE_NUMBER_ID",
    "ROOT",
    "TOKEN",
    "WABA_ID",
    "Beat",
    "Process",
    "RedisServer",
    "Sandbox",
    "Web",
    "Worker",
    "free_port",
    "tmpdir",
    "wait_for",
    "worker_env",
]

TOKEN = "test-token-SECRET-5f2c9a"
WABA_ID = "waba-1234"
PHONE_NUMBER_ID = "1122334455"


def worker_env(redis_url: str, api_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "INTERAKT_API_URL": api_url,
            "INTERAKT_ACCESS_TOKEN": TOKEN,
            "INTERAKT_WABA_ID": WABA_ID,
            "INTERAKT_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            # Test timings: fast backoff, short timeouts, so faults resolve in seconds.
            "DISPATCH_READ_TIMEOUT": "2",
            "DISPATCH_CONNECT_TIMEOUT": "1",
            "DISPATCH_INLINE_ATTEMPTS": "3",
            "DISPATCH_INLINE_BACKOFF": "0.05",
            "DISPATCH_INLINE_MAX_WAIT": "2",
            "DISPATCH_REQUEUE_BACKOFF": "0.5",
            "DISPATCH_REQUEUE_MAX_WAIT": "5",
            "DISPATCH_MAX_ATTEMPTS": "6",
            "DISPATCH_RATE_LIMIT": "1000",
            "DISPATCH_PAIR_BURST": "100000",
            "DISPATCH_BREAKER_PROBE_INTERVAL": "1",
            "DISPATCH_VISIBILITY_TIMEOUT": "20",
            "DISPATCH_RESTORE_INTERVAL": "1",
            "DISPATCH_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env
