"""Retry policy: short waits inside the task with tenacity, long waits handed back to the queue.

A worker slot is never held for more than DISPATCH_INLINE_MAX_WAIT seconds of sleeping:
a Retry-After beyond it, or transient failures past DISPATCH_INLINE_ATTEMPTS, become a
Celery retry with a countdown. Permanent, account and ambiguous errors are never retried here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from worker.errors import TransientError
from worker.settings import Settings

T = TypeVar("T")


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after if isinstance(exc, TransientError) else None


def call_with_retry(call: Callable[[], T], settings: Settings) -> T:
    """Run `call`, retrying TransientError with exponential backoff and jitter, Retry-After first."""
    backoff = wait_exponential(multiplier=settings.inline_backoff, max=settings.inline_max_wait) + wait_random(
        0, settings.inline_backoff
    )

    def wait(state: RetryCallState) -> float:
        hinted = _retry_after(state)
        return hinted if hinted is not None else backoff(state)

    def stop(state: RetryCallState) -> bool:
        hinted = _retry_after(state)
        return stop_after_attempt(settings.inline_attempts)(state) or (
            hinted is not None and hinted > settings.inline_max_wait
        )

    retrying = Retrying(retry=retry_if_exception_type(TransientError), wait=wait, stop=stop, reraise=True)
    return retrying(call)


def requeue_countdown(exc: TransientError, requeues: int, settings: Settings) -> float:
    """Seconds until the next delivery: Retry-After when given, else exponential with full jitter."""
    ceiling = min(settings.requeue_max_wait, settings.requeue_backoff * 2**requeues)
    countdown = random.uniform(ceiling / 2, ceiling)
    if exc.retry_after is not None:
        countdown = max(exc.retry_after, settings.requeue_backoff / 10)
    return min(countdown, settings.requeue_max_wait)
