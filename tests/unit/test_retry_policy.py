"""The in-task retry loop: backoff for transient errors, Retry-After honoured, long waits handed back."""

import time

import pytest

from worker.errors import PermanentError, TransientError
from worker.retry import call_with_retry, requeue_countdown
from worker.settings import Settings

FAST = Settings(DISPATCH_INLINE_ATTEMPTS=3, DISPATCH_INLINE_BACKOFF=0.01, DISPATCH_INLINE_MAX_WAIT=1,
                DISPATCH_REQUEUE_BACKOFF=10, DISPATCH_REQUEUE_MAX_WAIT=300)  # fmt: skip


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
