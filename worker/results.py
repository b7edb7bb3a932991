"""Celery's Redis result backend, without a subscription per published task.

Celery's backend subscribes to each task's result channel as the task is published, so that a
later `AsyncResult.get()` cannot miss it, and unsubscribes when the AsyncResult goes: two round
trips on every enqueue (a fifth of `send_message.delay`'s time), for results most apps never
wait on. `get()` does not need it: it subscribes when it is called and then reads the stored
result (Celery's `on_wait_for_pending`), so a result stored before the call is still seen.

`install` makes it the backend of `redis://` and `rediss://` result URLs in this process, and its
Sentinel twin that of `sentinel://` (master_name and sentinel_kwargs from
result_backend_transport_options, as Celery's own Sentinel backend reads them).
"""

from __future__ import annotations

from typing import Any

from celery.app.backends import BACKEND_ALIASES
from celery.backends.redis import RedisBackend
from celery.backends.redis import SentinelBackend as CelerySentinelBackend

NAME = "worker.results:Backend"
SENTINEL_NAME = "worker.results:SentinelBackend"


class Backend(RedisBackend):
    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Nothing: `get()` subscribes when it is called."""


class SentinelBackend(Backend, CelerySentinelBackend):
    """Celery's Sentinel result backend, without the subscription per published task."""


def install() -> None:
    for scheme in ("redis", "rediss"):
        BACKEND_ALIASES[scheme] = NAME
    BACKEND_ALIASES["sentinel"] = SENTINEL_NAME
