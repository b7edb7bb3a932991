"""Celery's retry path reads a code object's positions once per process, and builds the same
traceback as before."""

from __future__ import annotations

from billiard.einfo import ExceptionInfo

from worker import tracebacks


def raise_and_capture() -> ExceptionInfo:
    try:
        raise ValueError("parked")
    except ValueError:
        return ExceptionInfo()


def test_the_traceback_is_the_same_and_positions_are_read_once() -> None:
    before = raise_and_capture()
    tracebacks.install()
    tracebacks._positions.cache_clear()
    after = raise_and_capture()
    again = raise_and_capture()
    assert after.traceback == before.traceback
    assert list(after.tb.tb_frame.f_code.co_positions()) == list(before.tb.tb_frame.f_code.co_positions())
    assert tracebacks._positions.cache_info().hits >= 1  # the second exception reused the first's
    assert again.tb.tb_frame.f_code.co_name == "raise_and_capture"
