"""Per-process singletons that are rebuilt after fork, so prefork children never share sockets."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


def process_local(factory: Callable[[], T]) -> Callable[[], T]:
    lock = threading.Lock()
    cache: dict[int, T] = {}

    @wraps(factory)
    def get() -> T:
        pid = os.getpid()
        if pid not in cache:
            with lock:
                if pid not in cache:
                    cache.clear()
                    cache[pid] = factory()
        return cache[pid]

    return get
