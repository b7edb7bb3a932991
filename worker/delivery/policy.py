"""Every "what now" of a delivery as a pure decision, carried out by `worker.delivery.send`.

Before the send: what the claim found (`after_claim`), the account's messaging limit
(`after_reach`), the customer window (`after_window`), and no slot from the limiter or the
breaker (`after_no_slot`). After a failed attempt: short waits happen inside the task with
tenacity (`call_with_retry`); a worker thread is never held for more than
DISPATCH_INLINE_MAX_WAIT seconds of sleeping: a Retry-After beyond it, or transient failures
past DISPATCH_INLINE_ATTEMPTS, go back to the queue with a countdown (`decide`). Permanent,
account and ambiguous errors are never retried inline.

Park or wait: a single message that waits for its number (no slot, breaker open, daily limit)
parks in the number's line, and no thread or broker message waits for it; a campaign
recipient goes back to the campaign queue, timed by its run (`parks`).
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
    ExpiredError,
    Kind,
    PermanentError,
    RetriesExhausted,
    TransientError,
)
from worker.delivery.idempotency import State
from worker.delivery.ratelimit import Verdict
from worker.delivery.window import window_open
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


class DeliveryOutcome(StrEnum):
    """The `outcome` of a delivery's log records that are not failures (those log their `Kind`)."""

    OK = "ok"
    SENT = "sent"
    READ = "read"
    DUPLICATE = "duplicate"
    DUPLICATE_FAILURE = "duplicate_failure"
    IN_FLIGHT_ELSEWHERE = "in_flight_elsewhere"
    CLAIM_LOST = "claim_lost"
    TRACKED = "tracked"  # ambiguous, but a status webhook named its key: sent


class Action(StrEnum):
    FAIL = "fail"  # for good: kept in the record and the dead letters
    REQUEUE = "requeue"  # release our claim and come back in `countdown` seconds
    PAUSE = "pause"  # open the number's breaker, and requeue until its next probe
    DEFER = "defer"  # come back in `countdown` seconds, the record untouched (not ours, or none yet)


@dataclass(frozen=True)
class Decision:
    action: Action
    error: DispatchError  # what the task fails with, or the cause of the retry
    countdown: float = 0.0
    reason: str = ""  # for a requeue: the metric label and log outcome
    parked: bool = False  # wait in the number's parked line rather than in the queue


def parks(campaign: bool) -> bool:
    """A wait for the number parks a single message; a campaign recipient's run times it."""
    return not campaign


def after_claim(
    state: State, created: float, now: float, heartbeat_timeout: float, max_age: float
) -> Decision | None:
    """What the claim found: None to go on (claimed, or finished: the outcome is replayed)."""
    if state is State.BUSY:
        # In flight in another delivery: look again once its owner would have been found dead.
        busy = DispatchError("in flight in another delivery", {"kind": Kind.BUSY})
        return Decision(Action.DEFER, busy, heartbeat_timeout, DeliveryOutcome.IN_FLIGHT_ELSEWHERE)
    if state is State.STALE:
        lost = AmbiguousError(
            "a worker stopped while this message was being sent: it may have been delivered",
            {"code": None, "title": "worker lost mid-request"},
        )
        return Decision(Action.FAIL, lost)
    if state is State.CLAIMED and now - created > max_age:
        return Decision(Action.FAIL, ExpiredError(f"not sent within DISPATCH_MAX_AGE={max_age:g}s", {}))
    return None


def after_reach(room: float, daily_limit: int | None) -> Decision | None:
    """A template beyond the account's messaging limit waits, parked, `room` seconds until a
    recipient's 24 hours free one (worker.delivery.reach); decided before the claim, so the
    wait is not an age and the record is not touched."""
    if not room:
        return None
    cause = DispatchError(
        f"the account's messaging limit ({daily_limit} unique recipients in 24 hours) is reached",
        {"kind": Kind.DAILY_LIMIT},
    )
    return Decision(Action.DEFER, cause, room, Kind.DAILY_LIMIT, parked=True)


def after_window(type_: str, last_inbound: float | None, now: float) -> Decision | None:
    """A free-form message to a customer who has not written in 24 hours fails here, unsent, as
    the API would fail it (131047); a template may always go."""
    if type_ == "template" or window_open(last_inbound, now):
        return None
    closed = PermanentError(
        "(131047) Re-engagement message: the customer has not written in 24 hours; "
        "only a template can be sent (checked here, nothing was sent)",
        {"code": 131047, "title": "Re-engagement message", "details": "DISPATCH_WINDOW_CHECK"},
    )
    return Decision(Action.FAIL, closed)


def after_no_slot(verdict: Verdict, wait: float, campaign: bool, heartbeat_timeout: float) -> Decision:
    """No slot within the horizon (LATER) or the breaker open (PAUSED): come back when it frees.
    LOST: the claim was taken over while this delivery could not reach Redis (its worker was
    cut off past the heartbeat timeout); the other delivery owns the key: nothing is sent or
    written here, and a later look replays that one's outcome."""
    if verdict is Verdict.LOST:
        taken = DispatchError("the claim was taken over by another delivery", {"kind": Kind.BUSY})
        return Decision(Action.DEFER, taken, heartbeat_timeout, DeliveryOutcome.CLAIM_LOST)
    paused = verdict is Verdict.PAUSED
    kind = Kind.PAUSED if paused else Kind.RATE_LIMITED
    cause = DispatchError("sending paused for this number" if paused else "rate limited", {"kind": kind})
    return Decision(Action.REQUEUE, cause, wait, kind, parked=parks(campaign))


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
