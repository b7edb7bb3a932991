"""The Redis clients for the project's own state (idempotency, limits, breaker, dead letters, ledger).

The workers' client retries a dropped connection with backoff for about 20 seconds, so a Redis
restart or fail-over pauses a send instead of failing it. An app's enqueue gives up as soon as
the publish itself would (DISPATCH_PUBLISH_MAX_RETRIES), so `EnqueueError` comes as promptly.
Every user of a client in a process shares its `GroupCommit` (`group_of`), so the pool threads'
claims, marks, outcomes and settles share round trips.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.driver_info import DriverInfo
from redis.exceptions import NoScriptError
from redis.retry import Retry

from worker.process_local import process_local
from worker.settings import get_settings


@process_local
def get_redis() -> redis.Redis:
    # A blocking pool: with hundreds of threads a caller waits for a free connection rather than
    # failing with "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        get_settings().state_redis_url,
        max_connections=512,
        timeout=30,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=2,
        health_check_interval=30,
        # Built once: otherwise redis-py reads its version from the package metadata on disk for
        # every connection it opens (hundreds, one per busy thread).
        driver_info=DriverInfo(),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=25),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return redis.Redis(connection_pool=pool)


@process_local
def get_enqueue_redis() -> redis.Redis:
    settings = get_settings()
    return redis.Redis.from_url(
        settings.state_redis_url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.2), retries=settings.publish_max_retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


_groups_lock = threading.Lock()


def group_of(client: redis.Redis) -> GroupCommit:
    """The one GroupCommit of this client, so every user of a client in a process shares it. Kept
    on the client, so it goes when the client goes (a broker channel's, at each reconnect)."""
    group: GroupCommit | None = getattr(client, "_group_commit", None)
    if group is not None:  # asked on every ack and settle: no lock once it exists
        return group
    with _groups_lock:
        group = getattr(client, "_group_commit", None)
        if group is None:
            group = GroupCommit(client)
            client._group_commit = group  # type: ignore[attr-defined]
        return group


Build = Callable[[Pipeline], object]  # queues commands; what it returns is ignored


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Op:
    build: Build
    # Released when the op is done, or handed the lead: a bare lock, not an Event (an Event's
    # Condition allocates a lock per wait and another per notify).
    done: threading.Lock = field(default_factory=_held)
    replies: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    lead: bool = False  # handed the next round trip: send what waits, this op included

    def outcome(self) -> list[Any]:
        if self.error is not None:  # shared by the batch: each caller raises its own copy
            raise copy.copy(self.error) from self.error
        for reply in self.replies:
            if isinstance(reply, Exception):
                raise reply
        return self.replies


class GroupCommit:
    """Concurrent threads' Redis commands in one round trip (a group commit), each thread's own
    commands still in one MULTI/EXEC.

    With a hundred pool threads each making four or five round trips per message, most of a
    worker's Redis cost was per round trip, not per command: a pool checkout, the socket calls and
    the GIL taken back after each. Here a thread that finds no round trip in flight sends its
    commands at once; the threads that come while one is in flight wait, and the first of them
    sends all of theirs together when it ends. A lone caller waits for nothing.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._waiting: list[_Op] = []
        self._busy = False
        self._scripts: dict[str, str] = {}  # sha -> source, loaded again after a Redis restart

    def execute(self, build: Build) -> list[Any]:
        """The replies to the commands `build` queues on a pipeline, or the first error among them."""
        op = _Op(build)
        with self._lock:
            self._waiting.append(op)
            lead, self._busy = not self._busy, True
        if not lead:
            op.done.acquire()
        if lead or op.lead:
            self._lead()
        return op.outcome()

    def script(self, source: str) -> str:
        """Register a Lua script for `evalsha`; returns its sha."""
        sha = hashlib.sha1(source.encode()).hexdigest()
        self._scripts[sha] = source
        return sha

    def evalsha(self, pipe: Pipeline, sha: str, keys: list[str], args: list[Any]) -> None:
        """Queue a registered script (its source is loaded when Redis does not know it)."""
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    def call(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        """One registered script's reply."""
        return self.execute(lambda pipe: self.evalsha(pipe, sha, keys, args))[0]

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._send(batch)
        except BaseException as exc:  # no caller may take "no replies" for success
            for op in batch:
                if op.error is None and not op.replies:
                    op.error = exc
            raise
        finally:
            for op in batch:
                op.done.release()
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].done.release()
                else:
                    self._busy = False

    def _send(self, batch: list[_Op], reload: bool = True) -> None:
        pipe = self.client.pipeline(transaction=True)
        built = [(op, *span) for op in batch if (span := _build(op, pipe)) is not None]
        if not built:
            return
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - raised in every caller of the batch
            for op, _, _ in built:
                op.error = exc
            return
        for op, start, stop in built:
            op.replies = replies[start:stop]
        again = [op for op, _, _ in built if any(isinstance(r, NoScriptError) for r in op.replies)]
        if again and reload:
            self._reload(again)

    def _reload(self, again: list[_Op]) -> None:
        """Redis restarted and forgot the scripts (nothing of these ops ran): load them, send once more."""
        try:
            for source in list(self._scripts.values()):
                self.client.script_load(source)
        except Exception as exc:  # noqa: BLE001 - raised in the callers whose scripts it was
            for op in again:
                op.error = exc
            return
        self._send(again, reload=False)


def _build(op: _Op, pipe: Pipeline) -> tuple[int, int] | None:
    """Queue an op's commands; their span in the pipeline, or None when its build raised."""
    start = len(pipe.command_stack)
    try:
        op.build(pipe)
    except Exception as exc:  # noqa: BLE001 - raised in that caller (a mistake of its own)
        del pipe.command_stack[start:]
        op.error = exc
        return None
    return start, len(pipe.command_stack)
