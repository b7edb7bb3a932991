"""What to do after a failed attempt: pure decisions, carried out by `worker.delivery.send`.

Short waits happen inside the task with tenacity (`call_with_retry`); a worker thread is never
held for more than DISPATCH_INLINE_MAX_WAIT seconds of sleeping: a Retry-After beyond it, or
transient failures past DISPATCH_INLINE_ATTEMPTS, go back to the queue with a countdown
(`decide`). Permanent, account and ambiguous errors are never retried inline.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from worker.delivery.errors import (
    AccountError,
    AmbiguousError,
    DispatchError,
    Kind,
    RetriesExhausted,
    TransientError,
)
from worker.settings import Settings

T = TypeVar("T")


def retry_after_of(state: RetryCallState) -> float | None:
    """The Retry-After of the TransientError a tenacity attempt ended with, if any."""
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after if isinstance(exc, TransientError) else None


def call_with_retry(call: Callable[[], T], settings: Settings) -> T:
    """Run `call`, retrying TransientError with exponential backoff and jitter, Retry-After first."""
    backoff = wait_exponential(
        multiplier=settings.inline_backoff, max=settings.inline_max_wait
    ) + wait_random(0, settings.inline_backoff)

    def wait(state: RetryCallState) -> float:
        hinted = retry_after_of(state)
        return hinted if hinted is not None else backoff(state)

    def stop(state: RetryCallState) -> bool:
        hinted = retry_after_of(state)
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


class Action(StrEnum):
    FAIL = "fail"  # for good: kept in the record and the dead letters
    REQUEUE = "requeue"  # back to the queue for `countdown` seconds
    PAUSE = "pause"  # open the number's breaker, and requeue until its next probe


@dataclass(frozen=True)
class Decision:
    action: Action
    error: DispatchError  # what the task fails with, or the cause of the retry
    countdown: float = 0.0
    reason: str = ""  # for a requeue: the metric label and log outcome


def decide(exc: DispatchError, attempts: int, requeues: int, settings: Settings) -> Decision:
    """After the inline retries gave up on `exc`: fail, requeue, or pause the number.

    `attempts` counts HTTP attempts so far (over every delivery), `requeues` the task's retries.
    """
    if isinstance(exc, AccountError):
        return Decision(Action.PAUSE, exc, settings.breaker_probe_interval, "paused")
    if isinstance(exc, TransientError):
        if attempts >= settings.max_attempts:
            exhausted = RetriesExhausted(
                f"gave up after {attempts} attempts: {exc.message}", {**exc.info, "kind": Kind.EXHAUSTED}
            )
            return Decision(Action.FAIL, exhausted)
        return Decision(Action.REQUEUE, exc, requeue_countdown(exc, requeues, settings), "requeued")
    if isinstance(exc, AmbiguousError) and settings.at_least_once:
        return Decision(Action.REQUEUE, exc, settings.requeue_backoff, "requeued_ambiguous")
    return Decision(Action.FAIL, exc)
