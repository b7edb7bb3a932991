"""Celery's retry path without re-reading whole code objects on every retry.

Every RETRY (a parked intent, a requeued send) makes Celery build a billiard `ExceptionInfo`, and on
Python 3.11 billiard copies each traceback frame's `co_positions()`: every instruction's position
in the whole function, and one of those frames is always Celery's own `trace_task`, a very long
function. Measured with py-spy on a worker parking a backlog: a quarter of the worker's CPU.
A code object does not change, so its positions are read once per process and copied from there;
the pickleable traceback billiard keeps is the same as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from types import CodeType
from typing import Any

from billiard import einfo


@lru_cache(maxsize=1024)
def _positions(code: CodeType) -> tuple[tuple[int | None, int | None, int | None, int | None], ...]:
    return tuple(code.co_positions())


class _Positions:
    """A code object whose `co_positions()` comes from the cache (all else from the code itself)."""

    __slots__ = ("_code",)

    def __init__(self, code: CodeType) -> None:
        self._code = code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._code, name)

    def co_positions(self) -> Iterator[tuple[int | None, int | None, int | None, int | None]]:
        return iter(_positions(self._code))


class _Code(einfo._Code):
    def __init__(self, code: CodeType) -> None:
        super().__init__(_Positions(code))


def install() -> None:
    """Frames of every ExceptionInfo built in this process from now on read positions from the cache."""
    einfo._Frame.Code = _Code
