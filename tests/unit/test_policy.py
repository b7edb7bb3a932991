"""The in-task retry loop: backoff for transient errors, Retry-After honoured, long waits handed back."""

import time

import pytest

from worker.delivery.errors import (
    AccountError,
    AmbiguousError,
    DispatchError,
    PairRateLimited,
    PermanentError,
    TransientError,
)
from worker.delivery.idempotency import State
from worker.delivery.policy import (
    Action,
    after_claim,
    after_no_slot,
    after_reach,
    after_window,
    call_with_retry,
    decide,
    requeue_countdown,
)
from worker.delivery.ratelimit import Verdict
from worker.delivery.window import WINDOW_SECONDS
from worker.settings import Settings

FAST = Settings(
    DISPATCH_INLINE_ATTEMPTS=3,
    DISPATCH_INLINE_BACKOFF=0.01,
    DISPATCH_INLINE_MAX_WAIT=1,
    DISPATCH_REQUEUE_BACKOFF=10,
    DISPATCH_REQUEUE_MAX_WAIT=300,
)


def flaky(failures: list[Exception]):
    calls = []

    def call() -> str:
        calls.append(time.monotonic())
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return "ok"

    return call, calls


def test_transient_errors_are_retried_until_success() -> None:
    call, calls = flaky([TransientError("500", {}), TransientError("500", {})])
    assert call_with_retry(call, FAST) == "ok"
    assert len(calls) == 3


def test_attempts_are_bounded() -> None:
    call, calls = flaky([TransientError("500", {})] * 5)
    with pytest.raises(TransientError):
        call_with_retry(call, FAST)
    assert len(calls) == 3


def test_permanent_errors_are_never_retried() -> None:
    call, calls = flaky([PermanentError("131047", {"code": 131047})])
    with pytest.raises(PermanentError):
        call_with_retry(call, FAST)
    assert len(calls) == 1


def test_short_retry_after_is_slept_in_process() -> None:
    call, calls = flaky([TransientError("429", {"retry_after": 0.3})])
    assert call_with_retry(call, FAST) == "ok"
    assert calls[1] - calls[0] >= 0.3


def test_long_retry_after_is_handed_back_to_the_queue() -> None:
    exc = TransientError("429", {"retry_after": 30.0})
    call, calls = flaky([exc])
    with pytest.raises(TransientError):
        call_with_retry(call, FAST)
    assert len(calls) == 1
    assert requeue_countdown(exc, 0, FAST) == 30.0


def test_requeue_backoff_grows_with_jitter_and_is_capped() -> None:
    exc = TransientError("500", {})
    first = [requeue_countdown(exc, 0, FAST) for _ in range(50)]
    assert all(5 <= c <= 10 for c in first) and len(set(first)) > 1
    assert all(40 <= requeue_countdown(exc, 3, FAST) <= 80 for _ in range(20))
    assert requeue_countdown(exc, 20, FAST) <= 300


DEFAULTS = Settings()  # the production defaults: 40 attempts, 30 s probe interval, at-most-once
AT_LEAST_ONCE = Settings(DISPATCH_AT_LEAST_ONCE=True)


@pytest.mark.parametrize(
    ("error", "attempts", "settings", "action", "kind", "reason"),
    [
        (TransientError("500", {"http_status": 500}), 1, DEFAULTS, Action.REQUEUE, "transient", "requeued"),
        (TransientError("500", {"http_status": 500}), 40, DEFAULTS, Action.FAIL, "exhausted", ""),
        (
            PairRateLimited("131056", {"code": 131056}),
            3,
            DEFAULTS,
            Action.REQUEUE,
            "pair_rate_limited",
            "requeued",
        ),
        (PairRateLimited("131056", {"code": 131056}), 40, DEFAULTS, Action.FAIL, "exhausted", ""),
        (AccountError("190", {"code": 190}), 1, DEFAULTS, Action.PAUSE, "account", "paused"),
        (AccountError("190", {"code": 190}), 99, DEFAULTS, Action.PAUSE, "account", "paused"),
        (PermanentError("131047", {"code": 131047}), 1, DEFAULTS, Action.FAIL, "permanent", ""),
        (AmbiguousError("read timeout", {}), 1, DEFAULTS, Action.FAIL, "ambiguous", ""),
        (
            AmbiguousError("read timeout", {}),
            1,
            AT_LEAST_ONCE,
            Action.REQUEUE,
            "ambiguous",
            "requeued_ambiguous",
        ),
        (DispatchError("surprise", {}), 1, DEFAULTS, Action.FAIL, "error", ""),
    ],
)
def test_decide(error, attempts, settings, action, kind, reason) -> None:
    decision = decide(error, attempts, requeues=2, settings=settings)
    assert (decision.action, decision.error.kind, decision.error.info["kind"], decision.reason) == (
        action,
        kind,
        kind,
        reason,
    )


def test_decide_waits() -> None:
    assert decide(AccountError("190", {}), 1, 0, DEFAULTS).countdown == 30.0  # the breaker's probe interval
    assert decide(AmbiguousError("t", {}), 1, 0, AT_LEAST_ONCE).countdown == 30.0  # DISPATCH_REQUEUE_BACKOFF
    # third requeue: full jitter between half and all of 30 s * 2**2
    assert 60.0 <= decide(TransientError("500", {}), 1, 2, DEFAULTS).countdown <= 120.0
    exhausted = decide(
        TransientError("(131000) Something went wrong", {"code": 131000}), 40, 9, DEFAULTS
    ).error
    assert (
        exhausted.message == "gave up after 40 attempts: (131000) Something went wrong"
        and exhausted.code == 131000
    )


NOW = 1_000_000.0


def kind_of(error: DispatchError) -> str:
    """A cause of a wait names its kind in its info; a failure's class is its kind."""
    return str(error.info.get("kind", error.kind))


@pytest.mark.parametrize(
    ("state", "age", "action", "kind"),
    [
        (State.CLAIMED, 10.0, None, None),  # ours, young: send
        (State.SENT, 10.0, None, None),  # finished: its outcome is replayed
        (State.FAILED, 10.0, None, None),
        (State.BUSY, 10.0, Action.DEFER, "busy"),  # another delivery's: untouched, look again
        (State.STALE, 10.0, Action.FAIL, "ambiguous"),  # its owner died mid-request
        (State.CLAIMED, 3601.0, Action.FAIL, "expired"),  # older than DISPATCH_MAX_AGE
        (State.SENT, 3601.0, None, None),  # an old outcome is still replayed
    ],
)
def test_after_claim(state: State, age: float, action: Action | None, kind: str | None) -> None:
    decision = after_claim(state, NOW - age, NOW, heartbeat_timeout=30.0, max_age=3600.0)
    assert (decision.action if decision else None) == action
    assert (kind_of(decision.error) if decision else None) == kind
    if decision and decision.action is Action.DEFER:
        assert decision.countdown == 30.0 and not decision.parked


@pytest.mark.parametrize(
    ("type_", "last", "closed"),
    [
        ("text", NOW - 3600, False),
        ("text", NOW - WINDOW_SECONDS - 1, True),
        ("text", None, True),  # never wrote
        ("template", None, False),  # a template may always go
        ("image", NOW - WINDOW_SECONDS + 1, False),
    ],
)
def test_after_window(type_: str, last: float | None, closed: bool) -> None:
    decision = after_window(type_, last, NOW)
    assert (decision is not None) == closed
    if decision:
        assert decision.action is Action.FAIL and decision.error.code == 131047


def test_after_reach_parks_a_template_until_the_limit_frees() -> None:
    assert after_reach(0.0, 1000) is None
    decision = after_reach(42.0, 1000)
    assert decision is not None
    assert (decision.action, decision.countdown, decision.parked) == (Action.DEFER, 42.0, True)
    assert kind_of(decision.error) == "daily_limit" and "1000 unique recipients" in decision.error.message


@pytest.mark.parametrize(
    ("verdict", "campaign", "kind", "parked"),
    [
        (Verdict.LATER, False, "rate_limited", True),  # a single message parks in its number's line
        (Verdict.LATER, True, "rate_limited", False),  # a campaign recipient goes back to its run
        (Verdict.PAUSED, False, "paused", True),
        (Verdict.PAUSED, True, "paused", False),
    ],
)
def test_after_no_slot(verdict: Verdict, campaign: bool, kind: str, parked: bool) -> None:
    decision = after_no_slot(verdict, 7.5, campaign, heartbeat_timeout=10.0)
    assert (decision.action, decision.countdown, decision.reason) == (Action.REQUEUE, 7.5, kind)
    assert kind_of(decision.error) == kind and decision.parked is parked


def test_a_claim_taken_over_is_left_to_the_delivery_that_took_it() -> None:
    decision = after_no_slot(Verdict.LOST, 0.0, campaign=False, heartbeat_timeout=10.0)
    assert (decision.action, decision.countdown, decision.reason) == (Action.DEFER, 10.0, "claim_lost")
    assert kind_of(decision.error) == "busy"
