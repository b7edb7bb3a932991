"""Which worker processes are alive: each beats in one Redis hash, node id -> last beat."""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import cast

import redis

WORKERS = "wa:workers"


def new_node_id() -> str:
    """Unique per process start: a restarted worker with the same hostname is a new node."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# This process's node. Prefork children inherit it from the main process, whose heartbeat and
# unacknowledged messages stand for theirs.
NODE = new_node_id()


class Registry:
    def __init__(self, client: redis.Redis, timeout: float) -> None:
        self.redis = client
        self.timeout = timeout

    def beat(self, node: str) -> None:
        self.redis.hset(WORKERS, node, time.time())

    def leave(self, node: str) -> None:
        self.redis.hdel(WORKERS, node)

    def beats(self) -> dict[str, float]:
        return {node: float(at) for node, at in cast(dict[str, str], self.redis.hgetall(WORKERS)).items()}

    def dead(self) -> list[str]:
        """Nodes whose last beat is older than the timeout."""
        now = time.time()
        return sorted(node for node, at in self.beats().items() if now - at > self.timeout)

    def alive(self) -> list[str]:
        now = time.time()
        return sorted(node for node, at in self.beats().items() if now - at <= self.timeout)
